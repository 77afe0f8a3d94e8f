/**
 * Real daemons in real processes: a server and clients started from `dist/monitor.js` with
 * their own configs and state dirs, against the test sshd. They can be stopped with SIGTERM,
 * killed with SIGKILL and started again.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { freePort, generateKey, startSshd, type TestSshd } from './sshd.js';
import { controlRequest } from '../../scripts/control-request.mjs';
import { tempDir } from './tree.js';
import { waitFor } from './wait.js';

const execFileAsync = promisify(execFile);
export const MONITOR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/monitor.js');

export interface DaemonOptions {
  name: string;
  role: 'client' | 'server';
  dir: string;
  folders: Record<string, string>;
  /** Extra config text appended to the file. */
  extra?: string;
}

export class Daemon {
  process: ChildProcess | null = null;
  readonly configPath: string;
  readonly stateDir: string;
  readonly logPath: string;
  private exited: Promise<number | null> = Promise.resolve(null);
  private output = '';

  constructor(
    readonly name: string,
    readonly role: 'client' | 'server',
    readonly dir: string,
    readonly folders: Record<string, string>,
  ) {
    this.configPath = path.join(dir, `${name}.cfg`);
    this.stateDir = path.join(dir, `${name}-state`);
    this.logPath = path.join(dir, `${name}.out`);
  }

  /** Path of folder `name` on this node (the first folder by default). */
  folder(name?: string): string {
    return name === undefined ? Object.values(this.folders)[0]! : this.folders[name]!;
  }

  writeConfig(text: string): void {
    fs.writeFileSync(this.configPath, text);
  }

  start(args: string[] = []): void {
    if (this.process !== null && this.process.exitCode === null && this.process.signalCode === null) throw new Error(`${this.name} is already running`);
    const out = fs.openSync(this.logPath, 'a');
    // SYSTEMSYNC_TEST_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the daemons.
    const nodeArgs = (process.env.SYSTEMSYNC_TEST_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const child = spawn(process.execPath, [...nodeArgs, MONITOR, 'monitor', '--role', this.role, '--config', this.configPath, '--log-level', 'debug', ...args], {
      stdio: ['ignore', out, out],
    });
    fs.closeSync(out);
    this.process = child;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.process?.pid ?? -1;
  }

  get isRunning(): boolean {
    return this.process !== null && this.process.exitCode === null && this.process.signalCode === null;
  }

  /** SIGTERM (graceful) or SIGKILL the process this helper started, and wait for it to exit. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM', timeoutMs = 30_000): Promise<number | null> {
    if (!this.isRunning) return this.process?.exitCode ?? null;
    this.process!.kill(signal);
    const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs));
    const result = await Promise.race([this.exited, timer]);
    if (result === 'timeout') {
      this.process!.kill('SIGKILL');
      await this.exited;
      throw new Error(`${this.name} did not exit within ${timeoutMs} ms of ${signal}\n${this.log().slice(-4000)}`);
    }
    return result;
  }

  waitExit(): Promise<number | null> {
    return this.exited;
  }

  log(): string {
    try {
      this.output = fs.readFileSync(this.logPath, 'utf8');
    } catch {
      /* not started yet */
    }
    return this.output;
  }

  /** Run a CLI command against this node's config. */
  async cli(args: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await execFileAsync(process.execPath, [MONITOR, ...args, '--config', this.configPath], { timeout: timeoutMs });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  /** Ask the daemon's control socket directly (one JSON-RPC line), as the CLI does but faster. */
  control<T>(method: string, timeoutMs = 10_000): Promise<T> {
    return controlRequest(path.join(this.stateDir, 'control.sock'), method, timeoutMs, this.name) as Promise<T>;
  }

  status(): Promise<StatusJson> {
    return this.control<StatusJson>('status');
  }
}

export interface StatusJson {
  node: string;
  role: string;
  connected: boolean;
  folders: Array<{ name: string; path: string; files: number; bytes: number; pendingPush: number; pendingPull: number; conflicts: number; failed: number; paused: string | null; lastSync: string | null }>;
  transfers: Array<{ folder: string; path: string; direction: string; done: number; total: number }>;
  clients?: Array<{ name: string; connected: boolean; lastSeen: string | null; behind: number }>;
}

export interface ClusterOptions {
  clients?: number;
  folders?: string[];
  /** Client names, default alpha, beta, gamma… */
  names?: string[];
  /** Port clients dial instead of sshd's (a proxy in front of it), per client index. */
  portFor?: (index: number, sshdPort: number) => number;
  serverExtra?: string;
  clientExtra?: string;
  /** Do not start the daemons (the test fills folders first). */
  noStart?: boolean;
  /**
   * `sshd` (default): clients come in through a private OpenSSH sshd and the server's rpc.sock.
   * `embedded`: no sshd; the server's own endpoint ([listen]), one key per client in [clients].
   */
  mode?: ClusterMode;
}

export type ClusterMode = 'sshd' | 'embedded';
export const CLUSTER_MODES: readonly ClusterMode[] = ['sshd', 'embedded'];

export interface Cluster {
  dir: string;
  mode: ClusterMode;
  /** In embedded mode a stand-in: port, host key and known_hosts of the endpoint; no process. */
  sshd: TestSshd;
  /** Private key file of each client, by name (embedded mode: its own key; sshd mode: the shared one). */
  keys: Record<string, string>;
  server: Daemon;
  clients: Daemon[];
  all: Daemon[];
  /** Write a client's config again, e.g. to point it at another port. */
  writeClientConfig(client: Daemon, port: number): void;
  /** Add `[127.0.0.1]:port` for this sshd's host key to the shared known_hosts (for a proxy port). */
  trustPort(port: number): void;
  stop(): Promise<void>;
}

const CLIENT_NAMES = ['alpha', 'beta', 'gamma', 'delta'];

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const dir = await tempDir('systemsync-e2e-');
  const mode = options.mode ?? 'sshd';
  const folders = options.folders ?? ['docs'];
  const names = options.names ?? CLIENT_NAMES;
  const clientNames = Array.from({ length: options.clients ?? 2 }, (_, i) => names[i] ?? `client${i}`);
  const embedded = mode === 'embedded' ? await prepareEndpoint(path.join(dir, 'endpoint'), clientNames) : null;
  const sshd = embedded?.standIn ?? (await startSshd({ dir: path.join(dir, 'sshd') }));
  const keys: Record<string, string> = embedded?.keys ?? Object.fromEntries(clientNames.map((n) => [n, sshd.clientKeyPath]));
  const folderMap = (node: string): Record<string, string> =>
    Object.fromEntries(folders.map((f) => [f, path.join(dir, node, f)]));

  const server = new Daemon('hub', 'server', dir, folderMap('hub'));
  const rpcSocket = path.join(server.stateDir, 'rpc.sock');
  server.writeConfig(
    `[node]\nname = hub\nrole = server\nstate_dir = ${server.stateDir}\n\n[rpc]\nsocket = ${rpcSocket}\n\n[folders]\n` +
      folders.map((f) => `${f} = ${server.folders[f]}`).join('\n') +
      `\n${embedded?.serverSections ?? ''}${options.serverExtra ?? ''}\n`,
  );
  const clients: Daemon[] = [];
  const writeClientConfig = (client: Daemon, port: number): void => {
    client.writeConfig(
      `[node]\nname = ${client.name}\nrole = client\nstate_dir = ${client.stateDir}\n\n` +
        `[server]\nhost = 127.0.0.1\nport = ${port}\nuser = ${sshd.user}\nidentity = ${keys[client.name] ?? sshd.clientKeyPath}\n` +
        `known_hosts = ${sshd.knownHostsPath}\nhost_key_check = yes\nrpc_socket = ${rpcSocket}\nconnect_timeout = 5\n\n[folders]\n` +
        folders.map((f) => `${f} = ${client.folders[f]}`).join('\n') +
        `\n${options.clientExtra ?? ''}\n`,
    );
  };
  for (let i = 0; i < clientNames.length; i++) {
    const name = clientNames[i]!;
    const client = new Daemon(name, 'client', dir, folderMap(name));
    writeClientConfig(client, options.portFor?.(i, sshd.port) ?? sshd.port);
    clients.push(client);
  }
  for (const daemon of [server, ...clients]) for (const f of Object.values(daemon.folders)) fs.mkdirSync(f, { recursive: true });

  const cluster: Cluster = {
    dir,
    mode,
    sshd,
    keys,
    server,
    clients,
    all: [server, ...clients],
    writeClientConfig,
    trustPort(port: number) {
      fs.appendFileSync(sshd.knownHostsPath, `[127.0.0.1]:${port} ${sshd.hostPublicKey}\n`);
    },
    async stop() {
      for (const daemon of [...clients, server]) await daemon.stop('SIGTERM').catch(() => daemon.stop('SIGKILL'));
      await sshd.stop();
    },
  };
  if (!options.noStart) await startAll(cluster);
  return cluster;
}

/**
 * For an embedded-endpoint cluster: a host key and one key per client (made with ssh-keygen, as
 * a user would), the [listen] and [clients] sections, a known_hosts that trusts the host key,
 * and a stand-in for the sshd fixture with the endpoint's port and keys.
 */
async function prepareEndpoint(dir: string, clientNames: string[]): Promise<{ standIn: TestSshd; keys: Record<string, string>; serverSections: string }> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const port = await freePort();
  const hostKeyPath = path.join(dir, 'ssh_host_ed25519_key');
  const hostKey = await generateKey(hostKeyPath, 'ed25519', 'systemsync-test-endpoint');
  const hostPublicKey = hostKey.publicKeyLine.split(/\s+/).slice(0, 2).join(' ');
  const keys: Record<string, string> = {};
  const lines: string[] = [];
  for (const name of clientNames) {
    const key = await generateKey(path.join(dir, `${name}_ed25519`), 'ed25519', `${name}@test`);
    keys[name] = key.privateKeyPath;
    lines.push(`${name} = ${key.publicKeyLine}`);
  }
  const knownHostsPath = path.join(dir, 'known_hosts');
  fs.writeFileSync(knownHostsPath, `[127.0.0.1]:${port} ${hostPublicKey}\n`);
  const standIn: TestSshd = {
    host: '127.0.0.1',
    port,
    user: 'systemsync',
    dir,
    clientKeyPath: keys[clientNames[0]!] ?? '',
    knownHostsPath,
    hostPublicKey,
    authorizeKey() {
      throw new Error('embedded mode: add keys to [clients] of the server config');
    },
    pid: -1,
    log: () => '',
    stop: async () => undefined,
  };
  const serverSections = `\n[listen]\naddress = 127.0.0.1\nport = ${port}\nhost_key = ${hostKeyPath}\n\n[clients]\n${lines.join('\n')}\n`;
  return { standIn, keys, serverSections };
}

/** Start the server, wait until its socket answers, then the clients, and wait until they are connected. */
export async function startAll(cluster: Cluster): Promise<void> {
  await startDaemon(cluster.server);
  for (const client of cluster.clients) client.start();
  for (const client of cluster.clients) await waitConnected(client);
}

export async function startDaemon(daemon: Daemon): Promise<void> {
  daemon.start();
  await waitFor(async () => daemon.isRunning && (await daemon.status().then(() => true, () => false)), {
    timeoutMs: 30_000,
    what: `${daemon.name} to answer on its control socket\n${daemon.log().slice(-3000)}`,
  });
}

export async function waitConnected(client: Daemon): Promise<void> {
  await waitFor(async () => client.isRunning && (await client.status().catch(() => null))?.connected === true, {
    timeoutMs: 30_000,
    what: `${client.name} to connect`,
  });
}

/** Wait until every node is idle: nothing pending, nothing in flight. */
export async function waitIdle(daemons: Daemon[], timeoutMs = 60_000): Promise<void> {
  await waitFor(
    async () => {
      for (const d of daemons) {
        const s = await d.status().catch(() => null);
        if (s === null || s.transfers.length > 0 || s.folders.some((f) => f.pendingPush > 0 || f.pendingPull > 0)) return false;
      }
      return true;
    },
    { timeoutMs, what: 'all nodes to be idle' },
  );
}

/**
 * Wait until every node's index records as many files as `tree` (their common disk tree) holds:
 * a path recorded but gone from disk (whose removal was never seen) shows here even when no
 * other node has it either. Rejects with each node's count on timeout.
 */
export async function waitForIndexesToMatch(daemons: Daemon[], tree: Map<string, { type: string }>, timeoutMs = 30_000): Promise<void> {
  const onDisk = [...tree.values()].filter((item) => item.type === 'file').length;
  let counts: string[] = [];
  await waitFor(
    async () => {
      counts = [];
      for (const d of daemons) counts.push(`${d.name} ${(await d.status()).folders[0]!.files}`);
      return counts.every((c) => c.endsWith(` ${onDisk}`));
    },
    { timeoutMs, what: `every index to record the ${onDisk} file(s) on disk` },
  ).catch((err: Error) => {
    throw new Error(`${err.message}; indexes: ${counts.join(', ')}`);
  });
}

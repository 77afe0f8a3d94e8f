// Real daemons for the benchmark: a server and clients started from dist/monitor.js as separate
// processes against the private sshd, as test/helpers/daemons.ts does for the tests (no vitest here).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { controlRequest } from '../../scripts/control-request.mjs';
import { generateKey } from '../../scripts/private-sshd.mjs';
import { fileURLToPath } from 'node:url';

// SYSTEMSYNC_BENCH_MONITOR runs another build (e.g. a copy of dist/ while dist/ is being rebuilt).
export const MONITOR = process.env.SYSTEMSYNC_BENCH_MONITOR ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/monitor.js');

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `fn` until it returns a truthy value; throws naming `what` after `timeoutMs`. */
export async function waitFor(fn, { timeoutMs = 60_000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)?.slice(0, 500)})`);
    await sleep(intervalMs);
  }
}

/** Peak and current resident set of a process, in bytes (from /proc/<pid>/status). */
export function memoryOf(pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { hwm: kib('VmHWM'), rss: kib('VmRSS') };
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** utime, stime, cutime, cstime of a process from /proc/<pid>/stat, in seconds (0 if gone). */
function cpuOf(pid, withReaped) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // fields[0] is the state (field 3): utime is field 14, stime 15, cutime 16, cstime 17.
    const [utime, stime, cutime, cstime] = fields.slice(11, 15).map(Number);
    return (utime + stime + (withReaped ? cutime + cstime : 0)) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

/** Children of each process, from /proc/<pid>/stat's ppid. */
function childrenByParent() {
  const map = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const text = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
      if (!map.has(ppid)) map.set(ppid, []);
      map.get(ppid).push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return map;
}

/**
 * CPU seconds used so far by a process and all its descendants, the exited ones included (their
 * time is added to their parent's cutime/cstime when reaped). Differences of two readings give the
 * CPU a process tree spent in between, e.g. sshd with all its per-connection processes.
 */
export function cpuOfTree(pid) {
  const children = childrenByParent();
  let total = 0;
  const visit = (p) => {
    total += cpuOf(p, true);
    for (const c of children.get(p) ?? []) visit(c);
  };
  visit(pid);
  return total;
}

/** CPU seconds this process's exited, reaped children used (rsync and ssh run by the baselines). */
export function cpuOfReapedChildren() {
  return cpuOf(process.pid, true) - cpuOf(process.pid, false);
}

export class Daemon {
  constructor(name, role, dir, folder) {
    this.name = name;
    this.role = role;
    this.dir = dir;
    this.folder = folder;
    this.configPath = path.join(dir, `${name}.cfg`);
    this.stateDir = path.join(dir, `${name}-state`);
    this.logPath = path.join(dir, `${name}.out`);
    this.process = null;
    this.exited = Promise.resolve(null);
  }

  start({ logLevel = 'info', nodeArgs = [] } = {}) {
    if (this.isRunning) throw new Error(`${this.name} is already running`);
    const out = fs.openSync(this.logPath, 'a');
    const child = spawn(process.execPath, [...nodeArgs, MONITOR, 'monitor', '--role', this.role, '--config', this.configPath, '--log-level', logLevel], {
      stdio: ['ignore', out, out],
      env: { ...process.env, SYSTEMSYNC_EVENT_LOOP_MONITOR: '1' },
    });
    fs.closeSync(out);
    this.process = child;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  get pid() {
    return this.process?.pid ?? -1;
  }

  get isRunning() {
    return this.process !== null && this.process.exitCode === null && this.process.signalCode === null;
  }

  memory() {
    return memoryOf(this.pid);
  }

  async stop(timeoutMs = 60_000) {
    if (!this.isRunning) return;
    this.process.kill('SIGTERM');
    let timer;
    const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const outcome = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.process.kill('SIGKILL');
      await this.exited;
    }
  }

  log() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** One JSON-RPC request on the daemon's control socket. */
  control(method, timeoutMs = 30_000) {
    return controlRequest(path.join(this.stateDir, 'control.sock'), method, timeoutMs, this.name);
  }

  status() {
    return this.control('status');
  }
}

/**
 * A server `hub` and clients `alpha`, `beta`… with one folder `data` each, in a fresh directory
 * under `baseDir`, against `sshd`. Folders are created (and may be filled) before `startAll`.
 */
export function makeCluster(sshd, baseDir, { clients = 2, logLevel = 'info', nodeArgs = [], endpoint = null } = {}) {
  const dir = fs.mkdtempSync(path.join(baseDir, 'cluster-'));
  const server = new Daemon('hub', 'server', dir, path.join(dir, 'hub', 'data'));
  const rpcSocket = path.join(server.stateDir, 'rpc.sock');
  // With `endpoint` (prepareEndpoint): the server's embedded SSH endpoint instead of the sshd.
  const listen = endpoint === null ? '' : `\n[listen]\naddress = 127.0.0.1\nport = ${endpoint.port}\nhost_key = ${endpoint.hostKeyPath}\n\n[clients]\n${endpoint.clientsSection}\n`;
  fs.writeFileSync(
    server.configPath,
    `[node]\nname = hub\nrole = server\nstate_dir = ${server.stateDir}\n\n[rpc]\nsocket = ${rpcSocket}\n\n[folders]\ndata = ${server.folder}\n${listen}`,
  );
  const via = endpoint === null
    ? (name) => `port = ${sshd.port}\nuser = ${sshd.user}\nidentity = ${sshd.clientKeyPath}\nknown_hosts = ${sshd.knownHostsPath}\n`
    : (name) => `port = ${endpoint.port}\nidentity = ${endpoint.keys[name]}\nknown_hosts = ${endpoint.knownHostsPath}\n`;
  const names = ['alpha', 'beta', 'gamma', 'delta'];
  const clientList = [];
  for (let i = 0; i < clients; i++) {
    const name = names[i] ?? `client${i}`;
    const client = new Daemon(name, 'client', dir, path.join(dir, name, 'data'));
    fs.writeFileSync(
      client.configPath,
      `[node]\nname = ${name}\nrole = client\nstate_dir = ${client.stateDir}\n\n` +
        `[server]\nhost = 127.0.0.1\n${via(name)}` +
        `host_key_check = yes\nrpc_socket = ${rpcSocket}\nconnect_timeout = 10\n\n[folders]\ndata = ${client.folder}\n`,
    );
    clientList.push(client);
  }
  for (const d of [server, ...clientList]) fs.mkdirSync(d.folder, { recursive: true });
  const startOptions = { logLevel, nodeArgs };
  return {
    dir,
    server,
    clients: clientList,
    all: [server, ...clientList],
    async startServer() {
      server.start(startOptions);
      await waitFor(async () => server.isRunning && (await server.status().then(() => true, () => false)), {
        timeoutMs: 600_000,
        intervalMs: 100,
        what: `${server.name} to answer\n${server.log().slice(-2000)}`,
      });
    },
    async startClient(client) {
      client.start(startOptions);
      await waitFor(async () => client.isRunning && (await client.status().catch(() => null))?.connected === true, {
        timeoutMs: 600_000,
        intervalMs: 20,
        what: `${client.name} to connect\n${client.log().slice(-2000)}`,
      });
    },
    async startAll() {
      await this.startServer();
      for (const client of clientList) await this.startClient(client);
    },
    async stop() {
      for (const d of [...clientList, server]) await d.stop();
    },
    remove() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Keys for clusters on the embedded endpoint: a host key, one key per client name (ssh-keygen),
 * a known_hosts that trusts the host key on `port`, and the [clients] lines.
 */
export async function prepareEndpoint(dir, port, names = ['alpha', 'beta', 'gamma', 'delta']) {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hostKeyPath = path.join(dir, 'ssh_host_ed25519_key');
  const host = await generateKey(hostKeyPath, 'ed25519', 'bench-endpoint');
  const keys = {};
  const lines = [];
  for (const name of names) {
    const key = await generateKey(path.join(dir, `${name}_ed25519`), 'ed25519', `${name}@bench`);
    keys[name] = key.privateKeyPath;
    lines.push(`${name} = ${key.publicKeyLine}`);
  }
  const knownHostsPath = path.join(dir, 'known_hosts');
  fs.writeFileSync(knownHostsPath, `[127.0.0.1]:${port} ${host.publicKeyLine.split(/\s+/).slice(0, 2).join(' ')}\n`);
  return { port, hostKeyPath, keys, knownHostsPath, clientsSection: lines.join('\n') };
}

/** True when the daemon reports nothing pending and nothing in flight. */
export async function isIdle(daemon) {
  const s = await daemon.status().catch(() => null);
  if (s === null) return false;
  if (daemon.role === 'client' && !s.connected) return false;
  return s.transfers.length === 0 && s.folders.every((f) => f.pendingPush === 0 && f.pendingPull === 0);
}

export async function waitIdle(daemons, timeoutMs = 600_000) {
  await waitFor(async () => (await Promise.all(daemons.map(isIdle))).every(Boolean), { timeoutMs, intervalMs: 20, what: 'all nodes to be idle' });
}

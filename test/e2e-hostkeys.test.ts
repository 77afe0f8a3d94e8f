/**
 * Host keys with the real daemons over a real sshd: `host_key_check = yes` with an empty
 * known_hosts refuses and says what to do; `accept-new` records the key and syncs; a changed
 * key is refused (even under accept-new) with the old and new fingerprints in the log. Then the
 * file modes of everything the daemons left in their state dirs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDaemon, startCluster, waitConnected, type Cluster, type Daemon } from './helpers/daemons.js';
import { generateKey } from './helpers/sshd.js';
import { cleanupTempDirs } from './helpers/tree.js';
import { waitFor } from './helpers/wait.js';

const execFileAsync = promisify(execFile);

let cluster: Cluster;
let client: Daemon;
let knownHosts: string;
let serverFingerprint: string;

async function fingerprintOf(publicKeyFile: string): Promise<string> {
  const { stdout } = await execFileAsync('ssh-keygen', ['-lf', publicKeyFile]);
  const match = /SHA256:[A-Za-z0-9+/]+/.exec(stdout);
  if (match === null) throw new Error(`no fingerprint in ${stdout}`);
  return match[0];
}

function writeClientConfig(hostKeyCheck: 'yes' | 'accept-new'): void {
  const { sshd, server } = cluster;
  client.writeConfig(
    `[node]\nname = ${client.name}\nrole = client\nstate_dir = ${client.stateDir}\n\n` +
      `[server]\nhost = 127.0.0.1\nport = ${sshd.port}\nuser = ${sshd.user}\nidentity = ${sshd.clientKeyPath}\n` +
      `known_hosts = ${knownHosts}\nhost_key_check = ${hostKeyCheck}\nrpc_socket = ${path.join(server.stateDir, 'rpc.sock')}\nconnect_timeout = 5\n\n` +
      `[folders]\ndocs = ${client.folder()}\n`,
  );
}

/** The genuine known_hosts line of the test sshd. */
function genuineLine(): string {
  return `[127.0.0.1]:${cluster.sshd.port} ${cluster.sshd.hostPublicKey}\n`;
}

/**
 * (Re)start the client with this known_hosts text and host_key_check: each test sets up the
 * client it needs, whatever an earlier test left running or pinned.
 */
async function restartClient(knownHostsText: string, hostKeyCheck: 'yes' | 'accept-new'): Promise<void> {
  await client.stop();
  await fs.writeFile(knownHosts, knownHostsText, { mode: 0o600 });
  writeClientConfig(hostKeyCheck);
  await startDaemon(client);
}

/** The part of the log written since `mark` (its length when the mark was taken). */
function logSince(daemon: Daemon, mark: number): string {
  return daemon.log().slice(mark);
}

beforeAll(async () => {
  cluster = await startCluster({ clients: 1, noStart: true });
  client = cluster.clients[0]!;
  knownHosts = path.join(cluster.dir, 'alpha-known_hosts');
  await fs.writeFile(knownHosts, '', { mode: 0o600 });
  serverFingerprint = await fingerprintOf(path.join(cluster.sshd.dir, 'ssh_host_ed25519_key.pub'));
  await startDaemon(cluster.server);
});

afterAll(async () => {
  await cluster?.stop();
  await cleanupTempDirs();
});

describe('host keys, end to end', () => {
  it('host_key_check = yes with an empty known_hosts: refuses, logs the fingerprint and what to do', async () => {
    const sshdMark = cluster.sshd.log().length;
    const mark = client.log().length;
    await restartClient('', 'yes');
    const log = await waitFor(() => (/host key of .* is not known/.test(logSince(client, mark)) ? logSince(client, mark) : null), {
      timeoutMs: 30_000,
      what: 'the client to log the unknown host key',
    });
    expect(log).toContain(serverFingerprint);
    expect(log).toContain(knownHosts);
    expect(log).toMatch(/ssh-keyscan -p \d+ 127\.0\.0\.1 >> /);
    expect(log).toMatch(/host_key_check = accept-new/);
    expect((await client.status()).connected).toBe(false);
    expect(await fs.readFile(knownHosts, 'utf8')).toBe('');
    expect(cluster.sshd.log().slice(sshdMark)).not.toMatch(/Accepted publickey/);
    // `check` says the same, with exit code 1.
    const check = await client.cli(['check']);
    expect(check.code).not.toBe(0);
    expect(`${check.stdout}${check.stderr}`).toContain(serverFingerprint);
    expect(await client.stop()).toBe(0);
  });

  it('accept-new: records the key, connects and syncs', async () => {
    await restartClient('', 'accept-new');
    await waitConnected(client);
    const text = await fs.readFile(knownHosts, 'utf8');
    expect(text.trim()).toBe(`[127.0.0.1]:${cluster.sshd.port} ${cluster.sshd.hostPublicKey}`);
    expect((await fs.stat(knownHosts)).mode & 0o777).toBe(0o600);
    await fs.writeFile(path.join(client.folder(), 'trusted.txt'), 'after accept-new');
    await waitFor(async () => (await fs.readFile(path.join(cluster.server.folder(), 'trusted.txt'), 'utf8').catch(() => null)) === 'after accept-new', {
      timeoutMs: 30_000,
      what: 'trusted.txt on the hub',
    });
    expect(await client.stop()).toBe(0);
  });

  it('a changed host key is refused, even under accept-new, and the log shows both fingerprints', async () => {
    const impostor = await generateKey(path.join(cluster.dir, 'impostor_host_key'), 'ed25519', 'impostor');
    const impostorFingerprint = await fingerprintOf(impostor.publicKeyPath);
    const impostorKey = impostor.publicKeyLine.split(/\s+/).slice(0, 2).join(' ');
    // known_hosts now says the server's key is another one: what the client sees is a changed key.
    const pinned = `[127.0.0.1]:${cluster.sshd.port} ${impostorKey}\n`;
    const mark = client.log().length;
    await restartClient(pinned, 'accept-new');
    const log = await waitFor(() => (/HOST KEY CHANGED/.test(logSince(client, mark)) ? logSince(client, mark) : null), {
      timeoutMs: 30_000,
      what: 'the client to log the changed host key',
    });
    expect(log).toContain(impostorFingerprint);
    expect(log).toContain(serverFingerprint);
    expect(log).toMatch(/ssh-keygen -R "\[127\.0\.0\.1\]:\d+"/);
    expect((await client.status()).connected).toBe(false);
    // Nothing was "accepted": known_hosts is exactly what it was.
    expect(await fs.readFile(knownHosts, 'utf8')).toBe(pinned);
    // It keeps refusing on every retry, never connecting.
    await waitFor(() => (logSince(client, mark).match(/HOST KEY CHANGED/g) ?? []).length >= 2, { timeoutMs: 30_000, what: 'a second refused attempt' });
    expect((await client.status()).connected).toBe(false);
    expect(await client.stop()).toBe(0);

    // With the genuine key back, it connects again.
    await restartClient(genuineLine(), 'accept-new');
    await waitConnected(client);
  });
});

describe('file modes of what the daemons leave on disk', () => {
  it('state files 0600, state dirs 0700, sockets 0600, the log 0600', async () => {
    // Both daemons running (control.sock and rpc.sock exist), connected, and having written state.
    await restartClient(genuineLine(), 'yes');
    await waitConnected(client);
    for (const daemon of [cluster.server, client]) {
      const problems: string[] = [];
      const counts = { files: 0, dirs: 0, sockets: 0 };
      const walk = async (dir: string): Promise<void> => {
        for (const name of await fs.readdir(dir)) {
          const abs = path.join(dir, name);
          const st = await fs.lstat(abs).catch(() => null);
          if (st === null) continue; // a temp file renamed away meanwhile
          const mode = st.mode & 0o7777;
          if (st.isDirectory()) {
            counts.dirs++;
            if (mode !== 0o700) problems.push(`dir ${abs}: ${mode.toString(8)}`);
            await walk(abs);
          } else if (st.isSocket()) {
            counts.sockets++;
            if (mode !== 0o600) problems.push(`socket ${abs}: ${mode.toString(8)}`);
          } else if (st.isFile()) {
            counts.files++;
            if (mode !== 0o600) problems.push(`file ${abs}: ${mode.toString(8)}`);
          } else {
            problems.push(`unexpected ${abs}`);
          }
        }
      };
      const rootMode = (await fs.stat(daemon.stateDir)).mode & 0o7777;
      if (rootMode !== 0o700) problems.push(`state_dir ${daemon.stateDir}: ${rootMode.toString(8)}`);
      await walk(daemon.stateDir);
      expect(problems, daemon.name).toEqual([]);
      expect(counts.files, `${daemon.name}: state files`).toBeGreaterThan(1);
      expect(counts.sockets, `${daemon.name}: sockets`).toBe(daemon.role === 'server' ? 2 : 1);
      const logs = (await fs.readdir(daemon.stateDir)).filter((n) => /\.log$/.test(n));
      expect(logs.length, `${daemon.name}: a log file in ${daemon.stateDir}`).toBeGreaterThan(0);
      for (const log of logs) expect((await fs.stat(path.join(daemon.stateDir, log))).mode & 0o777).toBe(0o600);
    }
  });
});

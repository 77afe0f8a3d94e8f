/**
 * Issue 12 finding 6: a rogue server against a real client daemon. The client connects as usual
 * (real SSH to the real test sshd, RPC over the forwarded Unix socket); the socket is served by a
 * small fake server written here, which speaks the real RPC (src/rpc.ts, its schemas included)
 * and answers what a hostile hub would. SFTP is the real sshd's, on a directory the fake controls.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createRpcPeer, type RpcPeer } from '../src/rpc.js';
import type { PushOp, PushResult } from '../src/core/types.js';
import { Daemon, waitConnected } from './helpers/daemons.js';
import { startSshd, type TestSshd } from './helpers/sshd.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';
import { waitFor } from './helpers/wait.js';

let sshd: TestSshd;
let fake: net.Server;
let client: Daemon;
let local: string;
let serverRoot: string;
const peers: RpcPeer[] = [];
const pushed: PushOp[] = [];

const SERVER_VERSION = 'the server version of edit.txt\n';
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

beforeAll(async () => {
  const dir = await tempDir('systemsync-rogue-');
  sshd = await startSshd({ dir: path.join(dir, 'sshd') });
  serverRoot = path.join(dir, 'served');
  await fs.mkdir(path.join(serverRoot, '.systemsync', 'tmp'), { recursive: true });
  await fs.writeFile(path.join(serverRoot, 'edit.txt'), SERVER_VERSION);
  let seq = 10;
  const socketPath = path.join(dir, 'rogue.sock');
  fake = net.createServer((socket) => {
    const peer = createRpcPeer(socket, {
      context: null,
      handlers: {
        hello: () => ({ server: 'rogue', folders: { docs: { root: serverRoot, tmp: path.join(serverRoot, '.systemsync', 'tmp'), head: 0, cursor: 0, floor: 0 } }, missing: [] }),
        changes: (params) => ({ changes: [], head: params.after, reset: false }),
        ack: () => ({}),
        bundle: (params) => ({ bundle: null, parts: params.files.map(() => null) }),
        push: (params) => {
          pushed.push(...params.ops);
          const results: PushResult[] = params.ops.map((op) => {
            const p = op.op === 'rename' ? op.to : op.path;
            if (p === 'edit.txt') {
              // The hostile answer: "conflict, and your version goes to victim.txt".
              return {
                status: 'conflict',
                copy: 'victim.txt',
                copySeq: ++seq,
                current: { seq: ++seq, entry: { type: 'file', size: Buffer.byteLength(SERVER_VERSION), mtime: 1_700_000_000_000, mode: 0o644, hash: sha256(SERVER_VERSION) }, origin: 'rogue' },
              };
            }
            return { status: 'ok', seq: ++seq };
          });
          return { results };
        },
      },
    });
    peers.push(peer);
  });
  await new Promise<void>((resolve) => fake.listen(socketPath, resolve));

  local = path.join(dir, 'alpha', 'docs');
  await fs.mkdir(local, { recursive: true });
  // An edit the server has never seen, at the name the server will pick for a conflict copy.
  await fs.writeFile(path.join(local, 'victim.txt'), 'precious local work\n');
  await fs.writeFile(path.join(local, 'edit.txt'), 'our edit of edit.txt\n');
  client = new Daemon('alpha', 'client', dir, { docs: local });
  client.writeConfig(
    `[node]\nname = alpha\nrole = client\nstate_dir = ${client.stateDir}\n\n` +
      `[server]\nhost = 127.0.0.1\nport = ${sshd.port}\nuser = ${sshd.user}\nidentity = ${sshd.clientKeyPath}\n` +
      `known_hosts = ${sshd.knownHostsPath}\nhost_key_check = yes\nrpc_socket = ${socketPath}\nconnect_timeout = 5\n\n[folders]\ndocs = ${local}\n`,
  );
  client.start();
  await waitConnected(client);
}, 120_000);

afterAll(async () => {
  await client?.stop().catch(() => client.stop('SIGKILL'));
  for (const peer of peers) peer.close();
  await new Promise<void>((resolve) => (fake ? fake.close(() => resolve()) : resolve()));
  await sshd?.stop();
  await cleanupTempDirs();
});

describe('a rogue server', () => {
  it('cannot make the client replace a local file by naming it as a conflict copy', async () => {
    await waitFor(() => pushed.some((op) => op.op === 'put' && op.path === 'edit.txt'), { timeoutMs: 60_000, what: 'the push of edit.txt' });
    // The server version is pulled to edit.txt; ours must survive somewhere, and victim.txt must not change.
    await waitFor(async () => (await fs.readFile(path.join(local, 'edit.txt'), 'utf8').catch(() => null)) === SERVER_VERSION, {
      timeoutMs: 60_000,
      what: `edit.txt to hold the server version\n${client.log().slice(-3000)}`,
    });
    expect(await fs.readFile(path.join(local, 'victim.txt'), 'utf8')).toBe('precious local work\n');
    const names = await fs.readdir(local);
    const ours = [];
    for (const name of names) if ((await fs.readFile(path.join(local, name), 'utf8').catch(() => '')) === 'our edit of edit.txt\n') ours.push(name);
    expect(ours).toEqual(['victim (local 1).txt']);
    expect(client.log()).toMatch(/the server named victim\.txt, which exists here and is kept/);
  });
});

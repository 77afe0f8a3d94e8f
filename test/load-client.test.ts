/**
 * The load client (src/load/loadclient.ts) against a real hub: 20 sessions over 20 real SSH
 * connections to the test sshd, speaking the real RPC, beside one real client daemon. Changes come
 * from the client daemon (many small files: bundles; one larger file: a direct download; a
 * delete), from a load session's own push, and from an edit in the hub's folder. Every session
 * must end holding every change: the `apply` sessions with the same files on disk as the hub, the
 * `ack` sessions with the same paths and content hashes in what they acknowledged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startCluster, waitIdle, type Cluster } from './helpers/daemons.js';
import { cleanupTempDirs, snapshotTree, type TreeItem } from './helpers/tree.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';
import { LoadClient, type LoadSession } from '../src/load/loadclient.js';

let cluster: Cluster;
let appliers: LoadClient;
let ackers: LoadClient;

const FOLDER = 'docs';

/** Files (path → content hash) and directories of a snapshot, the way a session holds them. */
function contentOf(tree: Map<string, TreeItem>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [p, item] of tree) out.set(p, item.type === 'file' ? item.hash : item.type === 'dir' ? 'dir' : `link:${item.target}`);
  return out;
}

function heldContent(session: LoadSession): Map<string, string> {
  const out = new Map<string, string>();
  for (const [p, v] of session.held) if (v.hash !== null) out.set(p, v.hash === '' ? 'dir' : v.hash);
  return out;
}

function differences(want: Map<string, string>, got: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [p, h] of want) if (got.get(p) !== h) out.push(`${p}: want ${h.slice(0, 12)}, got ${got.get(p)?.slice(0, 12) ?? 'nothing'}`);
  for (const p of got.keys()) if (!want.has(p)) out.push(`${p}: not on the hub`);
  return out;
}

beforeAll(async () => {
  cluster = await startCluster({ clients: 1, folders: [FOLDER] });
  const target = {
    host: '127.0.0.1',
    port: cluster.sshd.port,
    username: cluster.sshd.user,
    privateKey: cluster.sshd.clientKeyPath,
    knownHostsPath: cluster.sshd.knownHostsPath,
    hostKeyCheck: 'yes' as const,
  };
  const rpcSocket = path.join(cluster.server.stateDir, 'rpc.sock');
  appliers = new LoadClient({ sessions: 15, prefix: 'apply', mode: 'apply', localBase: path.join(cluster.dir, 'load'), folder: FOLDER, target, rpcSocket, pageLimit: 50 });
  ackers = new LoadClient({ sessions: 5, prefix: 'ack', mode: 'ack', folder: FOLDER, target, rpcSocket, pageLimit: 50 });
});

afterAll(async () => {
  await appliers?.close();
  await ackers?.close();
  await cluster?.stop();
  await cleanupTempDirs();
});

describe('load client: 20 sessions against a real hub', () => {
  it('every session ends with every change, made before and after it connected', async () => {
    const hub = cluster.server.folder();
    const alpha = cluster.clients[0]!.folder();
    // Before the sessions connect: they catch up from cursor 0 over several pages (limit 50).
    for (let d = 0; d < 3; d++) {
      fs.mkdirSync(path.join(alpha, `d${d}`), { recursive: true });
      for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(alpha, `d${d}`, `f${i}.txt`), `early ${d}/${i} ${crypto.randomUUID()}\n`);
    }
    await waitForTreesEqual([hub, alpha], { timeoutMs: 60_000 });

    await appliers.connect();
    await ackers.connect();
    const sessions = [...appliers.sessions, ...ackers.sessions];
    expect(sessions.every((s) => s.isConnected)).toBe(true);

    // After: a large file (direct download), edits, a delete, a push from a session, a hub-side edit.
    fs.writeFileSync(path.join(alpha, 'big.bin'), crypto.randomBytes(200_000));
    for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(alpha, 'd0', `f${i}.txt`), `edited ${i} ${crypto.randomUUID()}\n`);
    fs.rmSync(path.join(alpha, 'd1', 'f0.txt'));
    fs.mkdirSync(path.join(alpha, 'late'), { recursive: true });
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(alpha, 'late', `n${i}.txt`), `late ${i} ${crypto.randomUUID()}\n`);
    const pushed = await appliers.sessions[3]!.pushFile('from-load.txt', Buffer.from(`pushed by a load session ${crypto.randomUUID()}\n`));
    expect(pushed).toBeGreaterThan(0);
    fs.writeFileSync(path.join(hub, 'hub-edit.txt'), `written on the hub ${crypto.randomUUID()}\n`);

    const final = await waitForTreesEqual([hub, alpha], { timeoutMs: 60_000 });
    await waitIdle([cluster.server, cluster.clients[0]!]);
    const want = contentOf(final);
    expect(want.has('from-load.txt')).toBe(true);
    expect(want.has('d1/f0.txt')).toBe(false);

    await waitFor(
      () => {
        const behind = sessions.find((s) => !s.isCaughtUp || differences(want, heldContent(s)).length > 0);
        if (behind === undefined) return true;
        throw new Error(`${behind.name} at cursor ${behind.cursor} of ${behind.head}: ${differences(want, heldContent(behind)).slice(0, 5).join('; ')}`);
      },
      { timeoutMs: 60_000, what: 'every session to hold every change' },
    );
    for (const s of sessions) expect(s.errors, `${s.name} pull errors`).toEqual([]);
    // Both ways of pulling were used: `changes` pages (catching up from cursor 0 over pages of
    // 50) and pages inline in the hub's `changed` notifications.
    for (const s of sessions) expect(s.pages, `${s.name} changes requests`).toBeGreaterThanOrEqual(2);
    expect(sessions.filter((s) => s.inlinePages > 0).length, 'sessions that applied inline pages').toBeGreaterThan(0);
    // The apply sessions hold it on disk too.
    for (const s of appliers.sessions) {
      const local = contentOf(await snapshotTree(s.options.localRoot!));
      expect(differences(want, local), `${s.name}'s folder`).toEqual([]);
    }
    // The hub knows every session's cursor.
    const status = await cluster.server.status();
    for (const s of sessions) expect(status.clients?.find((c) => c.name === s.name)?.behind, `${s.name} behind`).toBe(0);
  });
});

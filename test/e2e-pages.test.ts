/**
 * Pages bounded by bytes (issue 12, finding 4): a tree whose names and symlink targets are
 * control characters (six bytes each in JSON, `\u0001`) makes a page of a few hundred changes
 * pass the 8 MiB line limit. Real sshd, real daemons; the clients must keep pulling (and
 * pushing) such a tree until every node holds it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startCluster, waitConnected, waitIdle, type Cluster } from './helpers/daemons.js';
import { cleanupTempDirs } from './helpers/tree.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';
import { DEFAULT_MAX_LINE_BYTES } from '../src/rpc.js';

let cluster: Cluster;
let hub: string, alpha: string, beta: string;

/** `length` control characters (0x01-0x1f), shifted by `seed` so that names differ. */
function controlText(length: number, seed: number): string {
  let s = '';
  for (let i = 0; i < length; i++) s += String.fromCharCode(1 + ((i + seed) % 31));
  return s;
}

/**
 * 14 nested directories of 255-byte control-character names, and in the deepest `links`
 * symlinks of 240-byte control-character names (plus a counter) whose 4000-byte targets are
 * control characters too. Returns the JSON size of those changes as a server would send them.
 */
async function makeInflatedTree(root: string, links: number, seed: number): Promise<number> {
  const dirs = Array.from({ length: 14 }, (_, i) => controlText(255, seed + i));
  await fs.mkdir(path.join(root, ...dirs), { recursive: true });
  let jsonBytes = 0;
  for (let i = 0; i < links; i++) {
    const rel = [...dirs, `${controlText(240, seed + i)}${i}`].join('/');
    const target = controlText(4000, seed + i);
    await fs.symlink(target, path.join(root, rel));
    jsonBytes += JSON.stringify({ path: rel, seq: 1, entry: { type: 'symlink', target }, origin: 'hub' }).length + 1;
  }
  return jsonBytes;
}

async function serverHead(): Promise<number> {
  return (await cluster.server.control<{ folders: Array<{ head: number }> }>('status')).folders[0]!.head;
}

beforeAll(async () => {
  cluster = await startCluster({ clients: 2 });
  [hub, alpha, beta] = [cluster.server.folder(), cluster.clients[0]!.folder(), cluster.clients[1]!.folder()];
});

afterAll(async () => {
  await cluster?.stop();
  await cleanupTempDirs();
});

describe('pages bounded by bytes as well as by count', () => {
  it('clients keep pulling 220 symlinks whose names and 4 KiB targets are control characters (made on the server)', async () => {
    // The clients are away while the tree is made, so that they find it all in one pull.
    for (const c of cluster.clients) await c.stop();
    const headBefore = await serverHead();
    const bytes = await makeInflatedTree(hub, 220, 0);
    await waitFor(async () => (await serverHead()) >= headBefore + 234, { timeoutMs: 60_000, what: 'the server to record the tree' });
    for (const c of cluster.clients) c.start();
    for (const c of cluster.clients) await waitConnected(c);
    // One count-bounded page (2000 changes) would hold all of them: past the line limit.
    expect(bytes).toBeGreaterThan(DEFAULT_MAX_LINE_BYTES);
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs: 120_000 });
    await waitIdle(cluster.all);
    for (const d of [cluster.server, ...cluster.clients]) expect(d.log()).not.toMatch(/line longer than/);
  }, 240_000);

  it('a client pushes such a tree, and the others pull it', async () => {
    // Made while alpha is stopped: its start-up scan finds it all and pushes it in one go.
    const [alphaDaemon] = cluster.clients;
    await alphaDaemon!.stop();
    const bytes = await makeInflatedTree(alpha, 220, 7);
    alphaDaemon!.start();
    await waitConnected(alphaDaemon!);
    expect(bytes).toBeGreaterThan(DEFAULT_MAX_LINE_BYTES);
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs: 120_000 });
    await waitIdle(cluster.all);
    for (const d of [cluster.server, ...cluster.clients]) expect(d.log()).not.toMatch(/line longer than/);
  }, 240_000);
});

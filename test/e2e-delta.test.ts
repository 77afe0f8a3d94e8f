/**
 * Delta transfer end to end: a real sshd, a server and two client daemons as processes, each
 * client behind its own counting TCP proxy. An edit of a large file travels as the blocks that
 * changed (bytes counted on the wire), survives a link cut in the middle, and a conflicting edit
 * keeps both versions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startAll, startCluster, type Cluster } from './helpers/daemons.js';
import { startProxy, type TestProxy } from './helpers/proxy.js';
import { cleanupTempDirs } from './helpers/tree.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** 24 MiB: 192 blocks of 128 KiB. */
const SIZE = 24 * MiB;

let cluster: Cluster;
let proxies: TestProxy[];
let hub: string, alpha: string, beta: string;

async function converge(timeoutMs = 120_000): Promise<void> {
  await waitForTreesEqual([hub, alpha, beta], { timeoutMs });
}

async function sha256(file: string): Promise<string> {
  return crypto.createHash('sha256').update(await fs.readFile(file)).digest('hex');
}

/** Overwrites `length` bytes at `offset` in place with random bytes; returns the file's new hash. */
async function rewrite(file: string, offset: number, length: number): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    await handle.write(crypto.randomBytes(length), 0, length, offset);
  } finally {
    await handle.close();
  }
}

/** Bytes alpha sent up plus bytes beta received, since `before`. */
function wireBytes(before: { up: number; down: number }): number {
  return proxies[0]!.bytesForwarded().up + proxies[1]!.bytesForwarded().down - before.up - before.down;
}
function mark(): { up: number; down: number } {
  return { up: proxies[0]!.bytesForwarded().up, down: proxies[1]!.bytesForwarded().down };
}

async function allHave(rel: string, hash: string): Promise<void> {
  await waitFor(async () => {
    for (const root of [hub, alpha, beta]) if ((await sha256(path.join(root, rel)).catch(() => null)) !== hash) return false;
    return true;
  }, { timeoutMs: 120_000, what: `${rel} with sha256 ${hash} on every node` });
}

/**
 * A large file of random bytes written on alpha, once every node has it. Each test makes its own
 * (its own name), so none depends on what another left.
 */
async function largeFileEverywhere(rel: string): Promise<string> {
  const file = path.join(alpha, rel);
  await fs.writeFile(file, crypto.randomBytes(SIZE));
  await allHave(rel, await sha256(file));
  await converge();
  return file;
}

beforeAll(async () => {
  cluster = await startCluster({ clients: 2, noStart: true });
  proxies = [await startProxy({ targetPort: cluster.sshd.port }), await startProxy({ targetPort: cluster.sshd.port })];
  for (const [i, proxy] of proxies.entries()) {
    cluster.trustPort(proxy.port);
    cluster.writeClientConfig(cluster.clients[i]!, proxy.port);
  }
  await startAll(cluster);
  [hub, alpha, beta] = [cluster.server.folder(), cluster.clients[0]!.folder(), cluster.clients[1]!.folder()];
});

afterAll(async () => {
  if (process.env.KEEP_LOGS) for (const d of cluster?.all ?? []) console.log(`==== ${d.name}\n${d.log().slice(-6000)}`);
  await cluster?.stop();
  for (const proxy of proxies ?? []) await proxy.close();
  await cleanupTempDirs();
});

describe('delta transfer of large files', () => {
  it('sends an edit in the middle of a large file as the changed blocks, byte-identical everywhere', async () => {
    const file = await largeFileEverywhere('edit.img');
    const before = mark();
    await rewrite(file, 10 * MiB + 1000, 256 * KiB); // touches 3 blocks of 128 KiB
    const expected = await sha256(file);
    await allHave('edit.img', expected);
    await converge();
    const sent = wireBytes(before);
    // Whole, it would be 48 MiB (up and down); as blocks about 2 × 384 KiB, plus headers and lists.
    expect(sent).toBeLessThan(2 * MiB);
    expect(sent).toBeGreaterThan(2 * 384 * KiB);
  });

  it('sends 4 KiB appended to a large file as its last block', async () => {
    const file = await largeFileEverywhere('append.img');
    const before = mark();
    await fs.appendFile(file, crypto.randomBytes(4 * KiB));
    const expected = await sha256(file);
    await allHave('append.img', expected);
    await converge();
    expect(wireBytes(before)).toBeLessThan(1 * MiB);
  });

  it('sends only the new mtime of a large file touched without a change', async () => {
    const file = await largeFileEverywhere('touch.img');
    const before = mark();
    const when = new Date('2031-05-06T07:08:09Z');
    await fs.utimes(file, when, when);
    await waitFor(async () => Math.abs((await fs.stat(path.join(beta, 'touch.img'))).mtimeMs - when.getTime()) < 1, { timeoutMs: 60_000, what: 'the new mtime on beta' });
    await converge();
    expect(wireBytes(before)).toBeLessThan(1 * MiB);
  });

  it('moves a large file as a rename, not as its content', async () => {
    const file = await largeFileEverywhere('move.img');
    const before = mark();
    await fs.rename(file, path.join(alpha, 'moved.img'));
    await converge();
    expect(await sha256(path.join(beta, 'moved.img'))).toBe(await sha256(path.join(alpha, 'moved.img')));
    const moved = wireBytes(before);
    expect(moved).toBeLessThan(1 * MiB); // a rename travels as a rename
  });

  it('converges after the link is cut in the middle of a delta push and of a delta pull', async () => {
    const file = await largeFileEverywhere('cut.img');
    // Every other 128 KiB block changes: a 12 MiB delta each way.
    const handle = await fs.open(file, 'r+');
    for (let offset = 0; offset < SIZE; offset += 256 * KiB) await handle.write(crypto.randomBytes(128 * KiB), 0, 128 * KiB, offset);
    await handle.close();
    const expected = await sha256(file);
    const before = mark();
    proxies[0]!.setLatency(5);
    await waitFor(() => proxies[0]!.bytesForwarded().up - before.up > 2 * MiB, { timeoutMs: 60_000, intervalMs: 5, what: 'alpha to be sending the delta' });
    proxies[0]!.cut();
    proxies[0]!.setLatency(0);
    await new Promise((r) => setTimeout(r, 500));
    proxies[0]!.restore();
    // beta: cut once it is fetching blocks.
    const downBefore = proxies[1]!.bytesForwarded().down;
    proxies[1]!.setLatency(5);
    await waitFor(() => proxies[1]!.bytesForwarded().down - downBefore > 2 * MiB, { timeoutMs: 120_000, intervalMs: 5, what: 'beta to be fetching the delta' });
    proxies[1]!.cut();
    proxies[1]!.setLatency(0);
    await new Promise((r) => setTimeout(r, 500));
    proxies[1]!.restore();
    await allHave('cut.img', expected);
    await converge();
    // Still a delta after the retries: far less than the 48 MiB of two whole copies.
    expect(wireBytes(before)).toBeLessThan(36 * MiB);
  });

  it('keeps both versions when a large file is edited on both clients while one edit streams', async () => {
    const fileA = await largeFileEverywhere('both.img');
    const fileB = path.join(beta, 'both.img');
    proxies[0]!.setLatency(5); // alpha's push takes a while: beta's edit meets it
    await rewrite(fileA, 1 * MiB, 3 * MiB);
    await rewrite(fileB, 15 * MiB, 1 * MiB);
    const [hashA, hashB] = [await sha256(fileA), await sha256(fileB)];
    await waitFor(async () => {
      const names = (await fs.readdir(hub)).filter((n) => n.startsWith('both.'));
      return names.length >= 2;
    }, { timeoutMs: 120_000, what: 'a conflict copy on the server' });
    proxies[0]!.setLatency(0);
    await converge();
    for (const root of [hub, alpha, beta]) {
      const names = (await fs.readdir(root)).filter((n) => n.startsWith('both.')).sort();
      expect(names).toHaveLength(2);
      expect(names.some((n) => n.includes('sync-conflict'))).toBe(true);
      const hashes = await Promise.all(names.map((n) => sha256(path.join(root, n))));
      expect(new Set(hashes)).toEqual(new Set([hashA, hashB]));
    }
  });
});

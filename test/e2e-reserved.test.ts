/**
 * `.systemsync`, `.systemsync/tmp` and `.systemsync/trash` swapped for symlinks to a canary
 * directory (issue 12, finding 1), while the daemons run and before they start. The temp-file
 * cleanup, the trash pruning and every temp write must never reach the canary; the folder
 * recovers (a symlinked tmp or trash is replaced by a real directory) or pauses (a symlinked
 * `.systemsync`), with a log line saying so. Real sshd, real daemons.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startCluster, startDaemon, waitConnected, type Cluster } from './helpers/daemons.js';
import { cleanupTempDirs, makeTree, snapshotTree } from './helpers/tree.js';
import { waitFor } from './helpers/wait.js';

let cluster: Cluster;
let hub: string, alpha: string;
let canaries = 0;

const TWO_HOURS_AGO = new Date(Date.now() - 2 * 3600_000);
/** Maintenance (temp cleanup, trash pruning) runs every 5 s on the server. */
const MAINTENANCE_TICK_MS = 5_000;

/** A canary directory: what a cleanup through a link would delete (old temp files, an expired trash stamp). */
async function makeCanary(): Promise<{ dir: string; check: () => Promise<void> }> {
  const dir = await makeTree(
    {
      'old.part': { content: 'an old temp file', mtime: TWO_HOURS_AGO },
      'id_ed25519': { content: 'a private key', mtime: TWO_HOURS_AGO },
      '20000101-000000/kept.txt': { content: 'an expired trash stamp', mtime: TWO_HOURS_AGO },
      'tmp/old.part': { content: 'old temp file in a tmp', mtime: TWO_HOURS_AGO },
      'trash/20000101-000000/y.txt': { content: 'expired trash', mtime: TWO_HOURS_AGO },
    },
    path.join(cluster.dir, `canary-${++canaries}`),
  );
  for (const sub of ['20000101-000000', 'tmp', 'trash', 'trash/20000101-000000']) await fs.utimes(path.join(dir, sub), TWO_HOURS_AGO, TWO_HOURS_AGO);
  await fs.utimes(dir, TWO_HOURS_AGO, TWO_HOURS_AGO);
  const before = await snapshotTree(dir);
  const dirTimes = async (): Promise<number[]> => Promise.all(['', 'tmp', 'trash', '20000101-000000'].map(async (s) => (await fs.lstat(path.join(dir, s))).mtimeMs));
  const timesBefore = await dirTimes();
  return {
    dir,
    // Nothing removed, changed or added (a directory's mtime moves with any entry made or removed in it).
    check: async () => {
      expect(await snapshotTree(dir)).toEqual(before);
      expect(await dirTimes()).toEqual(timesBefore);
    },
  };
}

async function swapForLink(abs: string, target: string): Promise<void> {
  await fs.rm(abs, { recursive: true, force: true });
  await fs.symlink(target, abs);
}

async function expectRealDir(abs: string): Promise<void> {
  await waitFor(async () => (await fs.lstat(abs).catch(() => null))?.isDirectory() === true, { timeoutMs: 30_000, what: `${abs} to be a real directory` });
}

async function serverPaused(): Promise<string | null> {
  return (await cluster.server.status()).folders[0]!.paused;
}

async function syncsAgain(name: string): Promise<void> {
  await fs.writeFile(path.join(alpha, name), name);
  await waitFor(async () => (await fs.readFile(path.join(hub, name), 'utf8').catch(() => null)) === name, { timeoutMs: 60_000, what: `${name} on the hub` });
}

beforeAll(async () => {
  cluster = await startCluster({ clients: 1 });
  [hub, alpha] = [cluster.server.folder(), cluster.clients[0]!.folder()];
  await fs.writeFile(path.join(alpha, 'a.txt'), 'first');
  await waitFor(async () => (await fs.readFile(path.join(hub, 'a.txt'), 'utf8').catch(() => null)) === 'first', { what: 'a.txt on the hub' });
});

afterAll(async () => {
  await cluster?.stop();
  await cleanupTempDirs();
});

describe('a symlinked .systemsync, tmp or trash is never followed', () => {
  it('server, while running: tmp and trash swapped for links are replaced by real directories; cleanup and trash never reach the canary', async () => {
    const tmpCanary = await makeCanary();
    const trashCanary = await makeCanary();
    await swapForLink(path.join(hub, '.systemsync', 'tmp'), tmpCanary.dir);
    await swapForLink(path.join(hub, '.systemsync', 'trash'), trashCanary.dir);
    await new Promise((r) => setTimeout(r, MAINTENANCE_TICK_MS + 1000));
    await tmpCanary.check();
    await trashCanary.check();
    await waitFor(() => /\.systemsync\/tmp was a symlink/.test(cluster.server.log()) && /\.systemsync\/trash was a symlink/.test(cluster.server.log()), { timeoutMs: 30_000, what: 'the server to log the replaced links' });
    // An edit replaces a file on the hub: the old one goes to the (real) trash.
    await fs.writeFile(path.join(alpha, 'a.txt'), 'second');
    await waitFor(async () => (await fs.readFile(path.join(hub, 'a.txt'), 'utf8').catch(() => null)) === 'second', { timeoutMs: 60_000, what: 'a.txt edited on the hub' });
    expect((await fs.readdir(path.join(hub, '.systemsync', 'trash'))).length).toBeGreaterThan(0);
    await tmpCanary.check();
    await trashCanary.check();
    await expectRealDir(path.join(hub, '.systemsync', 'tmp'));
    await expectRealDir(path.join(hub, '.systemsync', 'trash'));
    await syncsAgain('after-tmp-link.txt');
  }, 120_000);

  it('server, while running: .systemsync swapped for a link pauses the folder, the canary stays untouched, and it resumes once fixed', async () => {
    const canary = await makeCanary();
    const marker = path.join(hub, '.systemsync');
    const aside = path.join(cluster.dir, 'marker-aside');
    await fs.rename(marker, aside);
    await fs.symlink(canary.dir, marker);
    await new Promise((r) => setTimeout(r, MAINTENANCE_TICK_MS + 1000));
    await canary.check();
    await waitFor(async () => /symlink/.test((await serverPaused()) ?? ''), { timeoutMs: 30_000, what: 'the folder to pause' });
    expect(cluster.server.log()).toMatch(/paused: \.systemsync is a symlink/);
    await fs.unlink(marker);
    await fs.rename(aside, marker);
    await waitFor(async () => (await serverPaused()) === null, { timeoutMs: 30_000, what: 'the folder to resume' });
    await canary.check();
    await syncsAgain('after-marker-link.txt');
  }, 120_000);

  it('client, while running: tmp swapped for a link; pulls never write through it', async () => {
    const canary = await makeCanary();
    await swapForLink(path.join(alpha, '.systemsync', 'tmp'), canary.dir);
    await fs.writeFile(path.join(hub, 'from-hub.txt'), 'pulled');
    await fs.writeFile(path.join(hub, 'from-hub-big.bin'), Buffer.alloc(300 * 1024, 7));
    await new Promise((r) => setTimeout(r, 3000));
    await canary.check();
    await waitFor(async () => (await fs.readFile(path.join(alpha, 'from-hub.txt'), 'utf8').catch(() => null)) === 'pulled' && (await fs.lstat(path.join(alpha, 'from-hub-big.bin')).catch(() => null))?.size === 300 * 1024, { timeoutMs: 60_000, what: 'the pulls on alpha' });
    expect(cluster.clients[0]!.log()).toMatch(/\.systemsync\/tmp was a symlink/);
    await canary.check();
    await expectRealDir(path.join(alpha, '.systemsync', 'tmp'));
  }, 120_000);

  it('before a start: a client whose tmp is a link and a server whose .systemsync is a link leave the canaries untouched', async () => {
    const clientCanary = await makeCanary();
    const serverCanary = await makeCanary();
    const alphaDaemon = cluster.clients[0]!;
    await alphaDaemon.stop();
    await cluster.server.stop();
    await swapForLink(path.join(alpha, '.systemsync', 'tmp'), clientCanary.dir);
    const marker = path.join(hub, '.systemsync');
    const aside = path.join(cluster.dir, 'marker-aside-2');
    await fs.rename(marker, aside);
    await fs.symlink(serverCanary.dir, marker);
    await startDaemon(cluster.server);
    alphaDaemon.start();
    await waitConnected(alphaDaemon);
    await new Promise((r) => setTimeout(r, MAINTENANCE_TICK_MS + 1000));
    await clientCanary.check();
    await serverCanary.check();
    await waitFor(async () => /symlink/.test((await serverPaused()) ?? ''), { timeoutMs: 30_000, what: 'the server folder to be paused' });
    await expectRealDir(path.join(alpha, '.systemsync', 'tmp'));
    await fs.unlink(marker);
    await fs.rename(aside, marker);
    await waitFor(async () => (await serverPaused()) === null, { timeoutMs: 30_000, what: 'the server folder to resume' });
    await syncsAgain('after-restart.txt');
    await clientCanary.check();
    await serverCanary.check();
  }, 180_000);
});

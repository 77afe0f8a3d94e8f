/**
 * Getting things back (SPEC "Versions and conflicts", promise 8): `versions`, `restore`,
 * `conflicts` and `resolve`, run as real CLI commands against real daemons and a real sshd.
 * Restores and resolutions asked on one client must reach every node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startCluster, waitConnected, waitIdle, type Cluster, type Daemon } from './helpers/daemons.js';
import { cleanupTempDirs, makeTree, snapshotTree } from './helpers/tree.js';
import { waitForTreesEqual } from './helpers/wait.js';
import type { ConflictWire, VersionInfoWire } from '../src/rpc.js';

type VersionJson = VersionInfoWire;
type ConflictJson = ConflictWire;

describe('versions, restore, conflicts and resolve from the command line', () => {
  let cluster: Cluster;
  let alphaNode: Daemon, betaNode: Daemon, hubNode: Daemon;
  let hub: string, alpha: string, beta: string;

  const converge = async (timeoutMs = 60_000): Promise<void> => {
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs });
    await waitIdle(cluster.all);
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs });
  };

  const cli = async (node: Daemon, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => node.cli(args, 120_000);

  const versionsOf = async (node: Daemon, file: string): Promise<VersionJson[]> => {
    const r = await cli(node, ['versions', file, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as VersionJson[];
  };

  /** Every node holds `rel` with exactly this content, mode and mtime. */
  const expectEverywhere = async (rel: string, want: { content: string; mode?: number; mtime?: number }): Promise<void> => {
    for (const root of [hub, alpha, beta]) {
      const abs = path.join(root, rel);
      expect(await fs.readFile(abs, 'utf8')).toBe(want.content);
      const st = await fs.stat(abs);
      if (want.mode !== undefined) expect(st.mode & 0o777).toBe(want.mode);
      if (want.mtime !== undefined) expect(Math.floor(st.mtimeMs)).toBe(want.mtime);
    }
  };

  beforeAll(async () => {
    // simple: every version stays (pruning still runs), so that the listings below are exact.
    cluster = await startCluster({ clients: 2, serverExtra: '[versions]\nkeep = simple\ncount = 20\n' });
    [alphaNode, betaNode] = cluster.clients as [Daemon, Daemon];
    hubNode = cluster.server;
    [hub, alpha, beta] = [cluster.server.folder(), alphaNode.folder(), betaNode.folder()];
  });

  afterAll(async () => {
    await cluster?.stop();
    await cleanupTempDirs();
  });

  it('restores on every node, with its content, mode and mtime, a file deleted on another client', async () => {
    const mtime = Date.UTC(2025, 4, 17, 9, 30, 15, 250);
    // Made aside and moved in whole: a half-written file seen by the watcher would be a version too.
    const staged = await makeTree({ 'reports/q1.txt': { content: 'first quarter\n', mode: 0o640, mtime } });
    await fs.rename(path.join(staged, 'reports'), path.join(alpha, 'reports'));
    await converge();
    await fs.rm(path.join(alpha, 'reports/q1.txt'));
    await converge();
    for (const root of [hub, alpha, beta]) await expect(fs.stat(path.join(root, 'reports/q1.txt'))).rejects.toThrow();

    // Any node lists the version: the other client, and the server itself.
    const listed = await versionsOf(betaNode, path.join(beta, 'reports/q1.txt'));
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ path: 'reports/q1.txt', size: 'first quarter\n'.length, node: 'alpha', type: 'file' });
    expect(listed[0]!.id).toMatch(/^\d{8}-\d{6}-\d+$/);
    expect(listed[0]!.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(await versionsOf(hubNode, path.join(hub, 'reports/q1.txt'))).toEqual(listed);
    const human = await cli(betaNode, ['versions', '--folder', 'docs', 'reports/q1.txt']);
    expect(human.stdout).toContain(listed[0]!.id);
    expect(human.stdout).toContain('alpha');

    const restored = await cli(betaNode, ['restore', path.join(beta, 'reports/q1.txt')]);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(restored.stdout).toContain(`restored version ${listed[0]!.id}`);
    await converge();
    await expectEverywhere('reports/q1.txt', { content: 'first quarter\n', mode: 0o640, mtime });
  });

  it('lists three overwrites and restores the oldest exactly, keeping the replaced content as a version', async () => {
    const contents = ['v0: the original\n', 'v1: edited once, longer\n', 'v2: edited twice, longer still\n', 'v3: the current content, the longest\n'];
    // Each write lands whole (written beside, renamed in): a watcher that saw a half-written file
    // would rightly make a version of it, and the listing below would have one more.
    const writeWhole = async (file: string, text: string): Promise<void> => {
      const staging = path.join(cluster.dir, `staging-${Date.now()}`);
      await fs.writeFile(staging, text);
      await fs.rename(staging, file);
    };
    await writeWhole(path.join(alpha, 'notes.txt'), contents[0]!);
    await converge();
    for (const [i, text] of contents.slice(1).entries()) {
      // Alternate writers: each replaced version is kept, whoever replaced it.
      await writeWhole(path.join(i % 2 === 0 ? beta : alpha, 'notes.txt'), text);
      await converge();
    }
    const listed = await versionsOf(alphaNode, path.join(alpha, 'notes.txt'));
    // Newest first: v2, v1, v0 (v3 is the current content).
    expect(listed.map((v) => v.size)).toEqual([contents[2]!.length, contents[1]!.length, contents[0]!.length]);
    expect(listed.map((v) => v.node)).toEqual(['beta', 'alpha', 'beta']);
    const times = listed.map((v) => v.time);
    expect([...times].sort().reverse()).toEqual(times);

    const oldest = listed[2]!;
    const r = await cli(betaNode, ['restore', path.join(beta, 'notes.txt'), '--version', oldest.id]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await converge();
    await expectEverywhere('notes.txt', { content: contents[0]! });

    const after = await versionsOf(betaNode, path.join(beta, 'notes.txt'));
    expect(after).toHaveLength(4);
    expect(after[0]).toMatchObject({ size: contents[3]!.length, node: 'beta' });
    // The replaced content really is kept: restore it elsewhere and read it.
    const back = await cli(alphaNode, ['restore', path.join(alpha, 'notes.txt'), '--version', after[0]!.id, '--as', path.join(alpha, 'notes-v3.txt')]);
    expect(back.code).toBe(0);
    await converge();
    await expectEverywhere('notes-v3.txt', { content: contents[3]! });
    await expectEverywhere('notes.txt', { content: contents[0]! });
  });

  it('restores a deleted directory of 20 files as a whole', async () => {
    const spec: Record<string, { content: string; mode: number; mtime: number }> = {};
    for (let i = 0; i < 20; i++) {
      spec[`album/${i < 10 ? 'day1' : 'day2'}/photo-${String(i).padStart(2, '0')}.jpg`] = { content: `pixels of photo ${i}\n`.repeat(i + 1), mode: i % 3 === 0 ? 0o600 : 0o644, mtime: Date.UTC(2024, 6, 1 + i, 12) };
    }
    await makeTree(spec, alpha);
    await converge();
    const before = [...(await snapshotTree(hub))].filter(([p]) => p === 'album' || p.startsWith('album/'));
    expect(before.filter(([, item]) => item.type === 'file')).toHaveLength(20);

    await fs.rm(path.join(alpha, 'album'), { recursive: true });
    await converge();
    for (const root of [hub, alpha, beta]) await expect(fs.stat(path.join(root, 'album'))).rejects.toThrow();

    const listed = await versionsOf(betaNode, path.join(beta, 'album'));
    expect(listed[0]).toMatchObject({ path: 'album', type: 'dir', node: 'alpha' });
    expect(listed[0]!.entries).toBeGreaterThanOrEqual(20);

    const r = await cli(betaNode, ['restore', '--folder', 'docs', 'album']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await converge();
    for (const root of [hub, alpha, beta]) {
      const now = [...(await snapshotTree(root))].filter(([p]) => p === 'album' || p.startsWith('album/'));
      // Content, size, mode and mtime of every file, and every directory, as before the delete.
      expect(now.filter(([, item]) => item.type === 'file')).toEqual(before.filter(([, item]) => item.type === 'file'));
      expect(now.map(([p]) => p)).toEqual(before.map(([p]) => p));
    }
  });

  it('restore of a path with no versions exits 1 with a clear message', async () => {
    const r = await cli(alphaNode, ['restore', path.join(alpha, 'never-existed.txt')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('systemsync: no versions of "never-existed.txt" are kept on the server\n');
    const bad = await cli(alphaNode, ['restore', path.join(alpha, 'notes.txt'), '--version', '20200101-000000-1']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('no versions of "notes.txt"');
    const outside = await cli(alphaNode, ['restore', '/etc/passwd']);
    expect(outside.code).toBe(2);
    expect(outside.stderr).toContain('/etc/passwd is not inside any synced folder');
  });

  it('lists conflicts, resolves one keeping the copy and the rest with --all', async () => {
    await makeTree({ 'c.txt': 'c base\n', 'd1.txt': 'd1 base\n', 'd2.md': 'd2 base\n', 'sub/d3': 'd3 base\n' }, alpha);
    await converge();
    await Promise.all([alphaNode.stop('SIGTERM'), betaNode.stop('SIGTERM')]);
    for (const name of ['c.txt', 'd1.txt', 'd2.md', 'sub/d3']) {
      await fs.writeFile(path.join(alpha, name), `${name} by alpha\n`);
      await fs.writeFile(path.join(beta, name), `${name} by beta, who wrote more\n`);
    }
    alphaNode.start();
    betaNode.start();
    await Promise.all([waitConnected(alphaNode), waitConnected(betaNode)]);
    await converge();

    const r = await cli(alphaNode, ['conflicts', '--json']);
    expect(r.code).toBe(0);
    const conflicts = JSON.parse(r.stdout) as ConflictJson[];
    expect(conflicts.map((c) => c.original).sort()).toEqual(['c.txt', 'd1.txt', 'd2.md', 'sub/d3']);
    for (const c of conflicts) {
      expect(c.folder).toBe('docs');
      expect(['alpha', 'beta']).toContain(c.node);
      expect(c.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
      expect(await fs.readFile(path.join(hub, c.path), 'utf8')).toBe(`${c.original} by ${c.node}${c.node === 'beta' ? ', who wrote more' : ''}\n`);
    }
    // The server and the other client list the same.
    expect(JSON.parse((await cli(hubNode, ['conflicts', '--json'])).stdout)).toEqual(conflicts);

    const c = conflicts.find((x) => x.original === 'c.txt')!;
    const copyContent = await fs.readFile(path.join(alpha, c.path), 'utf8');
    const originalContent = await fs.readFile(path.join(alpha, 'c.txt'), 'utf8');
    expect(copyContent).not.toBe(originalContent);
    const resolved = await cli(betaNode, ['resolve', path.join(beta, c.path), '--keep', 'copy']);
    expect(resolved.stderr).toBe('');
    expect(resolved.code).toBe(0);
    await converge();
    await expectEverywhere('c.txt', { content: copyContent });
    for (const root of [hub, alpha, beta]) {
      const names = [...(await snapshotTree(root)).keys()];
      expect(names.filter((n) => n.startsWith('c.'))).toEqual(['c.txt']);
    }
    // The original's content is a version of c.txt now.
    const kept = await versionsOf(alphaNode, path.join(alpha, 'c.txt'));
    expect(kept[0]).toMatchObject({ size: originalContent.length, node: 'beta' });
    const back = await cli(alphaNode, ['restore', path.join(alpha, 'c.txt'), '--version', kept[0]!.id, '--as', path.join(alpha, 'c-other.txt')]);
    expect(back.code).toBe(0);
    await converge();
    await expectEverywhere('c-other.txt', { content: originalContent });

    const originals = new Map<string, string>();
    for (const name of ['d1.txt', 'd2.md', 'sub/d3']) originals.set(name, await fs.readFile(path.join(hub, name), 'utf8'));
    const all = await cli(alphaNode, ['resolve', '--all', '--keep', 'original']);
    expect(all.stderr).toBe('');
    expect(all.code).toBe(0);
    expect(all.stdout).toContain('resolved 3 conflict(s)');
    await converge();
    expect(JSON.parse((await cli(betaNode, ['conflicts', '--json'])).stdout)).toEqual([]);
    for (const [name, content] of originals) await expectEverywhere(name, { content });
    // Each removed copy is a version of its own path.
    for (const x of conflicts.filter((y) => y.original !== 'c.txt')) {
      expect((await versionsOf(betaNode, path.join(beta, x.path)))[0]).toMatchObject({ path: x.path, node: 'alpha' });
    }
  });

  it('resolve --all --keep newest keeps whichever side was modified last', async () => {
    await makeTree({ 'n1.txt': 'n1 base\n', 'n2.txt': 'n2 base\n' }, alpha);
    await converge();
    await Promise.all([alphaNode.stop('SIGTERM'), betaNode.stop('SIGTERM')]);
    const older = Date.UTC(2025, 0, 1);
    const newer = Date.UTC(2025, 0, 2);
    await makeTree({ 'n1.txt': { content: 'n1 alpha newer\n', mtime: newer }, 'n2.txt': { content: 'n2 alpha older\n', mtime: older } }, alpha);
    await makeTree({ 'n1.txt': { content: 'n1 beta older\n', mtime: older }, 'n2.txt': { content: 'n2 beta newer\n', mtime: newer } }, beta);
    alphaNode.start();
    betaNode.start();
    await Promise.all([waitConnected(alphaNode), waitConnected(betaNode)]);
    await converge();
    expect((JSON.parse((await cli(alphaNode, ['conflicts', '--json'])).stdout) as ConflictJson[]).length).toBe(2);

    const r = await cli(betaNode, ['resolve', '--all', '--keep', 'newest']);
    expect(r.code).toBe(0);
    await converge();
    await expectEverywhere('n1.txt', { content: 'n1 alpha newer\n', mtime: newer });
    await expectEverywhere('n2.txt', { content: 'n2 beta newer\n', mtime: newer });
    expect(JSON.parse((await cli(hubNode, ['conflicts', '--json'])).stdout)).toEqual([]);
  });

  it('shows the versions kept and their disk use in status', async () => {
    const kept = async (): Promise<{ count: number; bytes: number }> =>
      ((await hubNode.status()).folders[0] as unknown as { versions: { count: number; bytes: number } }).versions;
    const before = await kept();
    // Versions of this test's own: a file replaced twice and a directory of 3 files deleted.
    await makeTree({ 'status-kept/a.txt': 'a0', 'status-kept/b.txt': 'b0', 'status-kept/c.txt': 'c0', 'status-edited.txt': 'e0 with some bytes' }, alpha);
    await converge();
    for (const text of ['e1 with more bytes', 'e2 with more bytes still']) {
      await fs.writeFile(path.join(alpha, 'status-edited.txt'), text);
      await converge();
    }
    await fs.rm(path.join(alpha, 'status-kept'), { recursive: true });
    await converge();
    const after = await kept();
    expect(after.count - before.count).toBeGreaterThanOrEqual(5);
    expect(after.bytes - before.bytes).toBeGreaterThanOrEqual(Buffer.byteLength('e0 with some bytese1 with more bytesa0b0c0'));
    const human = await cli(hubNode, ['status']);
    expect(human.stdout).toContain('VERSIONS');
    expect(human.stdout).toMatch(/systemsync \d+\.\d+\.\d+/);
  });
});

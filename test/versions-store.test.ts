// The server's version store (src/server/versions.ts) on real temp directories: adopting trash
// from before the index, keeping and copying out, pruning, and links planted in .systemsync/trash.
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { VersionStore } from '../src/server/versions.js';
import { cleanupTempDirs, makeTree, tempDir } from './helpers/tree.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const none = (): null => null;

afterAll(cleanupTempDirs);

describe('VersionStore', () => {
  it('reads trash made before the index as versions of unknown node, `<path>.<n>` included', async () => {
    const root = await makeTree({
      '.systemsync/trash/20260101-120000/a/b.txt': 'first',
      '.systemsync/trash/20260101-120000/a/b.txt.1': 'second!',
      '.systemsync/trash/20260102-080000/a/b.txt': 'third!!!',
      '.systemsync/trash/20260102-080000/c.1': 'a file really named c.1',
    });
    const state = await tempDir();
    const store = await VersionStore.open(root, state, none);
    const listed = store.list('a/b.txt');
    expect(listed.map((v) => [v.time, v.size, v.node])).toEqual([
      ['2026-01-02T08:00:00Z', 8, null],
      ['2026-01-01T12:00:00Z', 7, null],
      ['2026-01-01T12:00:00Z', 5, null],
    ]);
    expect(store.list('c.1')).toHaveLength(1);
    const { tmpAbs, entry } = await store.copyOut(listed[0]!);
    expect(await fs.readFile(tmpAbs, 'utf8')).toBe('third!!!');
    expect(entry.hash).toBe(sha('third!!!'));
    // Opened again, the index knows them: same ids, nothing adopted twice.
    const again = await VersionStore.open(root, state, none);
    expect(again.list('a/b.txt').map((v) => v.id)).toEqual(listed.map((v) => v.id));
    expect(again.count).toBe(4);
  });

  it('keeps a file about to go, with its node, metadata and hash, and prunes it by the policy', async () => {
    const root = await makeTree({ 'doc.txt': { content: 'keep me', mode: 0o640, mtime: Date.UTC(2025, 1, 2) } });
    const store = await VersionStore.open(root, await tempDir(), () => ({ type: 'file', size: 7, mtime: Date.UTC(2025, 1, 2), mode: 0o640, hash: sha('keep me') }));
    const at = new Date(Date.UTC(2026, 5, 1, 10, 0, 0));
    await store.keeper('laptop', 'deleted', () => at)(path.join(root, 'doc.txt'), 'doc.txt');
    await fs.rm(path.join(root, 'doc.txt'));
    const [v] = store.list('doc.txt');
    expect(v).toMatchObject({ id: '20260601-100000-1', node: 'laptop', because: 'deleted', size: 7, mode: 0o640, mtime: Date.UTC(2025, 1, 2), hash: sha('keep me') });
    expect(await fs.readFile(path.join(root, '.systemsync/trash/20260601-100000/doc.txt'), 'utf8')).toBe('keep me');
    expect(store.bytes).toBe(7);

    const policy = { keep: 'trash' as const, maxAgeDays: 1, count: 5, maxBytes: null };
    expect(await store.prune(policy, new Date(at.getTime() + 3600_000))).toBe(0);
    expect(await store.prune(policy, new Date(at.getTime() + 2 * 86_400_000))).toBe(1);
    expect(store.list('doc.txt')).toEqual([]);
    await expect(fs.stat(path.join(root, '.systemsync/trash/20260601-100000'))).rejects.toThrow();
  });

  it('keeps nothing through a trash directory swapped for a symlink', async () => {
    const outside = await tempDir();
    const root = await makeTree({ 'doc.txt': 'secret-free content', '.systemsync/tmp/x': '' });
    await fs.symlink(outside, path.join(root, '.systemsync/trash'));
    const store = await VersionStore.open(root, await tempDir(), none);
    await expect(store.keeper('laptop', 'deleted')(path.join(root, 'doc.txt'), 'doc.txt')).rejects.toMatchObject({ code: 'UNSAFE_PATH' });
    expect(await fs.readdir(outside)).toEqual([]);
    expect(store.count).toBe(0);
  });

  it('never reads a kept file swapped for a symlink to a file outside the folder', async () => {
    const outside = await makeTree({ 'secret.txt': 'do not restore me' });
    const root = await makeTree({ '.systemsync/trash/20260101-120000/notes.txt': 'kept' });
    const store = await VersionStore.open(root, await tempDir(), none);
    const [v] = store.list('notes.txt');
    await fs.rm(path.join(root, '.systemsync/trash/20260101-120000/notes.txt'));
    await fs.symlink(path.join(outside, 'secret.txt'), path.join(root, '.systemsync/trash/20260101-120000/notes.txt'));
    await expect(store.copyOut(v!)).rejects.toMatchObject({ code: 'VERSION_GONE' });
    // A planted link is never adopted as a version either.
    const fresh = await VersionStore.open(root, await tempDir(), none);
    expect(fresh.count).toBe(0);
  });
});

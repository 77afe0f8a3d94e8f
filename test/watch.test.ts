import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createIgnoreMatcher, type IgnoreMatcher } from '../src/core/ignore.js';
import { changesSince, watchFolder, writeSnapshot, type FolderWatcher } from '../src/fs/watch.js';
import { cleanupTempDirs, makeTree, tempDir } from './helpers/tree.js';
import { waitFor } from './helpers/wait.js';

afterAll(cleanupTempDirs);

const noIgnore = createIgnoreMatcher([], null);
const open: FolderWatcher[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((w) => w.close()));
});

interface Recorder {
  hinted: Set<string>;
  batches: string[][];
  errors: Error[];
  watcher: FolderWatcher & { setIgnore(m: IgnoreMatcher): void };
}

async function watch(root: string, ignore: IgnoreMatcher = noIgnore): Promise<Recorder> {
  const hinted = new Set<string>();
  const batches: string[][] = [];
  const errors: Error[] = [];
  const watcher = await watchFolder(root, {
    ignore,
    onHints: (paths) => {
      batches.push(paths);
      for (const p of paths) hinted.add(p);
    },
    onError: (err) => errors.push(err),
  });
  open.push(watcher);
  return { hinted, batches, errors, watcher };
}

async function waitForHints(rec: Recorder, paths: string[], what: string): Promise<void> {
  await waitFor(() => paths.every((p) => rec.hinted.has(p)), {
    timeoutMs: 10_000,
    what: `${what}: hints ${JSON.stringify(paths)}, got ${JSON.stringify([...rec.hinted])}`,
  });
}

/** A change that is surely hinted, used as a barrier: anything written before it was seen too. */
async function barrier(root: string, rec: Recorder, name: string): Promise<void> {
  await fsp.writeFile(path.join(root, name), name);
  await waitForHints(rec, [name], 'barrier');
}

describe('watchFolder', () => {
  it('hints a created, modified and deleted file', async () => {
    const root = await makeTree({ '.systemsync/marker': '' });
    const rec = await watch(root);
    await fsp.writeFile(path.join(root, 'a.txt'), 'one');
    await waitForHints(rec, ['a.txt'], 'create');
    rec.hinted.clear();
    await fsp.appendFile(path.join(root, 'a.txt'), 'two');
    await waitForHints(rec, ['a.txt'], 'modify');
    rec.hinted.clear();
    await fsp.rm(path.join(root, 'a.txt'));
    await waitForHints(rec, ['a.txt'], 'delete');
    expect(rec.errors).toEqual([]);
    for (const batch of rec.batches) {
      expect(batch).not.toContain('');
      expect(new Set(batch).size).toBe(batch.length);
    }
  });

  it('hints every path of a mkdir -p tree filled right away, and later writes deep inside', async () => {
    const root = await makeTree({ '.systemsync/marker': '' });
    const rec = await watch(root);
    await fsp.mkdir(path.join(root, 'a/b/c'), { recursive: true });
    await fsp.writeFile(path.join(root, 'a/b/c/f1'), '1');
    await fsp.writeFile(path.join(root, 'a/b/f2'), '2');
    await waitForHints(rec, ['a', 'a/b', 'a/b/c', 'a/b/c/f1', 'a/b/f2'], 'mkdir -p');
    // @parcel/watcher alone never reports writes in a/b/c: the extra subscription must.
    rec.hinted.clear();
    await fsp.writeFile(path.join(root, 'a/b/c/f3'), '3');
    await fsp.writeFile(path.join(root, 'a/b/c/f1'), 'changed');
    await waitForHints(rec, ['a/b/c/f3', 'a/b/c/f1'], 'later writes deep inside');
    expect(rec.errors).toEqual([]);
  });

  it('hints every descendant of a tree moved in from outside, and later writes inside it', async () => {
    const root = await makeTree({ '.systemsync/marker': '' });
    const outside = await makeTree({ 'm/n/o/f': 'x', 'm/n/g': 'y', 'm/empty': { dir: true }, 'm/l': { symlink: 'n/g' } });
    const rec = await watch(root);
    await fsp.rename(path.join(outside, 'm'), path.join(root, 'm'));
    await waitForHints(rec, ['m', 'm/n', 'm/n/o', 'm/n/o/f', 'm/n/g', 'm/empty', 'm/l'], 'moved in');
    rec.hinted.clear();
    await fsp.writeFile(path.join(root, 'm/n/o/f'), 'edited');
    await waitForHints(rec, ['m/n/o/f'], 'write inside the moved tree');
    // Renamed within the folder: the new place is watched too.
    rec.hinted.clear();
    await fsp.rename(path.join(root, 'm'), path.join(root, 'm2'));
    await waitForHints(rec, ['m', 'm2', 'm2/n/o/f'], 'rename inside the folder');
    rec.hinted.clear();
    await fsp.writeFile(path.join(root, 'm2/n/o/f'), 'edited again');
    await waitForHints(rec, ['m2/n/o/f'], 'write inside the renamed tree');
    expect(rec.errors).toEqual([]);
  });

  it('hints an empty directory, a symlink, and a deleted directory', async () => {
    const root = await makeTree({ '.systemsync/marker': '', 'old/x/y': 'y' });
    const rec = await watch(root);
    await fsp.mkdir(path.join(root, 'empty'));
    await fsp.symlink('/nonexistent/target', path.join(root, 'link'));
    await fsp.rm(path.join(root, 'old'), { recursive: true });
    await waitForHints(rec, ['empty', 'link', 'old'], 'empty dir, symlink, deleted dir');
    expect(rec.errors).toEqual([]);
  });

  it('never hints ignored paths nor .systemsync, and follows setIgnore', async () => {
    const root = await makeTree({ '.systemsync/marker': '' });
    const rec = await watch(root, createIgnoreMatcher(['*.tmp', 'node_modules/'], null));
    await fsp.writeFile(path.join(root, 'x.tmp'), 't');
    await fsp.mkdir(path.join(root, 'node_modules/p/q'), { recursive: true });
    await fsp.writeFile(path.join(root, 'node_modules/p/q/i.js'), 'i');
    await fsp.mkdir(path.join(root, '.systemsync/tmp'), { recursive: true });
    await fsp.writeFile(path.join(root, '.systemsync/tmp/upload'), 'u');
    await fsp.writeFile(path.join(root, '.systemsync/marker'), 'changed');
    await barrier(root, rec, 'kept.txt');
    const unwanted = [...rec.hinted].filter((p) => p.endsWith('.tmp') || p.startsWith('node_modules') || p.startsWith('.systemsync'));
    expect(unwanted).toEqual([]);

    rec.watcher.setIgnore(createIgnoreMatcher(['*.txt'], null));
    rec.hinted.clear();
    await fsp.writeFile(path.join(root, 'y.txt'), 'now ignored');
    await fsp.writeFile(path.join(root, 'z.tmp'), 'now kept');
    await waitForHints(rec, ['z.tmp'], 'after setIgnore');
    expect(rec.hinted.has('y.txt')).toBe(false);
  });

  it('stops hinting after close', async () => {
    const root = await makeTree({ '.systemsync/marker': '' });
    const rec = await watch(root);
    await barrier(root, rec, 'before');
    await rec.watcher.close();
    const count = rec.batches.length;
    await fsp.writeFile(path.join(root, 'after'), 'x');
    // A second watcher proves the write was observable; the closed one must stay silent.
    const other = await watch(root);
    await fsp.writeFile(path.join(root, 'after2'), 'x');
    await waitForHints(other, ['after2'], 'second watcher');
    expect(rec.batches.length).toBe(count);
  });

  it('refuses a root that does not exist with WATCH_FAILED', async () => {
    const root = path.join(await tempDir(), 'missing');
    await expect(
      watchFolder(root, { ignore: noIgnore, onHints: () => undefined, onError: () => undefined }),
    ).rejects.toMatchObject({ code: 'WATCH_FAILED' });
  });
});

describe('bursts', () => {
  it('asks for a rescan once a large burst has settled, and not after a small one', async () => {
    const root = await tempDir();
    const bursts: number[] = [];
    const watcher = await watchFolder(root, {
      ignore: noIgnore,
      onHints: () => undefined,
      onError: () => undefined,
      onBurstSettled: (events) => bursts.push(events),
      burstEvents: 50,
      burstQuietMs: 200,
    });
    open.push(watcher);
    await fsp.writeFile(path.join(root, 'one.txt'), 'x');
    await new Promise((r) => setTimeout(r, 600));
    expect(bursts).toEqual([]);
    await Promise.all(Array.from({ length: 100 }, (_, i) => fsp.writeFile(path.join(root, `f${i}.txt`), 'x')));
    await waitFor(() => bursts.length > 0, { timeoutMs: 10_000, what: 'the burst to settle' });
    expect(bursts).toHaveLength(1);
    expect(bursts[0]).toBeGreaterThanOrEqual(50);
  });
});

describe('writeSnapshot / changesSince', () => {
  it('returns null without a snapshot', async () => {
    const root = await makeTree({ a: 'a' });
    expect(await changesSince(root, path.join(root, '.systemsync/none.snapshot'), noIgnore)).toBeNull();
  });

  it('lists edits, creates and deletes made while nothing watched', async () => {
    const root = await makeTree({
      '.systemsync/marker': '',
      'keep.txt': 'same',
      'edit.txt': { content: 'before', mtime: 1_600_000_000_000 },
      'gone.txt': 'bye',
      'olddir/inner.txt': 'i',
    });
    const snapshot = path.join(root, '.systemsync', 'state', 'watch.snapshot');
    await writeSnapshot(root, snapshot);
    expect(await changesSince(root, snapshot, noIgnore)).toEqual([]);

    await fsp.writeFile(path.join(root, 'edit.txt'), 'after!');
    await fsp.rm(path.join(root, 'gone.txt'));
    await fsp.rm(path.join(root, 'olddir'), { recursive: true });
    await fsp.mkdir(path.join(root, 'new/deep/er'), { recursive: true });
    await fsp.writeFile(path.join(root, 'new/deep/er/f.txt'), 'f');
    await fsp.writeFile(path.join(root, 'x.tmp'), 'ignored');
    await fsp.writeFile(path.join(root, '.systemsync/marker'), 'internal');

    const changes = await changesSince(root, snapshot, createIgnoreMatcher(['*.tmp'], null));
    expect(changes).toEqual(['edit.txt', 'gone.txt', 'new', 'new/deep', 'new/deep/er', 'new/deep/er/f.txt', 'olddir', 'olddir/inner.txt']);
  });
});

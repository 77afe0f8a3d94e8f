// A client's per-folder state, in process, on a real temp dir: the base index and its counters,
// the outbox and its generations, failed tasks and their backoff, the pull journal, and what a
// close and reopen (or a kill after flush) keeps.
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BaseRecord, Change, Entry } from '../src/core/types.js';
import { ClientFolderState } from '../src/client/clientstate.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';

afterAll(cleanupTempDirs);

const file = (size: number): Entry => ({ type: 'file', size, mtime: 1_700_000_000_000, mode: 0o644, hash: 'b'.repeat(64) });
const record = (seq: number, entry: Entry, ino: number | null = null): BaseRecord => ({
  seq,
  entry,
  stat: ino === null ? null : { ino, size: entry.type === 'file' ? entry.size : 0, mtimeMs: 1, ctimeMs: 1 },
});

async function openState(): Promise<{ state: ClientFolderState; dir: string }> {
  const dir = path.join(await tempDir(), 'folder-state');
  return { state: await ClientFolderState.open(dir), dir };
}

describe('ClientFolderState base index', () => {
  it('counts files, bytes and conflict copies through set, replace and delete', async () => {
    const { state } = await openState();
    expect(state.hasHistory).toBe(false);
    state.setBase('a.txt', record(1, file(10), 100));
    state.setBase('d', record(2, { type: 'dir', mode: 0o755 }, 101));
    state.setBase('a.sync-conflict-20260101-000000-beta.txt', record(3, file(5), 102));
    state.setBase('l', record(4, { type: 'symlink', target: 'a.txt' }));
    expect([state.files, state.bytes, state.conflictCount()]).toEqual([2, 15, 1]);
    state.setBase('a.txt', record(5, file(30), 100));
    expect([state.files, state.bytes]).toEqual([2, 35]);
    state.deleteBase('a.sync-conflict-20260101-000000-beta.txt');
    state.deleteBase('never-there');
    expect([state.files, state.bytes, state.conflictCount()]).toEqual([1, 30, 0]);
    expect(state.hasHistory).toBe(true);
    await state.close();
  });

  it('finds a base path by inode, forgets it when the path goes or takes another inode, and never maps symlinks', async () => {
    const { state } = await openState();
    state.setBase('a.txt', record(1, file(1), 500));
    state.setBase('l', { seq: 2, entry: { type: 'symlink', target: 'x' }, stat: { ino: 501, size: 1, mtimeMs: 1, ctimeMs: 1 } });
    expect(state.pathOfInode(500)).toBe('a.txt');
    expect(state.pathOfInode(501)).toBeNull();
    state.setBase('a.txt', record(3, file(1), 600));
    expect(state.pathOfInode(500)).toBeNull();
    expect(state.pathOfInode(600)).toBe('a.txt');
    state.deleteBase('a.txt');
    expect(state.pathOfInode(600)).toBeNull();
    await state.close();
  });

  it('knows every name of a hard-linked inode, and drops each name as it goes', async () => {
    const { state } = await openState();
    for (const p of ['one.txt', 'sub/two.txt', 'three.txt']) state.setBase(p, record(1, file(4), 700));
    expect(state.pathsOfInode(700).sort()).toEqual(['one.txt', 'sub/two.txt', 'three.txt'].sort());
    expect(['one.txt', 'sub/two.txt', 'three.txt']).toContain(state.pathOfInode(700));
    state.deleteBase('sub/two.txt');
    state.setBase('three.txt', record(2, file(4), 701)); // replaced by a file of its own
    expect(state.pathsOfInode(700)).toEqual(['one.txt']);
    expect(state.pathOfInode(700)).toBe('one.txt');
    expect(state.pathsOfInode(701)).toEqual(['three.txt']);
    expect(state.pathsOfInode(702)).toEqual([]);
    await state.close();
  });

  it('has history once it holds a base or has pulled anything', async () => {
    const { state } = await openState();
    expect(state.hasHistory).toBe(false);
    state.setCursor(3);
    expect(state.hasHistory).toBe(true);
    expect(state.cursor).toBe(3);
    await state.close();
  });

  it('lists base paths strictly inside a directory, not look-alike prefixes', async () => {
    const { state } = await openState();
    for (const p of ['d', 'd/x', 'd/x/y.txt', 'dd', 'dd/z.txt']) state.setBase(p, record(1, file(1)));
    expect(state.baseUnder('d').sort()).toEqual(['d/x', 'd/x/y.txt']);
    expect([...state.basePaths()].sort()).toEqual(['d', 'd/x', 'd/x/y.txt', 'dd', 'dd/z.txt']);
    await state.close();
  });
});

describe('ClientFolderState outbox', () => {
  it('keeps paths in order of their latest mention and counts only new ones', async () => {
    const { state } = await openState();
    expect(state.markDirty(['a', 'b', 'c'])).toBe(3);
    expect(state.markDirty(['a'])).toBe(0);
    expect(state.pendingCount).toBe(3);
    expect(state.takeDirty(10).map(([p]) => p)).toEqual(['b', 'c', 'a']);
    expect(state.takeDirty(2).map(([p]) => p)).toEqual(['b', 'c']);
    await state.close();
  });

  it('does not clear a path that was marked again after it was taken', async () => {
    const { state } = await openState();
    state.markDirty(['a', 'b']);
    const taken = new Map(state.takeDirty(10));
    state.markDirty(['a']); // an edit while the push of a was in flight
    state.clearDirty('a', taken.get('a')!);
    state.clearDirty('b', taken.get('b')!);
    expect(state.takeDirty(10).map(([p]) => p)).toEqual(['a']);
    await state.close();
  });

  it('holds back a path whose push failed until its retry time, and retry makes every failure due now', async () => {
    const { state } = await openState();
    state.markDirty(['ok.txt', 'bad.txt', 'stuck.txt']);
    const t0 = 1_000_000;
    const first = state.recordFailure({ path: 'bad.txt', op: 'push', lastError: 'ETIMEDOUT', permanent: false }, t0);
    const second = state.recordFailure({ path: 'bad.txt', op: 'push', lastError: 'ETIMEDOUT', permanent: false }, t0 + 10);
    const permanent = state.recordFailure({ path: 'stuck.txt', op: 'push', lastError: 'EACCES', permanent: true }, t0);
    // Backoff doubles per attempt; the first failure time is kept.
    expect(first.attempts).toBe(1);
    expect(second.attempts).toBe(2);
    expect(second.retryAt - (t0 + 10)).toBe(2 * (first.retryAt - t0));
    expect(second.since).toBe(first.since);
    expect(state.failed).toHaveLength(2);
    expect(state.takeDirty(10, t0 + 20).map(([p]) => p)).toEqual(['ok.txt']);
    expect(state.takeDirty(10, second.retryAt).map(([p]) => p)).toEqual(['ok.txt', 'bad.txt']);
    expect(permanent.retryAt).toBe(Number.MAX_SAFE_INTEGER);
    expect(state.dueFailures(t0 + 20).map((t) => t.path)).toEqual([]);
    expect(state.dueFailures(t0 + 20, true).map((t) => t.path).sort()).toEqual(['bad.txt', 'stuck.txt']);
    expect(state.resetRetryTimes(t0 + 30)).toBe(2);
    expect(state.dueFailures(t0 + 30).map((t) => [t.path, t.permanent]).sort()).toEqual([
      ['bad.txt', false],
      ['stuck.txt', false],
    ]);
    state.clearFailure('bad.txt', 'push');
    state.clearFailure('bad.txt', 'pull'); // no such task: nothing changes
    expect(state.failed.map((t) => t.path)).toEqual(['stuck.txt']);
    await state.close();
  });

  it('keeps a failed push and a failed pull of one path as two tasks, each cleared on its own', async () => {
    const { state } = await openState();
    state.recordFailure({ path: 'p.txt', op: 'push', lastError: 'EIO', permanent: false }, 0);
    const pull = state.recordFailure({ path: 'p.txt', op: 'pull', lastError: 'ENOSPC', permanent: false }, 0);
    expect(pull.attempts).toBe(1);
    expect(state.failed.map((t) => [t.op, t.lastError]).sort()).toEqual([
      ['pull', 'ENOSPC'],
      ['push', 'EIO'],
    ]);
    state.clearFailure('p.txt', 'pull');
    expect(state.failed.map((t) => t.op)).toEqual(['push']);
    await state.close();
  });

  it('caps the backoff at one minute', async () => {
    const { state } = await openState();
    let last = state.recordFailure({ path: 'x', op: 'pull', lastError: 'e', permanent: false }, 0);
    for (let i = 0; i < 20; i++) last = state.recordFailure({ path: 'x', op: 'pull', lastError: 'e', permanent: false }, 0);
    expect(last.attempts).toBe(21);
    expect(last.retryAt).toBe(60_000);
    await state.close();
  });
});

describe('ClientFolderState on disk', () => {
  it('keeps the base index, cursor, outbox, failures and an unfinished pull page across a reopen', async () => {
    const { state, dir } = await openState();
    state.setBase('a.txt', record(4, file(12), 77));
    state.setCursor(9);
    state.markDirty(['x', 'y']);
    state.recordFailure({ path: 'y', op: 'push', lastError: 'EIO', permanent: true }, 5);
    const page: Change[] = [{ path: 'p.txt', seq: 10, entry: file(3), origin: 'beta' }];
    await state.beginApply(page);
    await state.close();

    const again = await ClientFolderState.open(dir);
    expect(again.getBase('a.txt')).toEqual(record(4, file(12), 77));
    expect(again.pathOfInode(77)).toBe('a.txt');
    expect([again.files, again.bytes, again.cursor]).toEqual([1, 12, 9]);
    expect(again.lastSync).not.toBeNull();
    expect(again.takeDirty(10, 0).map(([p]) => p)).toEqual(['x']);
    expect(again.pendingCount).toBe(2);
    expect(again.failed.map((t) => [t.path, t.lastError])).toEqual([['y', 'EIO']]);
    expect(again.pendingApply()).toEqual(page);
    again.endApply();
    await again.close();

    const third = await ClientFolderState.open(dir);
    expect(third.pendingApply()).toEqual([]);
    await third.close();
  });

  it('where its own versions begin is set by the first push only, durably, and a reset starts it again', async () => {
    const { state, dir } = await openState();
    expect(state.ownVersions('desk')).toBeNull();
    await state.beginOwnVersions(12);
    // Reopen while the first instance is still open, as a restart after kill -9 would.
    const killed = await ClientFolderState.open(dir);
    expect(killed.ownVersions('desk')).toEqual({ node: 'desk', since: 12 });
    await killed.beginOwnVersions(40);
    expect(killed.ownVersions('desk')).toEqual({ node: 'desk', since: 12 });
    killed.restartOwnVersions(3);
    await killed.close();
    await state.close();
    const again = await ClientFolderState.open(dir);
    expect(again.ownVersions('desk')).toEqual({ node: 'desk', since: 3 });
    await again.close();
  });

  it('an outbox mark is on disk after flush, without waiting for the background save', async () => {
    const { state, dir } = await openState();
    state.markDirty(['late.txt']);
    await state.flush();
    // Reopen while the first instance is still open, as a restart after kill -9 would.
    const seen = await ClientFolderState.open(dir);
    expect(seen.takeDirty(10).map(([p]) => p)).toEqual(['late.txt']);
    await seen.close();
    await state.close();
  });
});

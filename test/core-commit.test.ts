// Table-driven tests of the server's commit rules (src/core/commit.ts) and the merge rules
// (src/core/merge.ts).
import { describe, expect, it } from 'vitest';
import { decideCommit, renamedEntry, type CommitContext, type CommitDecision } from '../src/core/commit.js';
import { basesForPulledRename, decideInterruptedPull, linkNamesToLookAt, moveBases, pullsStillFailing, otherLinkNames, pathsToPushAfterResync, type InterruptedPullStep, type LinkObservation, type PulledRenameBases } from '../src/core/merge.js';
import type { BaseRecord, Change, Entry, FileEntry, PushOp, Version } from '../src/core/types.js';

const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);
const file = (hash: string, mode = 0o644): FileEntry => ({ type: 'file', size: 10, mtime: 1_700_000_000_000, mode, hash });
const dir = (mode = 0o755): Entry => ({ type: 'dir', mode });
const v = (seq: number, entry: Entry | null): Version => ({ seq, entry, origin: 'hub' });

const commitCases: Array<{ description: string; op: PushOp; ctx: CommitContext; expected: CommitDecision }> = [
  { description: 'put on an absent path', op: { op: 'put', path: 'p', base: null, entry: file(HASH_A), upload: 'u' }, ctx: { current: null, hasUpload: true }, expected: { action: 'apply' } },
  { description: 'put over the version the client saw', op: { op: 'put', path: 'p', base: 3, entry: file(HASH_B), upload: 'u' }, ctx: { current: v(3, file(HASH_A)), hasUpload: true }, expected: { action: 'apply' } },
  { description: 'put of another edit: conflict', op: { op: 'put', path: 'p', base: 2, entry: file(HASH_B), upload: 'u' }, ctx: { current: v(3, file(HASH_A)), hasUpload: true }, expected: { action: 'conflict' } },
  { description: 'put of identical content: same', op: { op: 'put', path: 'p', base: 2, entry: file(HASH_A), upload: 'u' }, ctx: { current: v(3, file(HASH_A)), hasUpload: true }, expected: { action: 'same' } },
  { description: 'metadata-only put for content the server no longer holds: stale', op: { op: 'put', path: 'p', base: 3, entry: file(HASH_A, 0o700), upload: null }, ctx: { current: v(4, file(HASH_B)) }, expected: { action: 'stale' } },
  { description: 'metadata-only put on current content: apply', op: { op: 'put', path: 'p', base: 3, entry: file(HASH_A, 0o700), upload: null }, ctx: { current: v(3, file(HASH_A)) }, expected: { action: 'apply' } },
  {
    description: 'put of a link over a directory that still holds live paths: stale (nothing under it is removed)',
    op: { op: 'put', path: 'd', base: 3, entry: { type: 'symlink', target: 'x' }, upload: null },
    ctx: { current: v(3, dir()), liveChildren: 1 },
    expected: { action: 'stale' },
  },
  {
    description: 'put of a file over a directory that still holds live paths: stale',
    op: { op: 'put', path: 'd', base: 3, entry: file(HASH_A), upload: 'u' },
    ctx: { current: v(3, dir()), liveChildren: 2, hasUpload: true },
    expected: { action: 'stale' },
  },
  { description: 'put of a file over an empty directory seen: apply', op: { op: 'put', path: 'd', base: 3, entry: file(HASH_A), upload: 'u' }, ctx: { current: v(3, dir()), liveChildren: 0, hasUpload: true }, expected: { action: 'apply' } },
  { description: 'put of a directory mode over a directory with children: apply', op: { op: 'put', path: 'd', base: 3, entry: dir(0o700), upload: null }, ctx: { current: v(3, dir()), liveChildren: 2 }, expected: { action: 'apply' } },
  { description: 'put of a link over a directory the client did not see: conflict', op: { op: 'put', path: 'd', base: 2, entry: { type: 'symlink', target: 'x' }, upload: null }, ctx: { current: v(3, dir()), liveChildren: 1 }, expected: { action: 'conflict' } },
  // Seed 15: a client killed before the answer to its push came pushes its next edit on the old base.
  { description: 'put over a version the same node made (its answer lost): apply', op: { op: 'put', path: 'p', base: 2, entry: file(HASH_B), upload: 'u' }, ctx: { current: { seq: 3, entry: file(HASH_A), origin: 'c0' }, hasUpload: true, node: 'c0' }, expected: { action: 'apply' } },
  { description: 'put over another node\'s version: still a conflict', op: { op: 'put', path: 'p', base: 2, entry: file(HASH_B), upload: 'u' }, ctx: { current: { seq: 3, entry: file(HASH_A), origin: 'c1' }, hasUpload: true, node: 'c0' }, expected: { action: 'conflict' } },
  // Seed 423: the client's rename into d was committed, its answer lost in a cut; it then made d a
  // file. Stale brought the directory back, the client kept its file and pushed it again, for ever.
  {
    description: 'put of a file over its own directory that holds live paths, on another base: conflict (both kept)',
    op: { op: 'put', path: 'd', base: null, entry: file(HASH_A), upload: 'u' },
    ctx: { current: { seq: 5, entry: dir(), origin: 'c0' }, liveChildren: 1, hasUpload: true, node: 'c0' },
    expected: { action: 'conflict' },
  },
  {
    description: 'put of a file over its own directory that holds live paths, on the directory\'s seq: stale (the children go first)',
    op: { op: 'put', path: 'd', base: 5, entry: file(HASH_A), upload: 'u' },
    ctx: { current: { seq: 5, entry: dir(), origin: 'c0' }, liveChildren: 1, hasUpload: true, node: 'c0' },
    expected: { action: 'stale' },
  },
  {
    description: 'put of a file over its own empty directory, on another base: apply',
    op: { op: 'put', path: 'd', base: null, entry: file(HASH_A), upload: 'u' },
    ctx: { current: { seq: 5, entry: dir(), origin: 'c0' }, liveChildren: 0, hasUpload: true, node: 'c0' },
    expected: { action: 'apply' },
  },
  { description: 'delete over a version the same node made: apply', op: { op: 'delete', path: 'p', base: 2 }, ctx: { current: { seq: 3, entry: file(HASH_A), origin: 'c0' }, node: 'c0' }, expected: { action: 'apply' } },
  { description: 'delete over its own directory that holds live paths: still stale', op: { op: 'delete', path: 'd', base: 2 }, ctx: { current: { seq: 3, entry: dir(), origin: 'c0' }, liveChildren: 1, node: 'c0' }, expected: { action: 'stale' } },
  { description: 'delete of the version seen', op: { op: 'delete', path: 'p', base: 3 }, ctx: { current: v(3, file(HASH_A)) }, expected: { action: 'apply' } },
  { description: 'delete of an edited path: stale (the edit wins)', op: { op: 'delete', path: 'p', base: 2 }, ctx: { current: v(3, file(HASH_A)) }, expected: { action: 'stale' } },
  { description: 'delete of a tombstone: same', op: { op: 'delete', path: 'p', base: 2 }, ctx: { current: v(3, null) }, expected: { action: 'same' } },
  { description: 'delete of a directory that still holds live paths: stale', op: { op: 'delete', path: 'd', base: 3 }, ctx: { current: v(3, dir()), liveChildren: 2 }, expected: { action: 'stale' } },
  { description: 'rename as seen', op: { op: 'rename', from: 'a', to: 'b', base: 3, toBase: null, entry: file(HASH_A) }, ctx: { current: v(3, file(HASH_A)), currentTo: null }, expected: { action: 'apply' } },
  {
    description: 'chmod after rename: apply and restamp the moved file',
    op: { op: 'rename', from: 'a', to: 'b', base: 3, toBase: null, entry: file(HASH_A, 0o755) },
    ctx: { current: v(3, file(HASH_A)), currentTo: null },
    expected: { action: 'apply', restamp: file(HASH_A, 0o755) },
  },
  {
    description: 'directory renamed and chmodded: apply and restamp',
    op: { op: 'rename', from: 'd', to: 'e', base: 3, toBase: null, entry: dir(0o700) },
    ctx: { current: v(3, dir()), currentTo: null },
    expected: { action: 'apply', restamp: dir(0o700) },
  },
  { description: 'rename of a source that moved on: stale', op: { op: 'rename', from: 'a', to: 'b', base: 2, toBase: null, entry: file(HASH_A) }, ctx: { current: v(3, file(HASH_A)), currentTo: null }, expected: { action: 'stale' } },
  { description: 'rename over a target the client did not see: stale', op: { op: 'rename', from: 'a', to: 'b', base: 3, toBase: null, entry: file(HASH_A) }, ctx: { current: v(3, file(HASH_A)), currentTo: v(5, file(HASH_B)) }, expected: { action: 'stale' } },
  {
    description: 'rename over a directory that still holds live paths: stale',
    op: { op: 'rename', from: 'd', to: 'e', base: 3, toBase: 4, entry: dir() },
    ctx: { current: v(3, dir()), currentTo: v(4, dir()), liveChildrenOfTarget: 1 },
    expected: { action: 'stale' },
  },
  // Seed 3681: rename(2) cannot put a file over a directory, nor a directory over a file.
  { description: 'file renamed over the empty directory the client saw: apply, clearing the target', op: { op: 'rename', from: 'a', to: 'b', base: 3, toBase: 4, entry: file(HASH_A) }, ctx: { current: v(3, file(HASH_A)), currentTo: v(4, dir()), liveChildrenOfTarget: 0 }, expected: { action: 'apply', clearTarget: true } },
  { description: 'link renamed over an empty directory seen: apply, clearing the target', op: { op: 'rename', from: 'a', to: 'b', base: 3, toBase: 4, entry: { type: 'symlink', target: 'x' } }, ctx: { current: v(3, { type: 'symlink', target: 'x' }), currentTo: v(4, dir()), liveChildrenOfTarget: 0 }, expected: { action: 'apply', clearTarget: true } },
  { description: 'directory renamed over the file the client saw: apply, clearing the target', op: { op: 'rename', from: 'd', to: 'f', base: 3, toBase: 4, entry: dir() }, ctx: { current: v(3, dir()), currentTo: v(4, file(HASH_B)) }, expected: { action: 'apply', clearTarget: true } },
  { description: 'directory renamed over an empty directory seen: apply (rename replaces it)', op: { op: 'rename', from: 'd', to: 'e', base: 3, toBase: 4, entry: dir() }, ctx: { current: v(3, dir()), currentTo: v(4, dir()), liveChildrenOfTarget: 0 }, expected: { action: 'apply' } },
  { description: 'file renamed over a file seen and chmodded: apply, restamp, nothing cleared', op: { op: 'rename', from: 'a', to: 'b', base: 3, toBase: 4, entry: file(HASH_A, 0o600) }, ctx: { current: v(3, file(HASH_A)), currentTo: v(4, file(HASH_B)) }, expected: { action: 'apply', restamp: file(HASH_A, 0o600) } },
  { description: 'rename into itself: refused', op: { op: 'rename', from: 'd', to: 'd/e', base: 3, toBase: null, entry: dir() }, ctx: { current: v(3, dir()), currentTo: null }, expected: { action: 'refuse', code: 'BAD_OP', message: 'cannot move a directory into itself' } },
];

describe('decideCommit', () => {
  it.each(commitCases)('$description', ({ op, ctx, expected }) => {
    expect(decideCommit(op, ctx)).toEqual(expected);
  });

  it.each([
    { description: 'restamped: the pushed entry', moved: file(HASH_A), pushed: file(HASH_A, 0o755), restamped: true, expected: file(HASH_A, 0o755) },
    { description: 'restamp failed: what was moved', moved: file(HASH_A), pushed: file(HASH_A, 0o755), restamped: false, expected: file(HASH_A) },
    { description: 'nothing to restamp', moved: file(HASH_A), pushed: file(HASH_A), restamped: false, expected: file(HASH_A) },
  ])('renamedEntry: $description', ({ moved, pushed, restamped, expected }) => {
    expect(renamedEntry(moved, pushed, restamped)).toEqual(expected);
  });
});

const change = (seq: number, entry: Entry | null): Change => ({ path: 'p', seq, entry, origin: 'hub' });
const base = (seq: number, entry: Entry): BaseRecord => ({ seq, entry, stat: null });

describe('decideInterruptedPull', () => {
  it.each<{ description: string; change: Change; base: BaseRecord | null; local: Entry | null; expected: InterruptedPullStep }>([
    { description: 'placed but not recorded: record', change: change(5, file(HASH_B)), base: base(3, file(HASH_A)), local: file(HASH_B), expected: 'record' },
    { description: 'not placed yet: leave (the scan pushes nothing, the pull comes again)', change: change(5, file(HASH_B)), base: base(3, file(HASH_A)), local: file(HASH_A), expected: 'none' },
    { description: 'already recorded', change: change(5, file(HASH_B)), base: base(5, file(HASH_B)), local: file(HASH_B), expected: 'none' },
    { description: 'delete applied: forget', change: change(5, null), base: base(3, file(HASH_A)), local: null, expected: 'forget' },
    { description: 'delete not applied: leave', change: change(5, null), base: base(3, file(HASH_A)), local: file(HASH_A), expected: 'none' },
    { description: 'a local edit since: leave (it is pushed)', change: change(5, file(HASH_B)), base: base(3, file(HASH_A)), local: file(HASH_A, 0o600), expected: 'none' },
  ])('$description', ({ change: c, base: b, local, expected }) => {
    expect(decideInterruptedPull(c, b, local)).toEqual(expected);
  });
});

describe('pathsToPushAfterResync', () => {
  it.each<{ description: string; known: string[]; listed: string[]; recorded: string[]; expected: string[] }>([
    { description: 'known and recorded by the merge: nothing', known: ['a'], listed: ['a'], recorded: ['a'], expected: [] },
    { description: 'known, not on the server: pushed back (a reset never deletes)', known: ['a'], listed: [], recorded: [], expected: ['a'] },
    { description: 'listed but kept different here: pushed (the server keeps both)', known: ['a'], listed: ['a'], recorded: [], expected: ['a'] },
  ])('$description', ({ known, listed, recorded, expected }) => {
    expect(pathsToPushAfterResync(known, new Set(listed), (p) => recorded.includes(p))).toEqual(expected);
  });
});

describe('otherLinkNames', () => {
  it.each<{ description: string; path: string; links: number; names: string[]; expected: string[] }>([
    { description: 'one link: nothing else', path: 'a', links: 1, names: ['a', 'b'], expected: [] },
    { description: 'hard-link edit: the other names', path: 'two', links: 3, names: ['one', 'two', 'three'], expected: ['one', 'three'] },
  ])('$description', ({ path, links, names, expected }) => {
    expect(otherLinkNames(path, links, names)).toEqual(expected);
  });
});

describe('linkNamesToLookAt', () => {
  const fp = (ino: number, size = 10) => ({ ino, size, mtimeMs: 1, ctimeMs: 1 });
  const based = (ino: number): BaseRecord => ({ seq: 3, entry: file(HASH_A), stat: fp(ino) });
  const names: Record<number, string[]> = { 7: ['X', 'x'], 8: ['n'], 9: ['a', 'b', 'c'] };
  const namesOf = (ino: number) => names[ino] ?? [];
  it.each<{ description: string; path: string; base: BaseRecord | null; local: LinkObservation | null; expected: string[] }>([
    { description: 'unchanged file with links: nothing', path: 'x', base: based(7), local: { entry: file(HASH_A), stat: fp(7), links: 2 }, expected: [] },
    { description: 'edited through one name: the other names', path: 'x', base: based(7), local: { entry: file(HASH_B), stat: fp(7, 11), links: 2 }, expected: ['X'] },
    { description: 'edited file with one link: nothing', path: 'n', base: based(8), local: { entry: file(HASH_B), stat: fp(8, 11), links: 1 }, expected: [] },
    { description: 'a new name of a known inode, edited: the names of the inode', path: 'n', base: null, local: { entry: file(HASH_B), stat: fp(9, 11), links: 4 }, expected: ['a', 'b', 'c'] },
    { description: 'the name deleted: the other names of its inode (seed 1223)', path: 'x', base: based(7), local: null, expected: ['X'] },
    { description: 'the name made a symlink: the other names of its inode (seed 1223)', path: 'x', base: based(7), local: { entry: { type: 'symlink', target: 't' }, stat: null }, expected: ['X'] },
    { description: 'the name replaced by another file: the names of both inodes', path: 'x', base: based(7), local: { entry: file(HASH_B), stat: fp(9), links: 3 }, expected: ['a', 'b', 'c', 'X'] },
    { description: 'the name made a directory: the other names of its old inode', path: 'x', base: based(7), local: { entry: dir(), stat: fp(12) }, expected: ['X'] },
    { description: 'a deleted file alone on its inode: nothing', path: 'n', base: based(8), local: null, expected: [] },
    { description: 'a deleted directory: nothing (its children are looked at anyway)', path: 'x', base: { seq: 3, entry: dir(), stat: fp(7) }, local: null, expected: [] },
  ])('$description', ({ path, base, local, expected }) => {
    expect(linkNamesToLookAt(path, base, local, namesOf)).toEqual(expected);
  });
});

describe('basesForPulledRename', () => {
  const rec = (seq: number, entry: Entry = file(HASH_A)): BaseRecord => ({ seq, entry, stat: null });
  it.each<{ description: string; renameSeq: number; children: Array<[string, BaseRecord]>; expected: PulledRenameBases }>([
    { description: 'no children: the target is looked at', renameSeq: 5, children: [], expected: { moves: [], recheck: ['B'] } },
    {
      description: 'children the rename carried move their bases',
      renameSeq: 5,
      children: [['b/x', rec(2)], ['b/d', rec(3, dir())], ['b/d/y', rec(4)]],
      expected: { moves: [['b/x', 'B/x'], ['b/d', 'B/d'], ['b/d/y', 'B/d/y']], recheck: ['B', 'B/x', 'B/d', 'B/d/y'] },
    },
    {
      // Seed 24: a child committed under the old name after the rename stays based there.
      description: 'a child newer than the rename keeps its base at the old path; both paths are looked at',
      renameSeq: 3,
      children: [['b/x', rec(2)], ['b/c', rec(6, { type: 'symlink', target: 'x.txt' })]],
      expected: { moves: [['b/x', 'B/x']], recheck: ['B', 'b/c', 'B/c', 'B/x'].sort() as string[] },
    },
  ])('$description', ({ renameSeq, children, expected }) => {
    const got = basesForPulledRename('b', 'B', renameSeq, children);
    expect(got.moves).toEqual(expected.moves);
    expect([...got.recheck].sort()).toEqual([...expected.recheck].sort());
  });
});

describe('moveBases', () => {
  it('moves each listed base to its new path and skips paths without one', () => {
    const bases = new Map<string, BaseRecord>([['b/x', { seq: 2, entry: file(HASH_A), stat: null }]]);
    const index = { getBase: (p: string) => bases.get(p) ?? null, setBase: (p: string, r: BaseRecord) => void bases.set(p, r), deleteBase: (p: string) => void bases.delete(p) };
    moveBases(index, [['b/x', 'B/x'], ['b/none', 'B/none']]);
    expect([...bases.keys()]).toEqual(['B/x']);
    expect(bases.get('B/x')?.seq).toBe(2);
  });
});

describe('pullsStillFailing', () => {
  const change = (path: string, seq: number): Change => ({ path, seq, entry: file(HASH_A), origin: 'c2' });
  it.each<{ description: string; failed: Array<{ op: 'push' | 'pull'; path: string; change?: Change }>; expected: number[] }>([
    { description: 'the failure is still recorded with this change: retried', failed: [{ op: 'pull', path: 'a', change: change('a', 6) }], expected: [6] },
    // Seed 128: a later page brought a tombstone and cleared the failure; the queued retry must not fetch seq 6.
    { description: 'the failure was cleared by a newer version: not retried', failed: [], expected: [] },
    { description: 'a newer change failed since: the old one is not retried', failed: [{ op: 'pull', path: 'a', change: change('a', 9) }], expected: [] },
    { description: 'a push failure of the path does not count', failed: [{ op: 'push', path: 'a' }], expected: [] },
  ])('$description', ({ failed, expected }) => {
    expect(pullsStillFailing([change('a', 6)], failed).map((c) => c.seq)).toEqual(expected);
  });
});

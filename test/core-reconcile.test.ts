// Table-driven tests of the pure reconcile decisions (src/core/reconcile.ts), modelled on
// Mutagen's reconcile_test.go: every case names its ancestor (what both sides last agreed on),
// local and remote, and the expected decision. Invariants are checked with fast-check.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decideDelete,
  decidePull,
  decidePush,
  decidePut,
  decideRename,
  hasSameContent,
  isSameEntry,
  isDeleteUnderReplaced,
  isOwnVersion,
  isSameFingerprint,
  orderPushOps,
  type PullDecision,
} from '../src/core/reconcile.js';
import type {
  BaseRecord,
  Change,
  DirEntry,
  Entry,
  FileEntry,
  PushOp,
  StatFingerprint,
  SymlinkEntry,
  Version,
} from '../src/core/types.js';

// ---------------------------------------------------------------------------------------------
// Builders

const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);
const HASH_C = 'c'.repeat(64);

function file(hash: string, extra: Partial<Omit<FileEntry, 'type' | 'hash'>> = {}): FileEntry {
  return { type: 'file', size: 10, mtime: 1_700_000_000_000, mode: 0o644, hash, ...extra };
}
function dir(mode = 0o755): DirEntry {
  return { type: 'dir', mode };
}
function link(target: string): SymlinkEntry {
  return { type: 'symlink', target };
}
function version(seq: number, entry: Entry | null, from?: string): Version {
  return from === undefined ? { seq, entry, origin: 'desk' } : { seq, entry, origin: 'desk', from };
}
const STAT: StatFingerprint = { ino: 42, size: 10, mtimeMs: 1_700_000_000_000, ctimeMs: 1_700_000_000_000 };
function base(seq: number, entry: Entry, stat: StatFingerprint | null = STAT): BaseRecord {
  return { seq, entry, stat };
}
function change(path: string, seq: number, entry: Entry | null, from?: string): Change {
  return { path, ...version(seq, entry, from) };
}

const fileA = file(HASH_A);
const fileB = file(HASH_B);
const fileC = file(HASH_C);

// ---------------------------------------------------------------------------------------------
// Content and entry equality

interface PairCase {
  description: string;
  local: Entry | null;
  remote: Entry | null;
  sameContent: boolean;
  sameEntry: boolean;
}

const pairCases: PairCase[] = [
  { description: 'both null', local: null, remote: null, sameContent: true, sameEntry: true },
  { description: 'null vs file', local: null, remote: fileA, sameContent: false, sameEntry: false },
  { description: 'file vs null', local: fileA, remote: null, sameContent: false, sameEntry: false },
  { description: 'null vs dir', local: null, remote: dir(), sameContent: false, sameEntry: false },
  { description: 'identical files', local: fileA, remote: file(HASH_A), sameContent: true, sameEntry: true },
  { description: 'files with different hashes', local: fileA, remote: fileB, sameContent: false, sameEntry: false },
  { description: 'files with same hash, different size', local: fileA, remote: file(HASH_A, { size: 11 }), sameContent: false, sameEntry: false },
  { description: 'files differing only in mode', local: fileA, remote: file(HASH_A, { mode: 0o600 }), sameContent: true, sameEntry: false },
  { description: 'files differing only in mtime', local: fileA, remote: file(HASH_A, { mtime: 1 }), sameContent: true, sameEntry: false },
  { description: 'dirs with the same mode', local: dir(0o755), remote: dir(0o755), sameContent: true, sameEntry: true },
  { description: 'dirs with different modes', local: dir(0o755), remote: dir(0o700), sameContent: true, sameEntry: false },
  { description: 'symlinks with the same target', local: link('t'), remote: link('t'), sameContent: true, sameEntry: true },
  { description: 'symlinks with different targets', local: link('t'), remote: link('u'), sameContent: false, sameEntry: false },
  { description: 'file vs dir', local: fileA, remote: dir(), sameContent: false, sameEntry: false },
  { description: 'dir vs symlink', local: dir(), remote: link('x'), sameContent: false, sameEntry: false },
  { description: 'symlink vs file', local: link('x'), remote: fileA, sameContent: false, sameEntry: false },
];

describe('hasSameContent', () => {
  it.each(pairCases)('$description → $sameContent', ({ local, remote, sameContent }) => {
    expect(hasSameContent(local, remote)).toBe(sameContent);
    expect(hasSameContent(remote, local)).toBe(sameContent);
  });
});

describe('isSameEntry', () => {
  it.each(pairCases)('$description → $sameEntry', ({ local, remote, sameEntry }) => {
    expect(isSameEntry(local, remote)).toBe(sameEntry);
    expect(isSameEntry(remote, local)).toBe(sameEntry);
  });
});

// ---------------------------------------------------------------------------------------------
// Server side

describe('isSameFingerprint', () => {
  const fp = { ino: 7, size: 3, mtimeMs: 1_700_000_000_123.4, ctimeMs: 1_700_000_000_200.5 };
  it('is true only for two fingerprints equal in every field', () => {
    expect(isSameFingerprint(fp, { ...fp })).toBe(true);
    for (const key of ['ino', 'size', 'mtimeMs', 'ctimeMs'] as const) expect(isSameFingerprint(fp, { ...fp, [key]: fp[key] + 1 }), key).toBe(false);
    expect(isSameFingerprint(null, fp)).toBe(false);
    expect(isSameFingerprint(fp, undefined)).toBe(false);
    expect(isSameFingerprint(null, null)).toBe(false);
  });
});

describe('decidePut', () => {
  // ancestor: the seq the pushing client last agreed on; local: what it pushes; remote: the
  // server's current version.
  it.each<{ description: string; ancestor: number | null; local: Entry; remote: Version | null; expected: string }>([
    { description: 'nothing at the path', ancestor: null, local: fileA, remote: null, expected: 'apply' },
    { description: 'nothing at the path, client had a base', ancestor: 3, local: fileA, remote: null, expected: 'apply' },
    { description: 'tombstone: an edit wins over a delete', ancestor: 3, local: fileA, remote: version(7, null), expected: 'apply' },
    { description: 'tombstone, client never had it', ancestor: null, local: fileA, remote: version(7, null), expected: 'apply' },
    { description: 'up to date, new content', ancestor: 5, local: fileB, remote: version(5, fileA), expected: 'apply' },
    { description: 'up to date, only mode changed', ancestor: 5, local: file(HASH_A, { mode: 0o600 }), remote: version(5, fileA), expected: 'apply' },
    { description: 'up to date, only mtime changed', ancestor: 5, local: file(HASH_A, { mtime: 5 }), remote: version(5, fileA), expected: 'apply' },
    { description: 'up to date, identical entry', ancestor: 5, local: file(HASH_A), remote: version(5, fileA), expected: 'same' },
    { description: 'up to date, file replaces dir', ancestor: 5, local: fileA, remote: version(5, dir()), expected: 'apply' },
    { description: 'up to date, dir mode change', ancestor: 5, local: dir(0o700), remote: version(5, dir(0o755)), expected: 'apply' },
    { description: 'up to date, identical symlink', ancestor: 5, local: link('t'), remote: version(5, link('t')), expected: 'same' },
    { description: 'stale base, identical content', ancestor: 4, local: file(HASH_A), remote: version(9, fileA), expected: 'same' },
    { description: 'stale base, same content, other metadata', ancestor: 4, local: file(HASH_A, { mtime: 1, mode: 0o600 }), remote: version(9, fileA), expected: 'same' },
    { description: 'stale base, different content', ancestor: 4, local: fileB, remote: version(9, fileA), expected: 'conflict' },
    { description: 'stale base, different symlink target', ancestor: 4, local: link('u'), remote: version(9, link('t')), expected: 'conflict' },
    { description: 'stale base, two dirs', ancestor: 4, local: dir(0o700), remote: version(9, dir(0o755)), expected: 'same' },
    { description: 'stale base, file against dir', ancestor: 4, local: fileA, remote: version(9, dir()), expected: 'conflict' },
    { description: 'stale base, dir against file', ancestor: 4, local: dir(), remote: version(9, fileA), expected: 'conflict' },
    { description: 'base newer than current (corrupt client)', ancestor: 12, local: fileB, remote: version(9, fileA), expected: 'conflict' },
    { description: 'first sync: identical file already there', ancestor: null, local: file(HASH_A), remote: version(2, fileA), expected: 'same' },
    { description: 'first sync: identical content, other mtime', ancestor: null, local: file(HASH_A, { mtime: 3 }), remote: version(2, fileA), expected: 'same' },
    { description: 'first sync: different file already there', ancestor: null, local: fileB, remote: version(2, fileA), expected: 'conflict' },
    { description: 'first sync: both made the same dir', ancestor: null, local: dir(), remote: version(2, dir()), expected: 'same' },
    { description: 'first sync: file against dir', ancestor: null, local: fileA, remote: version(2, dir()), expected: 'conflict' },
  ])('$description → $expected', ({ ancestor, local, remote, expected }) => {
    expect(decidePut(remote, ancestor, local)).toBe(expected);
  });
});

describe('decideDelete', () => {
  it.each<{ description: string; ancestor: number | null; remote: Version | null; expected: string }>([
    { description: 'nothing at the path', ancestor: 3, remote: null, expected: 'same' },
    { description: 'nothing at the path, no base', ancestor: null, remote: null, expected: 'same' },
    { description: 'already a tombstone', ancestor: 3, remote: version(8, null), expected: 'same' },
    { description: 'base is the current version', ancestor: 8, remote: version(8, fileA), expected: 'apply' },
    { description: 'base is the current dir', ancestor: 8, remote: version(8, dir()), expected: 'apply' },
    { description: 'stale base: an unseen edit wins', ancestor: 3, remote: version(8, fileB), expected: 'stale' },
    { description: 'no base against a live version', ancestor: null, remote: version(8, fileA), expected: 'stale' },
  ])('$description → $expected', ({ ancestor, remote, expected }) => {
    expect(decideDelete(remote, ancestor)).toBe(expected);
  });
});

describe('decideRename', () => {
  it.each<{
    description: string;
    ancestor: { base: number | null; toBase: number | null };
    remote: { from: Version | null; to: Version | null };
    expected: string;
  }>([
    { description: 'source gone', ancestor: { base: 3, toBase: null }, remote: { from: null, to: null }, expected: 'stale' },
    { description: 'source is a tombstone', ancestor: { base: 3, toBase: null }, remote: { from: version(6, null), to: null }, expected: 'stale' },
    { description: 'source moved on', ancestor: { base: 3, toBase: null }, remote: { from: version(6, fileA), to: null }, expected: 'stale' },
    { description: 'source unknown to client', ancestor: { base: null, toBase: null }, remote: { from: version(6, fileA), to: null }, expected: 'stale' },
    { description: 'target live with another seq', ancestor: { base: 3, toBase: 4 }, remote: { from: version(3, fileA), to: version(7, fileB) }, expected: 'stale' },
    { description: 'target live, client thought it free', ancestor: { base: 3, toBase: null }, remote: { from: version(3, fileA), to: version(7, fileB) }, expected: 'stale' },
    { description: 'target absent', ancestor: { base: 3, toBase: null }, remote: { from: version(3, fileA), to: null }, expected: 'apply' },
    { description: 'target a tombstone', ancestor: { base: 3, toBase: null }, remote: { from: version(3, fileA), to: version(9, null) }, expected: 'apply' },
    { description: 'target a tombstone, stale toBase', ancestor: { base: 3, toBase: 2 }, remote: { from: version(3, fileA), to: version(9, null) }, expected: 'apply' },
    { description: 'target matches toBase', ancestor: { base: 3, toBase: 7 }, remote: { from: version(3, fileA), to: version(7, fileB) }, expected: 'apply' },
    { description: 'directory rename to a free path', ancestor: { base: 3, toBase: null }, remote: { from: version(3, dir()), to: null }, expected: 'apply' },
  ])('$description → $expected', ({ ancestor, remote, expected }) => {
    expect(decideRename(remote.from, remote.to, ancestor.base, ancestor.toBase)).toBe(expected);
  });
});

// ---------------------------------------------------------------------------------------------
// Client side

describe('decidePush', () => {
  it.each<{ description: string; ancestor: BaseRecord | null; local: Entry | null; expected: PushOp | null }>([
    { description: 'nothing at all', ancestor: null, local: null, expected: null },
    { description: 'clean file', ancestor: base(5, fileA), local: file(HASH_A), expected: null },
    { description: 'clean dir', ancestor: base(5, dir()), local: dir(), expected: null },
    { description: 'clean symlink', ancestor: base(5, link('t'), null), local: link('t'), expected: null },
    { description: 'new file', ancestor: null, local: fileA, expected: { op: 'put', path: 'p', base: null, entry: fileA, upload: null } },
    { description: 'new dir', ancestor: null, local: dir(), expected: { op: 'put', path: 'p', base: null, entry: dir(), upload: null } },
    { description: 'deleted', ancestor: base(5, fileA), local: null, expected: { op: 'delete', path: 'p', base: 5 } },
    { description: 'deleted dir', ancestor: base(5, dir()), local: null, expected: { op: 'delete', path: 'p', base: 5 } },
    { description: 'modified', ancestor: base(5, fileA), local: fileB, expected: { op: 'put', path: 'p', base: 5, entry: fileB, upload: null } },
    {
      description: 'metadata only (mode)',
      ancestor: base(5, fileA),
      local: file(HASH_A, { mode: 0o600 }),
      expected: { op: 'put', path: 'p', base: 5, entry: file(HASH_A, { mode: 0o600 }), upload: null },
    },
    {
      description: 'metadata only (mtime)',
      ancestor: base(5, fileA),
      local: file(HASH_A, { mtime: 9 }),
      expected: { op: 'put', path: 'p', base: 5, entry: file(HASH_A, { mtime: 9 }), upload: null },
    },
    { description: 'dir mode changed', ancestor: base(5, dir(0o755)), local: dir(0o700), expected: { op: 'put', path: 'p', base: 5, entry: dir(0o700), upload: null } },
    { description: 'symlink retargeted', ancestor: base(5, link('t'), null), local: link('u'), expected: { op: 'put', path: 'p', base: 5, entry: link('u'), upload: null } },
    { description: 'file replaced by dir', ancestor: base(5, fileA), local: dir(), expected: { op: 'put', path: 'p', base: 5, entry: dir(), upload: null } },
  ])('$description', ({ ancestor, local, expected }) => {
    expect(decidePush('p', ancestor, local)).toEqual(expected);
  });
});

/** One pull case: the change from the feed (remote), the client's base at its path (ancestor), what is on disk there (local), and the same at the change's `from`. */
interface PullCase {
  description: string;
  ancestor: BaseRecord | null;
  local: Entry | null;
  remote: Change;
  fromAncestor?: BaseRecord | null;
  fromLocal?: Entry | null;
  expected: PullDecision;
}

describe('decidePull', () => {
  // remote: the change from the feed; ancestor: the client's base at the change's path;
  // local: what is on disk there; fromAncestor/fromLocal: the same at the change's `from`.
  it.each<PullCase>([
    { description: 'base is this very version', ancestor: base(7, fileA), local: fileA, remote: change('p', 7, fileB), expected: { action: 'skip' } },
    { description: 'base is later than the change', ancestor: base(9, fileA), local: fileC, remote: change('p', 7, fileB), expected: { action: 'skip' } },
    { description: 'local already equals the change (no base)', ancestor: null, local: file(HASH_B), remote: change('p', 7, fileB), expected: { action: 'record' } },
    { description: 'local already equals the change (old base)', ancestor: base(3, fileA), local: file(HASH_B), remote: change('p', 7, fileB), expected: { action: 'record' } },
    { description: 'local dir already equals the change', ancestor: null, local: dir(), remote: change('p', 7, dir()), expected: { action: 'record' } },
    { description: 'local symlink already equals the change', ancestor: null, local: link('t'), remote: change('p', 7, link('t')), expected: { action: 'record' } },
    { description: 'delete of a path gone locally too', ancestor: base(3, fileA), local: null, remote: change('p', 7, null), expected: { action: 'forget' } },
    { description: 'delete of a path never seen', ancestor: null, local: null, remote: change('p', 7, null), expected: { action: 'forget' } },
    { description: 'remote edit, local edit not pushed yet', ancestor: base(3, fileA), local: fileC, remote: change('p', 7, fileB), expected: { action: 'keep-local' } },
    { description: 'remote edit, local mode change not pushed yet', ancestor: base(3, fileA), local: file(HASH_A, { mode: 0o600 }), remote: change('p', 7, fileB), expected: { action: 'keep-local' } },
    { description: 'remote delete, local edit not pushed yet', ancestor: base(3, fileA), local: fileC, remote: change('p', 7, null), expected: { action: 'keep-local' } },
    { description: 'remote delete, local file never pushed', ancestor: null, local: fileC, remote: change('p', 7, null), expected: { action: 'keep-local' } },
    { description: 'first sync: different local file', ancestor: null, local: fileC, remote: change('p', 7, fileB), expected: { action: 'keep-local' } },
    { description: 'first sync: same content, other mtime', ancestor: null, local: file(HASH_B, { mtime: 1 }), remote: change('p', 7, fileB), expected: { action: 'keep-local' } },
    { description: 'remote delete, local clean', ancestor: base(3, fileA), local: file(HASH_A), remote: change('p', 7, null), expected: { action: 'delete' } },
    { description: 'remote delete, local clean dir', ancestor: base(3, dir()), local: dir(), remote: change('p', 7, null), expected: { action: 'delete' } },
    { description: 'new path', ancestor: null, local: null, remote: change('p', 7, fileB), expected: { action: 'fetch' } },
    { description: 'new dir', ancestor: null, local: null, remote: change('p', 7, dir()), expected: { action: 'fetch' } },
    { description: 'clean local replaced', ancestor: base(3, fileA), local: file(HASH_A), remote: change('p', 7, fileB), expected: { action: 'fetch' } },
    { description: 'clean local, remote metadata change', ancestor: base(3, fileA), local: file(HASH_A), remote: change('p', 7, file(HASH_A, { mode: 0o600 })), expected: { action: 'fetch' } },
    { description: 'clean file replaced by dir', ancestor: base(3, fileA), local: file(HASH_A), remote: change('p', 7, dir()), expected: { action: 'fetch' } },
    { description: 'local deleted, remote edited: the edit wins', ancestor: base(3, fileA), local: null, remote: change('p', 7, fileB), expected: { action: 'fetch' } },
    { description: 'dir mode change', ancestor: base(3, dir(0o755)), local: dir(0o755), remote: change('p', 7, dir(0o700)), expected: { action: 'fetch' } },
    { description: 'dir mode change over a local dir without base', ancestor: null, local: dir(0o755), remote: change('p', 7, dir(0o700)), expected: { action: 'fetch' } },
    {
      description: 'rename: from holds exactly the content and is clean',
      ancestor: null,
      local: null,
      remote: change('new', 7, fileA, 'old'),
      fromAncestor: base(3, fileA),
      fromLocal: file(HASH_A),
      expected: { action: 'rename', from: 'old' },
    },
    {
      description: 'rename of a clean dir',
      ancestor: null,
      local: null,
      remote: change('d2', 7, dir(), 'd1'),
      fromAncestor: base(3, dir()),
      fromLocal: dir(),
      expected: { action: 'rename', from: 'd1' },
    },
    {
      description: 'rename of a clean symlink',
      ancestor: null,
      local: null,
      remote: change('l2', 7, link('t'), 'l1'),
      fromAncestor: base(3, link('t'), null),
      fromLocal: link('t'),
      expected: { action: 'rename', from: 'l1' },
    },
    {
      description: 'rename, but from was edited locally: fetch',
      ancestor: null,
      local: null,
      remote: change('new', 7, fileA, 'old'),
      fromAncestor: base(3, fileA),
      fromLocal: fileC,
      expected: { action: 'fetch' },
    },
    {
      description: 'rename, from edited locally back to the same content with a new mtime: fetch',
      ancestor: null,
      local: null,
      remote: change('new', 7, fileA, 'old'),
      fromAncestor: base(3, fileA),
      fromLocal: file(HASH_A, { mtime: 99 }),
      expected: { action: 'fetch' },
    },
    {
      description: 'rename, from gone locally: fetch',
      ancestor: null,
      local: null,
      remote: change('new', 7, fileA, 'old'),
      fromAncestor: base(3, fileA),
      fromLocal: null,
      expected: { action: 'fetch' },
    },
    {
      description: 'rename, from never synced here: fetch',
      ancestor: null,
      local: null,
      remote: change('new', 7, fileA, 'old'),
      fromAncestor: null,
      fromLocal: fileA,
      expected: { action: 'fetch' },
    },
    {
      // Seed 626: a failed pull of an old rename retried after the old name was made again here
      // and pushed: moving it would take the newer version away from its name.
      description: 'rename retried after from got a newer version than the rename: fetch, from stays',
      ancestor: null,
      local: null,
      remote: change('d2', 7, dir(), 'd1'),
      fromAncestor: base(9, dir()),
      fromLocal: dir(),
      expected: { action: 'fetch' },
    },
    {
      description: 'rename, from holds another type: fetch',
      ancestor: null,
      local: null,
      remote: change('new', 7, fileA, 'old'),
      fromAncestor: base(3, dir()),
      fromLocal: dir(),
      expected: { action: 'fetch' },
    },
    {
      description: 'rename onto a clean local file: fetch replaces it',
      ancestor: base(2, fileC),
      local: file(HASH_C),
      remote: change('new', 7, fileA, 'old'),
      fromAncestor: base(3, fileA),
      fromLocal: fileA,
      expected: { action: 'fetch' },
    },
    {
      description: 'rename onto a dirty local file: keep it',
      ancestor: base(2, fileC),
      local: fileB,
      remote: change('new', 7, fileA, 'old'),
      fromAncestor: base(3, fileA),
      fromLocal: fileA,
      expected: { action: 'keep-local' },
    },
  ])('$description → $expected.action', ({ ancestor, local, remote, fromAncestor, fromLocal, expected }) => {
    expect(decidePull(remote, ancestor, local, fromAncestor ?? null, fromLocal ?? null)).toEqual(expected);
  });
});

describe('decidePull of one of our own versions (isOwn)', () => {
  // The client pushed `remote` itself and never got the answer (a kill or a cut in flight), so
  // it has no base at the version: whatever its disk holds now came after it.
  it.each<PullCase>([
    { description: 'a directory we made and then renamed away (seed 142): not fetched back', ancestor: null, local: null, remote: change('d', 7, dir()), expected: { action: 'adopt' } },
    { description: 'a file we wrote and then deleted: not fetched back', ancestor: null, local: null, remote: change('f', 7, fileA), expected: { action: 'adopt' } },
    { description: 'a file we wrote, edited again since (seed 659): pushed over it, no conflict with ourselves', ancestor: null, local: fileB, remote: change('f', 7, fileA), expected: { action: 'adopt' } },
    { description: 'an edit we pushed, then reverted on disk to the old base: not fetched back', ancestor: base(3, fileA), local: file(HASH_A), remote: change('f', 7, fileB), expected: { action: 'adopt' } },
    { description: 'a directory mode we pushed, changed again since: not fetched back', ancestor: null, local: dir(0o700), remote: change('d', 7, dir(0o755)), expected: { action: 'adopt' } },
    { description: 'a delete we pushed, the path made again since: not deleted', ancestor: base(3, fileA), local: file(HASH_A), remote: change('f', 7, null), expected: { action: 'adopt' } },
    { description: 'a delete we pushed, a new file there since: kept and pushed', ancestor: base(3, fileA), local: fileC, remote: change('f', 7, null), expected: { action: 'adopt' } },
    {
      description: 'a rename we sent (the answer lost), renamed back since: not moved again',
      ancestor: null,
      local: null,
      remote: change('new', 7, fileA, 'old'),
      fromAncestor: base(3, fileA),
      fromLocal: file(HASH_A),
      expected: { action: 'adopt' },
    },
    { description: 'the disk still holds it: recorded as any version', ancestor: null, local: fileA, remote: change('f', 7, fileA), expected: { action: 'record' } },
    { description: 'a delete we pushed, still gone: forgotten', ancestor: base(3, fileA), local: null, remote: change('f', 7, null), expected: { action: 'forget' } },
    { description: 'already based on it: skipped', ancestor: base(7, fileA), local: fileB, remote: change('f', 7, fileA), expected: { action: 'skip' } },
  ])('$description → $expected.action', ({ ancestor, local, remote, fromAncestor, fromLocal, expected }) => {
    expect(decidePull(remote, ancestor, local, fromAncestor ?? null, fromLocal ?? null, true)).toEqual(expected);
  });

  it('an own version never changes the disk: every decision is skip, record, forget or adopt', () => {
    fc.assert(
      fc.property(changeArb, maybeBaseArb, maybeEntryArb, (remote, before, local) => {
        expect(['skip', 'record', 'forget', 'adopt']).toContain(decidePull(remote, before, local, null, null, true).action);
      }),
    );
  });
});

describe('isOwnVersion', () => {
  const own = { node: 'desk', since: 10 };
  it.each<{ description: string; remote: Change; own: { node: string; since: number } | null; expected: boolean }>([
    { description: 'ours, above where our versions begin', remote: change('f', 11, fileA), own, expected: true },
    { description: 'ours, at or below it (an older state of this node, or before a reset)', remote: change('f', 10, fileA), own, expected: false },
    { description: "another node's", remote: { ...change('f', 11, fileA), origin: 'laptop' }, own, expected: false },
    { description: 'a state that never pushed has no own versions', remote: change('f', 11, fileA), own: null, expected: false },
    // Seed 870: the moved child held an edit from elsewhere; taking it as ours pushed our older copy over it.
    { description: "a child moved by our directory rename (its content is the server's)", remote: change('e/x', 11, fileA, 'd/x'), own, expected: false },
  ])('$description → $expected', ({ remote, own: mine, expected }) => {
    expect(isOwnVersion(remote, mine)).toBe(expected);
  });
});

// ---------------------------------------------------------------------------------------------
// Ordering

const putDir = (path: string): PushOp => ({ op: 'put', path, base: null, entry: dir(), upload: null });
const putFile = (path: string): PushOp => ({ op: 'put', path, base: null, entry: fileA, upload: 'u' });
const putLink = (path: string): PushOp => ({ op: 'put', path, base: null, entry: link('t'), upload: null });
const del = (path: string): PushOp => ({ op: 'delete', path, base: 1 });
const mv = (from: string, to: string): PushOp => ({ op: 'rename', from, to, base: 1, toBase: null, entry: fileA });
const label = (op: PushOp): string =>
  op.op === 'rename' ? `mv ${op.from}>${op.to}` : op.op === 'delete' ? `rm ${op.path}` : `${op.entry.type} ${op.path}`;

describe('orderPushOps', () => {
  it.each<{ description: string; local: PushOp[]; expected: string[] }>([
    { description: 'empty batch', local: [], expected: [] },
    { description: 'a single op', local: [putFile('a')], expected: ['file a'] },
    {
      description: 'dirs parents first',
      local: [putDir('a/b/c'), putDir('a'), putDir('a/b')],
      expected: ['dir a', 'dir a/b', 'dir a/b/c'],
    },
    {
      description: 'deletes children first',
      local: [del('a'), del('a/b'), del('a/b/c')],
      expected: ['rm a/b/c', 'rm a/b', 'rm a'],
    },
    {
      description: 'groups: dirs, renames, files and links, deletes',
      local: [del('x'), putFile('a/f'), mv('m', 'n'), putLink('a/l'), putDir('a'), del('y/z')],
      expected: ['dir a', 'mv m>n', 'file a/f', 'symlink a/l', 'rm y/z', 'rm x'],
    },
    {
      description: 'files before their dir in the input still come after it',
      local: [putFile('d/e/f'), putDir('d/e'), putDir('d')],
      expected: ['dir d', 'dir d/e', 'file d/e/f'],
    },
    {
      description: 'stable within groups: files keep input order regardless of depth',
      local: [putFile('z/y/x'), putFile('a'), putLink('m/n'), putFile('b')],
      expected: ['file z/y/x', 'file a', 'symlink m/n', 'file b'],
    },
    {
      description: 'stable within groups: renames keep input order',
      local: [mv('c', 'd'), mv('a/b/c', 'q'), mv('a', 'b')],
      expected: ['mv c>d', 'mv a/b/c>q', 'mv a>b'],
    },
    {
      description: 'stable among dirs of equal depth and deletes of equal depth',
      local: [putDir('b'), del('q/2'), putDir('a'), del('q/1'), putDir('c')],
      expected: ['dir b', 'dir a', 'dir c', 'rm q/2', 'rm q/1'],
    },
  ])('$description', ({ local, expected }) => {
    const input = [...local];
    expect(orderPushOps(local).map(label)).toEqual(expected);
    expect(local).toEqual(input); // the input is not reordered in place
  });
});

describe('orderPushOps: a directory replaced by a file or link', () => {
  // The server replaces a directory by a file or link only when it is empty (src/fs/apply.ts,
  // clearForType: "its children were deleted first"), so the deletes of its children must be
  // sent before the put that replaces it, children first.
  const putFileOver = (path: string): PushOp => ({ op: 'put', path, base: 4, entry: fileA, upload: 'u' });
  const putLinkOver = (path: string): PushOp => ({ op: 'put', path, base: 4, entry: link('t'), upload: null });
  it.each<{ description: string; local: PushOp[]; expected: string[] }>([
    {
      description: 'file replaces a dir: its children are deleted before the put',
      local: [putFileOver('a'), del('a/x'), del('a/x/y'), putFile('b'), del('z')],
      expected: ['rm a/x/y', 'rm a/x', 'file a', 'file b', 'rm z'],
    },
    {
      description: 'link replaces a nested dir: its children are deleted before the put',
      local: [putLinkOver('d/e'), del('d/e/f')],
      expected: ['rm d/e/f', 'symlink d/e'],
    },
    {
      description: 'a sibling with a common prefix is not a child',
      local: [putFileOver('a'), del('ab/c')],
      expected: ['file a', 'rm ab/c'],
    },
    {
      description: 'a file renamed onto a dir: its children are deleted before the rename (seed 3122)',
      local: [mv('f', 'a'), del('a/x'), del('z')],
      expected: ['rm a/x', 'mv f>a', 'rm z'],
    },
    {
      description: 'a dir created in the same batch still comes first',
      local: [putFileOver('a'), del('a/x'), putDir('n')],
      expected: ['dir n', 'rm a/x', 'file a'],
    },
    {
      description: 'a delete under a rename source is no delete under a replaced dir',
      local: [mv('a', 'b'), del('a/x')],
      expected: ['mv a>b', 'rm a/x'],
    },
  ])('$description', ({ local, expected }) => {
    expect(orderPushOps(local).map(label)).toEqual(expected);
  });
});

describe('isDeleteUnderReplaced', () => {
  const putFileOver = (path: string): PushOp => ({ op: 'put', path, base: 4, entry: fileA, upload: '' });
  it.each<{ description: string; batch: PushOp[]; op: PushOp; expected: boolean }>([
    { description: 'a child of a dir a file replaces', batch: [putFileOver('a')], op: del('a/x'), expected: true },
    { description: 'a grandchild of a dir a link replaces', batch: [putLink('a')], op: del('a/x/y'), expected: true },
    { description: 'a child of a dir a rename replaces', batch: [mv('f', 'a')], op: del('a/x'), expected: true },
    { description: 'a child of a dir put (a dir stays a dir)', batch: [putDir('a')], op: del('a/x'), expected: false },
    { description: 'a child of a rename source', batch: [mv('a', 'b')], op: del('a/x'), expected: false },
    { description: 'the replaced path itself', batch: [putFileOver('a')], op: del('a'), expected: false },
    { description: 'a sibling with a common prefix', batch: [putFileOver('a')], op: del('ab/x'), expected: false },
    { description: 'a put, not a delete', batch: [putFileOver('a')], op: putFile('a/x'), expected: false },
    { description: 'nothing replaced in the batch', batch: [], op: del('a/x'), expected: false },
  ])('$description', ({ batch, op, expected }) => {
    expect(isDeleteUnderReplaced([...batch, op])(op)).toBe(expected);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const entryArb: fc.Arbitrary<Entry> = fc.oneof(
  fc.record({
    type: fc.constant('file' as const),
    size: fc.constantFrom(0, 10),
    mtime: fc.constantFrom(1000, 2000),
    mode: fc.constantFrom(0o644, 0o600),
    hash: fc.constantFrom(HASH_A, HASH_B),
  }),
  fc.record({ type: fc.constant('dir' as const), mode: fc.constantFrom(0o755, 0o700) }),
  fc.record({ type: fc.constant('symlink' as const), target: fc.constantFrom('t', 'u') }),
);
const maybeEntryArb = fc.option(entryArb, { nil: null });
const seqArb = fc.integer({ min: 1, max: 8 });
const statArb = fc.option(
  fc.record({ ino: fc.nat(), size: fc.nat(), mtimeMs: fc.nat(), ctimeMs: fc.nat() }),
  { nil: null },
);
const baseArb: fc.Arbitrary<BaseRecord> = fc.record({ seq: seqArb, entry: entryArb, stat: statArb });
const maybeBaseArb = fc.option(baseArb, { nil: null });
const versionArb: fc.Arbitrary<Version> = fc.record({ seq: seqArb, entry: maybeEntryArb, origin: fc.constantFrom('desk', 'laptop') });
const changeArb: fc.Arbitrary<Change> = fc.record({
  path: fc.constant('p'),
  seq: seqArb,
  entry: maybeEntryArb,
  origin: fc.constantFrom('desk', 'laptop'),
});

describe('reconcile properties', () => {
  it('decidePull of a change equal to local with no base → record', () => {
    fc.assert(
      fc.property(seqArb, entryArb, (seq, entry) => {
        expect(decidePull(change('p', seq, entry), null, { ...entry })).toEqual({ action: 'record' });
      }),
    );
  });

  it('decidePush(p, {seq, entry: e, stat}, e) is null for any entry e', () => {
    fc.assert(
      fc.property(baseArb, (record) => {
        expect(decidePush('p', record, { ...record.entry })).toBeNull();
      }),
    );
  });

  it("decidePut(current, current.seq, current.entry) is 'same'", () => {
    fc.assert(
      fc.property(seqArb, entryArb, (seq, entry) => {
        expect(decidePut(version(seq, entry), seq, { ...entry })).toBe('same');
      }),
    );
  });

  it('a second reconcile after the server accepted the push finds nothing to do', () => {
    fc.assert(
      fc.property(maybeBaseArb, maybeEntryArb, seqArb, (before, local, newSeq) => {
        const op = decidePush('p', before, local);
        const after: BaseRecord | null =
          op === null ? before : op.op === 'delete' ? null : { seq: newSeq, entry: op.entry, stat: null };
        if (op !== null && op.op === 'put') expect(op.entry).toEqual(local);
        expect(decidePush('p', after, local)).toBeNull();
      }),
    );
  });

  it('a second pull after applying a pull is skipped and leaves nothing to push', () => {
    fc.assert(
      fc.property(changeArb, maybeBaseArb, maybeEntryArb, (remote, before, local) => {
        const decision = decidePull(remote, before, local);
        let after: BaseRecord | null = before;
        let disk: Entry | null = local;
        switch (decision.action) {
          case 'record':
          case 'fetch':
            after = { seq: remote.seq, entry: remote.entry!, stat: null };
            disk = remote.entry;
            break;
          case 'delete':
          case 'forget':
            after = null;
            disk = null;
            break;
          default:
            return; // skip, keep-local, rename: nothing was applied
        }
        if (after !== null) expect(decidePull(remote, after, disk).action).toBe('skip');
        else expect(decidePull(remote, after, disk).action).toBe('forget');
        expect(decidePush('p', after, disk)).toBeNull();
      }),
    );
  });

  it('a pull never deletes or overwrites a local edit that was not pushed (except a dir mode)', () => {
    fc.assert(
      fc.property(changeArb, maybeBaseArb, entryArb, (remote, before, local) => {
        const isDirty = before === null || !isSameEntry(before.entry, local);
        fc.pre(isDirty);
        const { action } = decidePull(remote, before, local);
        expect(action).not.toBe('delete');
        if (action === 'fetch') {
          expect(local.type).toBe('dir');
          expect(remote.entry?.type).toBe('dir');
        }
      }),
    );
  });

  it('the server overwrites a live version only for a client that saw it, and never conflicts on identical content', () => {
    fc.assert(
      fc.property(versionArb, fc.option(seqArb, { nil: null }), entryArb, (current, ancestor, pushed) => {
        const decision = decidePut(current, ancestor, pushed);
        if (current.entry !== null && decision === 'apply') expect(ancestor).toBe(current.seq);
        if (hasSameContent(current.entry, pushed)) expect(decision).not.toBe('conflict');
        if (current.entry === null) expect(decision).toBe('apply');
      }),
    );
  });

  it('a delete removes only the version the client saw', () => {
    fc.assert(
      fc.property(versionArb, fc.option(seqArb, { nil: null }), (current, ancestor) => {
        const decision = decideDelete(current, ancestor);
        if (decision === 'apply') {
          expect(current.entry).not.toBeNull();
          expect(ancestor).toBe(current.seq);
        }
      }),
    );
  });

  it('orderPushOps is a permutation and idempotent', () => {
    const opArb: fc.Arbitrary<PushOp> = fc.oneof(
      fc.constantFrom('a', 'a/b', 'a/b/c', 'x', 'x/y').map(putDir),
      fc.constantFrom('a/f', 'g', 'x/y/z').map(putFile),
      fc.constantFrom('l', 'a/l').map(putLink),
      fc.constantFrom('d', 'd/e', 'd/e/f').map(del),
      fc.constantFrom(['m', 'n'] as const, ['a/m', 'q'] as const).map(([from, to]) => mv(from, to)),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 12 }), (ops) => {
        const ordered = orderPushOps(ops);
        expect([...ordered].map(label).sort()).toEqual([...ops].map(label).sort());
        expect(orderPushOps(ordered)).toEqual(ordered);
      }),
    );
  });
});

/**
 * src/fs/place.ts (placePulledFile, placePulledSymlink) and src/fs/unplace.ts (removePulledPath) over the in-memory
 * file system, step by step: a `pause()` wherever the daemon awaits, so a racing write can land
 * between any two of its disk calls. Pulls never destroy local bytes the decision did not see:
 * move aside, compare, put a changed local file back with link() (or keep a conflict copy), place
 * with link(tmp, path), which fails with EEXIST if a new file took the path meanwhile.
 */
import type { Entry, FileEntry } from '../../src/core/types.js';
import type { MoveResult, PlaceExpectation, PlaceResult } from '../../src/fs/place.js';
import type { UnplaceExpectation, UnplaceResult } from '../../src/fs/unplace.js';
import { isSameEntry } from '../../src/core/reconcile.js';
import { fingerprintOf, type MemFs } from './fs.js';
import { TMP, checkParents, hashOf, newTempName, removeEmptyDir } from './apply.js';
import { type Proc, pause } from './scheduler.js';

type Expectation = PlaceExpectation;

export interface PlaceHooks {
  conflictName: (p: string) => string;
  /** Between the decision's check and the replace (the race window of issue 10). */
  beforeReplace?: () => void;
}

function code(err: unknown): string | undefined {
  return (err as { code?: string }).code;
}

/** entryOf / movedEntry: the entry at `p` (a link's target; a file hashed unless its fingerprint says it is `expected`). */
function entryOf(fs: MemFs, p: string, expected: Expectation): Entry | null {
  const st = fs.lstat(p);
  if (st === null) return null;
  if (st.kind === 'dir') return { type: 'dir', mode: st.mode };
  if (st.kind === 'symlink') return { type: 'symlink', target: fs.readlink(p) };
  const known = expected.entry?.type === 'file' ? expected.entry : null;
  if (known !== null && expected.stat !== null && expected.stat.ino === st.ino && expected.stat.size === st.size && expected.stat.mtimeMs === st.mtime) {
    return { type: 'file', size: st.size, mtime: st.mtime, mode: st.mode, hash: known.hash };
  }
  return { type: 'file', size: st.size, mtime: st.mtime, mode: st.mode, hash: hashOf(fs.readFile(p)) };
}

function tryUnlink(fs: MemFs, p: string): void {
  if (fs.lstat(p) !== null) fs.unlink(p);
}

/** A fresh name under `.systemsync/tmp` (tempFilePath). */
function asidePath(fs: MemFs, suffix = 'aside'): string {
  fs.mkdirp(TMP, 0o700);
  return `${TMP}/${newTempName(fs, suffix)}`;
}

/** moveWithoutReplacing: link() for a file or link, rename() for a directory (fails on anything with content). */
function moveWithoutReplacing(fs: MemFs, from: string, to: string): void {
  if (fs.lstat(from)?.kind === 'dir') {
    fs.rename(from, to);
    return;
  }
  fs.link(from, to);
  tryUnlink(fs, from);
}

const NOTE_SUFFIX = '.note';

interface AsideNote {
  path: string;
  expected: Expectation | null;
  linkedIno: number | null;
}

/** moveAside: the note first, then rename `p` aside (atomic); the aside's path, or null when nothing was there. */
function* moveAside(fs: MemFs, p: string, note: Omit<AsideNote, 'path'>): Proc<string | null> {
  const aside = asidePath(fs);
  yield* pause(); // tempFilePath, checkSource
  fs.writeFile(aside + NOTE_SUFFIX, JSON.stringify({ path: p, ...note }), 0o600);
  try {
    fs.rename(p, aside);
  } catch (err) {
    tryUnlink(fs, aside + NOTE_SUFFIX);
    if (code(err) === 'ENOENT') return null;
    throw err;
  }
  return aside;
}

/** dropAside: the aside and its note go. */
function dropAside(fs: MemFs, aside: string): void {
  tryUnlink(fs, aside);
  tryUnlink(fs, aside + NOTE_SUFFIX);
}

/** putBack: a local version moved aside goes back to `p`, or to a conflict copy when `p` was taken; the copy's name or null. */
function* putBack(fs: MemFs, aside: string, p: string, hooks: Pick<PlaceHooks, 'conflictName'>): Proc<string | null> {
  try {
    moveWithoutReplacing(fs, aside, p);
    tryUnlink(fs, aside + NOTE_SUFFIX);
    return null;
  } catch (err) {
    const copy = hooks.conflictName(p);
    yield* pause(); // checkPath(copy)
    moveWithoutReplacing(fs, aside, copy);
    tryUnlink(fs, aside + NOTE_SUFFIX);
    const c = code(err);
    if (c !== 'EEXIST' && c !== 'ENOTEMPTY' && c !== 'ENOTDIR') throw err;
    return copy;
  }
}

type NotPlaced = Extract<PlaceResult, { placed: false }>;

/** swapIn: the temp name `tmp` becomes `p`, unless `p` no longer holds what `expected` describes; null when placed. */
function* swapIn(fs: MemFs, tmp: string, p: string, expected: Expectation, hooks: PlaceHooks): Proc<NotPlaced | null> {
  hooks.beforeReplace?.();
  yield* pause();
  let aside: string | null = null;
  const now = fs.lstat(p);
  if (now !== null) {
    if (expected.entry === null) return { placed: false, reason: 'appeared' };
    if (now.kind === 'dir') return { placed: false, reason: 'changed', copy: null };
    aside = yield* moveAside(fs, p, { expected, linkedIno: null });
    if (aside === null) return { placed: false, reason: 'changed', copy: null };
    yield* pause(); // recheckPath, afterAside, hashing
    const moved = entryOf(fs, aside, expected);
    if (!isSameEntry(moved, expected.entry)) return { placed: false, reason: 'changed', copy: yield* putBack(fs, aside, p, hooks) };
  } else if (expected.entry !== null) {
    return { placed: false, reason: 'changed', copy: null };
  }
  try {
    fs.link(tmp, p);
  } catch (err) {
    if (code(err) !== 'EEXIST') throw err;
    if (aside !== null) dropAside(fs, aside);
    return { placed: false, reason: 'appeared' };
  }
  yield* pause(); // recheckPath
  if (aside !== null) dropAside(fs, aside);
  return null;
}

/** placePulledFile: the temp file `tmp` becomes `p`, unless `p` no longer holds what `expected` describes. */
export function* placePulledFile(fs: MemFs, tmp: string, p: string, entry: FileEntry, expected: Expectation, hooks: PlaceHooks): Proc<PlaceResult> {
  try {
    fs.chmod(tmp, entry.mode); // stampFile
    fs.utimes(tmp, entry.mtime);
    yield* pause();
    const tmpIno = fs.lstat(tmp)!.ino;
    checkParents(fs, p, true); // checkPath(createParents)
    yield* pause();
    const notPlaced = yield* swapIn(fs, tmp, p, expected, hooks);
    if (notPlaced !== null) return notPlaced;
    tryUnlink(fs, tmp);
    const st = fs.lstat(p);
    const isAsPlaced = st !== null && st.kind === 'file' && st.ino === tmpIno && st.size === entry.size && st.mtime === entry.mtime && st.mode === entry.mode;
    return { placed: true, stat: isAsPlaced ? fingerprintOf(st) : null };
  } finally {
    tryUnlink(fs, tmp);
  }
}

/** placePulledSymlink: a link made under a temp name becomes `p` by the same steps, unless `p` no longer holds what `expected` describes. */
export function* placePulledSymlink(fs: MemFs, p: string, target: string, expected: Expectation, hooks: PlaceHooks): Proc<PlaceResult> {
  checkParents(fs, p, true); // checkPath(createParents)
  const tmp = asidePath(fs, 'link');
  yield* pause(); // tempFilePath, checkSource
  try {
    fs.symlink(target, tmp);
    return (yield* swapIn(fs, tmp, p, expected, hooks)) ?? { placed: true, stat: null };
  } finally {
    tryUnlink(fs, tmp);
  }
}

/** removePulledPath: remove `p` for a pulled delete, unless it is no longer what `expected` describes. */
export function* removePulledPath(fs: MemFs, p: string, expected: UnplaceExpectation, hooks: PlaceHooks): Proc<UnplaceResult> {
  hooks.beforeReplace?.();
  yield* pause(); // checkPath
  checkParents(fs, p, false);
  const st = fs.lstat(p);
  if (st === null) return { removed: true };
  if (st.kind === 'dir') {
    yield* pause();
    return removeEmptyDir(fs, p) ? { removed: true } : { removed: false, copy: null };
  }
  const aside = yield* moveAside(fs, p, { expected, linkedIno: null });
  if (aside === null) return { removed: true };
  yield* pause(); // hashing what moved
  const moved = entryOf(fs, aside, expected);
  if (isSameEntry(moved, expected.entry)) {
    dropAside(fs, aside);
    return { removed: true };
  }
  return { removed: false, copy: yield* putBack(fs, aside, p, hooks) };
}

/** movePulledPath: what is at `from` takes the name `to` (found empty), never replacing what appeared there since. */
export function* movePulledPath(fs: MemFs, from: string, to: string, hooks: PlaceHooks): Proc<MoveResult> {
  hooks.beforeReplace?.();
  yield* pause(); // checkPath(from), checkPath(to)
  checkParents(fs, from, false);
  checkParents(fs, to, true);
  const st = fs.lstat(from);
  if (st === null) return { moved: false, reason: 'gone' };
  const refused = (err: unknown): MoveResult => {
    const c = code(err);
    if (c === 'ENOENT') return { moved: false, reason: 'gone' };
    if (c === 'EEXIST' || c === 'ENOTEMPTY' || c === 'ENOTDIR' || c === 'EISDIR') return { moved: false, reason: 'appeared' };
    throw err;
  };
  if (st.kind === 'dir') {
    try {
      fs.rename(from, to);
    } catch (err) {
      return refused(err);
    }
    yield* pause(); // recheckPath
    return { moved: true, kept: null };
  }
  try {
    fs.link(from, to);
  } catch (err) {
    return refused(err);
  }
  yield* pause(); // recheckPath
  const placed = fs.lstat(to)?.ino;
  const aside = yield* moveAside(fs, from, { expected: null, linkedIno: placed ?? null });
  if (aside === null) return { moved: true, kept: null };
  if (fs.lstat(aside)!.ino === placed) {
    dropAside(fs, aside);
    return { moved: true, kept: null };
  }
  return { moved: true, kept: (yield* putBack(fs, aside, from, hooks)) ?? from };
}

/** recoverAsides: at start-up, a local version a kill left moved aside goes back (or to a conflict copy), unless it is what the pull decided on. */
export function* recoverAsides(fs: MemFs, conflictName: (p: string) => string): Proc<string[]> {
  const placed: string[] = [];
  for (const aside of fs.children(TMP)) {
    if (!aside.endsWith('.aside')) continue;
    const st = fs.lstat(aside);
    if (st === null) continue;
    let note: AsideNote | null = null;
    try {
      note = JSON.parse(fs.readFile(aside + NOTE_SUFFIX)) as AsideNote;
    } catch {
      // no note
    }
    yield* pause(); // checkSource, hashing
    if (note !== null && st.kind !== 'dir') {
      const isLinked = note.linkedIno !== null && note.linkedIno === st.ino;
      const isDecided = note.expected?.entry != null && isSameEntry(entryOf(fs, aside, note.expected), note.expected.entry);
      if (isLinked || isDecided) {
        dropAside(fs, aside);
        continue;
      }
    }
    let to = note?.path ?? 'recovered';
    try {
      checkParents(fs, to, true); // checkPath(createParents)
    } catch {
      to = 'recovered';
    }
    placed.push((yield* putBack(fs, aside, to, { conflictName })) ?? to);
  }
  return placed;
}

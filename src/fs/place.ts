/**
 * Placing a pulled file or link without ever destroying local bytes the pull did not decide on.
 *
 * Node has no rename-if-unchanged. A plain "check, then rename over" leaves a window in which a
 * local write lands between the check and the replace, and is lost. This closes it:
 * 1. the local file (if any) is renamed aside into `.systemsync/tmp` (atomic: whatever is at the
 *    path at that instant, with any writer's open descriptor, moves as a whole);
 * 2. what was moved is compared with what the pull decided to replace; if it differs, it is put
 *    back with link() (or, if something new took the path meanwhile, kept as a conflict copy),
 *    and nothing is placed;
 * 3. the pulled file (or a link made under a temp name) is placed with link(tmp, path), which
 *    fails with EEXIST if a new file appeared at the path meanwhile: then nothing is overwritten;
 * 4. the temp names are unlinked.
 * What the pull replaces may be nothing, a file or a link; a directory is removed by the caller
 * first (rmdir, which fails if anything came into it), and the path is then expected empty.
 */
import fs from 'node:fs';
import type { Entry, FileEntry, StatFingerprint } from '../core/types.js';
import { isSameEntry } from '../core/reconcile.js';
import { permissionBits } from '../core/modes.js';
import { fingerprint, hashFile, hashSmallFile, SMALL_FILE } from './scan.js';
import { mtimeOf } from './stat.js';
import { newTempName, stampFile, tmpDirOf } from './apply.js';
import { tempFilePath } from './reserved.js';
import { checkPath, checkSource, recheckPath, renameChecked, type CheckedPath } from './safefs.js';

export interface PlaceExpectation {
  /** What the pull decided to replace: null when the path was empty. */
  entry: Entry | null;
  /** Its fingerprint when it was read (content taken as unchanged if ino, size and mtime match). */
  stat: StatFingerprint | null;
}

export type PlaceResult =
  /** Placed; `stat` is the fingerprint of the placed file, or null when it could not be confirmed. */
  | { placed: true; stat: StatFingerprint | null }
  /** Not placed: the local file changed since the decision (it was left, or put back, at the path;
   * `copy` names where it was kept when the path was taken meanwhile). */
  | { placed: false; reason: 'changed'; copy: string | null }
  /** Not placed: something new appeared at the path; it was not touched. */
  | { placed: false; reason: 'appeared' };

export interface PlaceOptions {
  /** Name for a conflict copy of a local version that lost its path (folder-relative). */
  conflictName: (rel: string) => string;
  /** Test seam: runs between the decision's check and the replace (a race is injected here). */
  beforeReplace?: () => void | Promise<void>;
  /** Test seam: runs right after the local file was moved aside, before it is compared. */
  afterAside?: () => void | Promise<void>;
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

function tryUnlink(abs: string): void {
  try {
    fs.unlinkSync(abs);
  } catch {
    // already gone
  }
}

/** The entry at `abs`: a link's target, or a regular file's (hashed unless its fingerprint says it is `expected`). */
export async function entryOf(abs: string, expected: PlaceExpectation): Promise<Entry | null> {
  const st = fs.lstatSync(abs, { throwIfNoEntry: false });
  if (st === undefined) return null;
  if (st.isSymbolicLink()) return { type: 'symlink', target: fs.readlinkSync(abs) };
  if (!st.isFile()) return st.isDirectory() ? { type: 'dir', mode: permissionBits(st.mode) } : { type: 'symlink', target: '' };
  const mode = permissionBits(st.mode);
  const known = expected.entry?.type === 'file' ? expected.entry : null;
  // A rename moves ctime; ino, size and mtime still identify unchanged content.
  if (known !== null && expected.stat !== null && expected.stat.ino === st.ino && expected.stat.size === st.size && expected.stat.mtimeMs === st.mtimeMs) {
    return { type: 'file', size: st.size, mtime: mtimeOf(st), mode, hash: known.hash };
  }
  const hashed = st.size <= SMALL_FILE ? hashSmallFile(abs) : await hashFile(abs);
  const after = fs.lstatSync(abs);
  if (hashed.size !== after.size || after.mtimeMs !== st.mtimeMs) return { type: 'file', size: -1, mtime: 0, mode, hash: '' }; // still being written
  return { type: 'file', size: hashed.size, mtime: mtimeOf(after), mode, hash: hashed.hash };
}

/** Give the name `destAbs` to what is at `fromAbs`, never replacing anything there that holds content. */
function moveWithoutReplacing(fromAbs: string, destAbs: string): void {
  if (fs.lstatSync(fromAbs).isDirectory()) {
    // A file turned into a directory just before the move: rename fails on a file, a link or a
    // directory with entries (an empty directory there holds nothing to lose).
    fs.renameSync(fromAbs, destAbs);
    return;
  }
  fs.linkSync(fromAbs, destAbs); // EEXIST rather than replace
  tryUnlink(fromAbs);
}

/** What start-up needs to settle a local version a kill left moved aside (`recoverAsides`). */
interface AsideNote {
  /** The folder-relative path it was moved from. */
  path: string;
  /** What the pull decided to replace or remove there: an aside that is still that is dropped. */
  expected: PlaceExpectation | null;
  /** The inode a pulled rename gave its new name: an aside that is that inode is dropped. */
  linkedIno: number | null;
}

const ASIDE_SUFFIX = 'aside';
const NOTE_SUFFIX = '.note';

/**
 * Rename what is at `at` aside into the temp dir, its note written first: a kill at any later
 * step leaves nothing there that start-up cannot settle (`recoverAsides`; the temp dir is cleaned
 * after it). Returns the aside's absolute path, or null when nothing was at `at` (ENOENT). Ended
 * by `dropAside` or `putBack`.
 */
export async function moveAside(root: string, at: CheckedPath, note: Omit<AsideNote, 'path'>): Promise<string | null> {
  const aside = await checkSource(root, await tempFilePath(root, newTempName(ASIDE_SUFFIX)), { sameOperationAs: at });
  const full: AsideNote = { path: at.rel, ...note };
  fs.writeFileSync(aside.abs + NOTE_SUFFIX, JSON.stringify(full), { mode: 0o600, flag: 'wx' });
  try {
    fs.renameSync(at.abs, aside.abs);
  } catch (err) {
    tryUnlink(aside.abs + NOTE_SUFFIX);
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
  return aside.abs;
}

/** An aside that is what the pull decided on goes, with its note. */
export function dropAside(asideAbs: string): void {
  tryUnlink(asideAbs);
  tryUnlink(asideAbs + NOTE_SUFFIX);
}

/**
 * Put a local version that was moved aside (`asideAbs`, by `moveAside`) back at `to`, or, when
 * `to` was taken meanwhile, keep it under a conflict-copy name. Returns that name, or null when it
 * is back. Never leaves the only copy of a local version in the temp dir.
 */
export async function putBack(root: string, asideAbs: string, to: CheckedPath, conflictName: (rel: string) => string): Promise<string | null> {
  try {
    moveWithoutReplacing(asideAbs, to.abs);
    tryUnlink(asideAbs + NOTE_SUFFIX);
    return null;
  } catch (err) {
    const copy = await checkPath(root, conflictName(to.rel), { sameOperationAs: to });
    moveWithoutReplacing(asideAbs, copy.abs);
    tryUnlink(asideAbs + NOTE_SUFFIX);
    const code = errnoCode(err);
    if (code !== 'EEXIST' && code !== 'ENOTEMPTY' && code !== 'ENOTDIR') throw err;
    return copy.rel;
  }
}

/**
 * At start-up, before the temp dir is cleaned: a local version a kill left moved aside (a pull
 * was comparing it with what it decided on) goes back to its path, or to a conflict copy when the
 * path is taken. One that is what the pull decided to replace or remove (a version the server
 * holds), or the inode a pulled rename already gave its new name, is dropped. Returns the paths
 * it put something at, to be looked at (and pushed).
 */
export async function recoverAsides(root: string, conflictName: (rel: string) => string): Promise<string[]> {
  const dir = tmpDirOf(root);
  if (fs.lstatSync(dir, { throwIfNoEntry: false })?.isDirectory() !== true) return [];
  const placed: string[] = [];
  for (const name of fs.readdirSync(dir)) {
    if (!name.endsWith(`.${ASIDE_SUFFIX}`)) continue;
    const aside = await checkSource(root, await tempFilePath(root, name));
    const st = fs.lstatSync(aside.abs, { throwIfNoEntry: false });
    if (st === undefined) continue;
    let note: AsideNote | null = null;
    try {
      note = JSON.parse(fs.readFileSync(aside.abs + NOTE_SUFFIX, 'utf8')) as AsideNote;
    } catch {
      // no note (written before the move, so only a lost write leaves none): kept as a copy
    }
    if (note !== null && !st.isDirectory()) {
      const isLinked = note.linkedIno !== null && note.linkedIno === st.ino;
      const expected = note.expected;
      const isDecided = expected?.entry != null && isSameEntry(await entryOf(aside.abs, expected), expected.entry);
      if (isLinked || isDecided) {
        dropAside(aside.abs);
        continue;
      }
    }
    const to = await checkPath(root, note?.path ?? 'recovered', { createParents: 0o755 }).catch(() => checkPath(root, 'recovered'));
    placed.push((await putBack(root, aside.abs, to, conflictName)) ?? to.rel);
  }
  return placed;
}

/** Not placed (the `placed: false` arms of PlaceResult). */
type NotPlaced = Extract<PlaceResult, { placed: false }>;

/**
 * The steps shared by a pulled file and a pulled link: the checked temp name `tmp` becomes `to`,
 * provided `to` still holds what `expected` describes (moved aside, compared, placed with link()).
 * Returns null when placed. The caller unlinks `tmp`.
 */
async function swapIn(root: string, tmp: CheckedPath, to: CheckedPath, expected: PlaceExpectation, options: PlaceOptions): Promise<NotPlaced | null> {
  await options.beforeReplace?.();
  let aside: string | null = null;
  const now = fs.lstatSync(to.abs, { throwIfNoEntry: false });
  if (now !== undefined) {
    if (expected.entry === null) return { placed: false, reason: 'appeared' };
    // A directory is never replaced here (the caller removes an empty one first).
    if (now.isDirectory()) return { placed: false, reason: 'changed', copy: null };
    aside = await moveAside(root, to, { expected, linkedIno: null });
    if (aside === null) return { placed: false, reason: 'changed', copy: null }; // removed meanwhile: a local delete
    await recheckPath(to);
    await options.afterAside?.();
    const moved = await entryOf(aside, expected);
    if (!isSameEntry(moved, expected.entry)) {
      // A local edit landed since the decision: it stays, at its path if it is still free.
      const copy = await putBack(root, aside, to, options.conflictName);
      return { placed: false, reason: 'changed', copy };
    }
  } else if (expected.entry !== null) {
    return { placed: false, reason: 'changed', copy: null }; // deleted locally since the decision
  }
  try {
    // link() never follows a link at either name (Linux), so a temp symlink is placed as itself.
    fs.linkSync(tmp.abs, to.abs);
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
    // Something new took the path after the move aside: leave it. What was moved aside is
    // exactly what the pull decided to replace (the base), so dropping it loses nothing.
    if (aside !== null) dropAside(aside);
    return { placed: false, reason: 'appeared' };
  }
  await recheckPath(to);
  if (aside !== null) dropAside(aside);
  return null;
}

/**
 * Put the verified temp file `tmpAbs` (inside this folder's `.systemsync/tmp`) at `rel` with the
 * entry's mode and mtime, provided `rel` still holds what `expected` describes (nothing, a file or
 * a link). Never removes or overwrites bytes that differ from `expected`. The temp file is
 * consumed in every case.
 */
export async function placePulledFile(root: string, tmpAbs: string, rel: string, entry: FileEntry, expected: PlaceExpectation, options: PlaceOptions): Promise<PlaceResult> {
  try {
    await stampFile(tmpAbs, entry);
    const tmpIno = fs.lstatSync(tmpAbs).ino;
    const to = await checkPath(root, rel, { createParents: 0o755 });
    const tmp = await checkSource(root, tmpAbs, { sameOperationAs: to });
    const notPlaced = await swapIn(root, tmp, to, expected, options);
    if (notPlaced !== null) return notPlaced;
    tryUnlink(tmp.abs);
    // Confirm the file at the path is the one placed, as placed: a write since makes it unconfirmed.
    const st = fs.lstatSync(to.abs, { throwIfNoEntry: false });
    const isAsPlaced = st !== undefined && st.isFile() && st.ino === tmpIno && st.size === entry.size && mtimeOf(st) === entry.mtime && (permissionBits(st.mode)) === entry.mode;
    return { placed: true, stat: isAsPlaced ? fingerprint(st) : null };
  } finally {
    tryUnlink(tmpAbs);
  }
}

/**
 * Make `rel` a symlink to `target`, provided `rel` still holds what `expected` describes (nothing,
 * a file or a link): the link is made under a temp name and placed by the same steps as a pulled
 * file, so a local write since the decision is never replaced. `stat` is null when placed.
 */
export async function placePulledSymlink(root: string, rel: string, target: string, expected: PlaceExpectation, options: PlaceOptions): Promise<PlaceResult> {
  const to = await checkPath(root, rel, { createParents: 0o755 });
  const tmp = await checkSource(root, await tempFilePath(root, newTempName('link')), { sameOperationAs: to });
  try {
    fs.symlinkSync(target, tmp.abs);
    return (await swapIn(root, tmp, to, expected, options)) ?? { placed: true, stat: null };
  } finally {
    tryUnlink(tmp.abs);
  }
}

export type MoveResult =
  /** `from` now has the name `to`. `kept`: where a new local file that took `from` meanwhile is
   * (put back there, or a conflict copy), to be looked at; null when there was none. */
  | { moved: true; kept: string | null }
  /** Not moved: something appeared at `to` since the decision ('appeared'; it was not touched),
   * or `from` was gone ('gone'). */
  | { moved: false; reason: 'appeared' | 'gone' };

export interface MoveOptions {
  /** Name for a conflict copy of a local version that lost its path (folder-relative). */
  conflictName: (rel: string) => string;
  /** Test seam: runs between the decision's check and the move (a race is injected here). */
  beforeMove?: () => void | Promise<void>;
  /** Test seam: runs after a file or link got its new name, before the old name is removed. */
  afterLink?: () => void | Promise<void>;
}

/**
 * A pulled rename: what is at `from` takes the name `to`, which the decision found empty, never
 * replacing what a local write put at `to` since (rename(2) replaces a file silently). A directory
 * moves by rename, which fails on a file, a link or a directory with entries at `to` (an empty
 * one holds nothing to lose). A file or link gets the new name with link(), which fails with
 * EEXIST; only then does the old name go: moved aside and unlinked if it is still that inode,
 * put back (or kept as a conflict copy) if a new file took `from` in between.
 */
export async function movePulledPath(root: string, from: string, to: string, options: MoveOptions): Promise<MoveResult> {
  await options.beforeMove?.();
  const src = await checkPath(root, from);
  const dest = await checkPath(root, to, { createParents: 0o755, sameOperationAs: src });
  const st = fs.lstatSync(src.abs, { throwIfNoEntry: false });
  if (st === undefined) return { moved: false, reason: 'gone' };
  const refused = (err: unknown): MoveResult => {
    const code = errnoCode(err);
    if (code === 'ENOENT') return { moved: false, reason: 'gone' };
    if (code === 'EEXIST' || code === 'ENOTEMPTY' || code === 'ENOTDIR' || code === 'EISDIR') return { moved: false, reason: 'appeared' };
    throw err;
  };
  if (st.isDirectory()) {
    try {
      await renameChecked(src, dest);
    } catch (err) {
      return refused(err);
    }
    return { moved: true, kept: null };
  }
  try {
    fs.linkSync(src.abs, dest.abs); // never follows a link at either name (Linux)
  } catch (err) {
    return refused(err);
  }
  await recheckPath(dest);
  const placed = fs.lstatSync(dest.abs, { throwIfNoEntry: false })?.ino;
  await options.afterLink?.();
  // The old name goes only if it still names what was linked: a file that took it meanwhile stays.
  const aside = await moveAside(root, src, { expected: null, linkedIno: placed ?? null });
  if (aside === null) return { moved: true, kept: null }; // deleted locally meanwhile
  if (fs.lstatSync(aside).ino === placed) {
    dropAside(aside);
    return { moved: true, kept: null };
  }
  return { moved: true, kept: (await putBack(root, aside, src, options.conflictName)) ?? from };
}

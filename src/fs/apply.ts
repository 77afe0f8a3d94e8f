/**
 * Applying entries to a local folder: the only place (with safefs) where a daemon changes the
 * contents of a synced folder. Used by the server to commit pushes and by clients to apply pulls.
 *
 * Every write goes to a temp file under `.systemsync/tmp` and is renamed into place, so a reader
 * sees the old content or the new. No write follows a symlink (safefs checks every parent).
 * Metadata calls are synchronous, for the reason safefs.ts gives (a few microseconds each on a
 * local disk, against a thread-pool round trip).
 */
import fs from 'node:fs/promises';
import fsSync, { constants as FS } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { DirEntry, Entry, FileEntry, StatFingerprint } from '../core/types.js';
import { permissionBits } from '../core/modes.js';
import { RESERVED_DIR } from '../core/paths.js';
import { fingerprint } from './scan.js';
import { fsTimeOf, lstatOrNull } from './stat.js';
import { removeTreeChecked, requireReservedDir, tempFilePath } from './reserved.js';
import {
  checkPath,
  checkSource,
  recheckPath,
  renameChecked,
  rmdirChecked,
  safeChmod,
  safeLstat,
  unlinkChecked,
  type CheckedPath,
} from './safefs.js';

export function tmpDirOf(root: string): string {
  return path.join(root, RESERVED_DIR, 'tmp');
}

/** A fresh temp file name inside `.systemsync/tmp` (no slash: also valid as an `upload` name). */
export function newTempName(suffix = 'part'): string {
  return `${Date.now().toString(36)}-${crypto.randomBytes(6).toString('hex')}.${suffix}`;
}

/** Called with the absolute path of a file about to be replaced or removed (the server trashes it). */
export type BeforeReplace = (absPath: string, rel: string) => Promise<void>;

/** Set mode and mtime on a temp file through a descriptor opened without following links. */
export async function stampFile(tmpAbs: string, entry: FileEntry): Promise<void> {
  const time = fsTimeOf(entry.mtime);
  const fd = fsSync.openSync(tmpAbs, FS.O_RDONLY | FS.O_NOFOLLOW);
  try {
    fsSync.fchmodSync(fd, permissionBits(entry.mode));
    fsSync.futimesSync(fd, time, time);
  } finally {
    fsSync.closeSync(fd);
  }
}

/**
 * Hand the file at `c` to `beforeReplace` (when given), then check its parent again: the
 * callback may take a while, and the change that follows must not go through a swapped parent.
 */
async function setAside(c: CheckedPath, beforeReplace: BeforeReplace | undefined): Promise<void> {
  if (beforeReplace === undefined) return;
  await beforeReplace(c.abs, c.rel);
  await recheckPath(c, 'before the operation');
}

/**
 * Make room at the checked path `c` for an entry of type `wanted`. A directory being replaced
 * must be empty (its children were deleted first) and is removed. A file, symlink or special
 * file is left for the rename to replace atomically when a file or symlink is wanted (a file is
 * first handed to `beforeReplace`), and unlinked when a directory is wanted. Returns the lstat
 * of what remains there (an existing directory when one is wanted), else null.
 */
async function clearForType(c: CheckedPath, wanted: Entry['type'], beforeReplace?: BeforeReplace): Promise<import('node:fs').Stats | null> {
  const st = await lstatOrNull(c.abs);
  if (st === null) return null;
  if (st.isDirectory()) {
    if (wanted === 'dir') return st;
    await rmdirChecked(c);
    return null;
  }
  if (st.isFile()) await setAside(c, beforeReplace);
  if (wanted === 'dir') await unlinkChecked(c);
  return null;
}

/**
 * Put a verified temp file (absolute path, inside this folder's `.systemsync/tmp`) at `rel` with
 * the entry's mode and mtime, replacing what is there. Returns the new local fingerprint.
 * One parent check for the destination (missing parents created), one for the temp file, the
 * rename, and a post-check of both.
 */
export async function placeFile(
  root: string,
  tmpAbs: string,
  rel: string,
  entry: FileEntry,
  beforeReplace?: BeforeReplace,
): Promise<StatFingerprint> {
  await stampFile(tmpAbs, entry);
  const to = await checkPath(root, rel, { createParents: 0o755 });
  await clearForType(to, 'file', beforeReplace);
  const from = await checkSource(root, tmpAbs, { sameOperationAs: to });
  await renameChecked(from, to);
  return fingerprint(fsSync.lstatSync(to.abs));
}

/**
 * Change only the metadata of the file at `rel` (its content already has the entry's hash, which
 * the caller checked against its records). Returns the new local fingerprint.
 */
export async function restampFile(root: string, rel: string, entry: FileEntry): Promise<StatFingerprint> {
  const time = fsTimeOf(entry.mtime);
  const c = await checkPath(root, rel);
  const fd = fsSync.openSync(c.abs, FS.O_RDONLY | FS.O_NOFOLLOW);
  try {
    await recheckPath(c, 'while opening the file');
    const st = fsSync.fstatSync(fd);
    if (!st.isFile() || st.size !== entry.size) throw new Error(`${rel}: changed on disk while its metadata was being set`);
    fsSync.fchmodSync(fd, permissionBits(entry.mode));
    fsSync.futimesSync(fd, time, time);
    return fingerprint(fsSync.fstatSync(fd));
  } finally {
    fsSync.closeSync(fd);
  }
}

/**
 * Make `rel` a directory with the entry's permission bits (parents created as needed). A setgid
 * bit the directory has here (inherited from its parent, a local policy) is kept; none is set.
 */
export async function placeDir(root: string, rel: string, entry: DirEntry, beforeReplace?: BeforeReplace): Promise<void> {
  const c = await checkPath(root, rel, { createParents: 0o755 });
  const st = (await clearForType(c, 'dir', beforeReplace)) ?? (await makeDir(c, entry));
  if (!st.isDirectory()) throw new Error(`${rel}: expected a directory after mkdir`);
  await stampDir(c, st, entry);
}

/**
 * Make `rel` a directory with the entry's permission bits only where nothing but a directory is:
 * one mkdir, which fails with EEXIST rather than replace a file or link (a pulled directory never
 * removes what the pull did not decide on; the caller clears what it did). Returns false, and
 * touches nothing, when a file or link is at `rel`.
 */
export async function placeDirIfFree(root: string, rel: string, entry: DirEntry): Promise<boolean> {
  const c = await checkPath(root, rel, { createParents: 0o755 });
  const st = await makeDir(c, entry);
  if (!st.isDirectory()) return false;
  await stampDir(c, st, entry);
  return true;
}

/** mkdir at the checked path (an existing name is left as it is); the lstat of what is there after. */
async function makeDir(c: CheckedPath, entry: DirEntry): Promise<import('node:fs').Stats> {
  try {
    fsSync.mkdirSync(c.abs, { mode: permissionBits(entry.mode) });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  await recheckPath(c);
  return fsSync.lstatSync(c.abs);
}

/** The entry's permission bits on the directory at `c`; a setgid bit it has here (inherited from its parent, a local policy) is kept. */
async function stampDir(c: CheckedPath, st: import('node:fs').Stats, entry: DirEntry): Promise<void> {
  const mode = permissionBits(entry.mode);
  if (permissionBits(st.mode) !== mode) await safeChmod(c.root, c.rel, mode | (st.mode & 0o2000));
}

/** Make `rel` a symlink to `target`, atomically (created under a temp name, renamed into place). */
export async function placeSymlink(root: string, rel: string, target: string, beforeReplace?: BeforeReplace): Promise<void> {
  const to = await checkPath(root, rel, { createParents: 0o755 });
  await clearForType(to, 'symlink', beforeReplace);
  const tmpAbs = await tempFilePath(root, newTempName('link'));
  const from = await checkSource(root, tmpAbs, { sameOperationAs: to });
  fsSync.symlinkSync(target, from.abs);
  await renameChecked(from, to);
}

/** rmdir of the checked path: false when it still has children or is no longer a directory. */
async function rmdirIfEmpty(c: CheckedPath): Promise<boolean> {
  try {
    await rmdirChecked(c);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return true;
    if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') return false;
    throw err;
  }
}

/**
 * Remove `rel` only if it is an empty directory (one rmdir: a file or link that took its place,
 * or anything that came into it, is never removed). Returns whether the path is free.
 */
export async function removeEmptyDir(root: string, rel: string): Promise<boolean> {
  return rmdirIfEmpty(await checkPath(root, rel));
}

/**
 * Remove `rel`: a file or link (handed to `beforeReplace` first), or an empty directory.
 * Returns false when a directory still has children (something the remover did not know of).
 */
export async function removePath(root: string, rel: string, beforeReplace?: BeforeReplace): Promise<boolean> {
  const c = await checkPath(root, rel);
  const st = await lstatOrNull(c.abs);
  if (st === null) return true;
  if (st.isDirectory()) return rmdirIfEmpty(c);
  if (st.isFile()) await setAside(c, beforeReplace);
  await unlinkChecked(c);
  return true;
}

/**
 * Rename `from` to `to` inside one folder (posix rename: replaces a file at `to`). When both are
 * names of one inode (hard links), rename(2) does nothing and leaves `from`: it is unlinked, as
 * the move asks (seed 9375: the hub kept `from` on its disk while its log said it was gone).
 */
export async function movePath(root: string, from: string, to: string, beforeReplace?: BeforeReplace): Promise<void> {
  const fromChecked = await checkPath(root, from);
  const toChecked = await checkPath(root, to, { createParents: 0o755, sameOperationAs: fromChecked });
  const existing = await lstatOrNull(toChecked.abs);
  const moving = existing === null ? null : await lstatOrNull(fromChecked.abs);
  if (existing !== null && moving !== null && !moving.isDirectory() && moving.ino === existing.ino && moving.dev === existing.dev) {
    await unlinkChecked(fromChecked);
    return;
  }
  if (existing?.isFile() && beforeReplace !== undefined) {
    await setAside(toChecked, beforeReplace);
    await recheckPath(fromChecked, 'before the operation');
  }
  await renameChecked(fromChecked, toChecked);
}

/**
 * Remove leftovers of interrupted transfers from `.systemsync/tmp`: everything, or with
 * `olderThan` only what was last modified before that time (transfers in flight keep writing).
 */
export async function cleanTempDir(root: string, olderThan: Date | null = null): Promise<number> {
  if ((await lstatOrNull(tmpDirOf(root))) === null) return 0;
  // A real directory of ours (never a link to follow), and every removal a checked one.
  const dir = await requireReservedDir(root, 'tmp');
  let removed = 0;
  for (const name of await fs.readdir(dir)) {
    const rel = `${RESERVED_DIR}/tmp/${name}`;
    if (olderThan !== null) {
      const st = await safeLstat(root, rel, { allowReserved: true }).catch(() => null);
      if (st === null || st.mtimeMs >= olderThan.getTime()) continue;
    }
    await removeTreeChecked(root, rel);
    removed++;
  }
  return removed;
}

/**
 * Applying entries to a local folder: the only place (with safefs) where a daemon changes the
 * contents of a synced folder. Used by the server to commit pushes and by clients to apply pulls.
 *
 * Every write goes to a temp file under `.systemsync/tmp` and is renamed into place, so a reader
 * sees the old content or the new. No write follows a symlink (safefs checks every parent).
 */
import fs from 'node:fs/promises';
import { constants as FS } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { DirEntry, Entry, FileEntry, StatFingerprint } from './core/types.js';
import { fingerprint, setMtime } from './scan.js';
import { ensureParentDirs, resolveInside, safeRename, safeUnlink, safeRmdir } from './safefs.js';

export const MARKER_DIR = '.systemsync';

export function tmpDirOf(root: string): string {
  return path.join(root, MARKER_DIR, 'tmp');
}

/** A fresh temp file name inside `.systemsync/tmp` (no slash: also valid as an `upload` name). */
export function newTempName(suffix = 'part'): string {
  return `${Date.now().toString(36)}-${crypto.randomBytes(6).toString('hex')}.${suffix}`;
}

/** Called with the absolute path of a file about to be replaced or removed (the server trashes it). */
export type BeforeReplace = (absPath: string, rel: string) => Promise<void>;

async function lstatOrNull(abs: string): Promise<import('node:fs').Stats | null> {
  try {
    return await fs.lstat(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Set mode and mtime on a temp file through a descriptor opened without following links. */
async function stampFile(tmpAbs: string, entry: FileEntry): Promise<void> {
  const handle = await fs.open(tmpAbs, FS.O_RDONLY | FS.O_NOFOLLOW);
  try {
    await handle.chmod(entry.mode);
  } finally {
    await handle.close();
  }
  await setMtime(tmpAbs, entry.mtime);
}

/**
 * Move whatever stands at `rel` out of the way when it is not of the wanted type: a directory
 * being replaced by a file must be empty (its children were deleted first); a file or link is
 * handed to `beforeReplace` and unlinked.
 */
async function clearForType(root: string, rel: string, wanted: Entry['type'], beforeReplace?: BeforeReplace): Promise<void> {
  const abs = await resolveInside(root, rel);
  const st = await lstatOrNull(abs);
  if (st === null) return;
  const isDir = st.isDirectory();
  if (wanted === 'dir' && isDir) return;
  if (isDir) {
    await safeRmdir(root, rel);
    return;
  }
  if (wanted === 'file' && st.isFile()) return; // rename replaces it atomically
  if (beforeReplace !== undefined && st.isFile()) await beforeReplace(abs, rel);
  await safeUnlink(root, rel);
}

/**
 * Put a verified temp file (absolute path, inside this folder's `.systemsync/tmp`) at `rel` with
 * the entry's mode and mtime, replacing what is there. Returns the new local fingerprint.
 */
export async function placeFile(
  root: string,
  tmpAbs: string,
  rel: string,
  entry: FileEntry,
  beforeReplace?: BeforeReplace,
): Promise<StatFingerprint> {
  await stampFile(tmpAbs, entry);
  await ensureParentDirs(root, rel);
  await clearForType(root, rel, 'file', beforeReplace);
  const abs = await resolveInside(root, rel);
  const existing = await lstatOrNull(abs);
  if (existing?.isFile() && beforeReplace !== undefined) await beforeReplace(abs, rel);
  await safeRename(root, tmpAbs, rel);
  return fingerprint(await fs.lstat(abs));
}

/**
 * Change only the metadata of the file at `rel` (its content already has the entry's hash, which
 * the caller checked against its records). Returns the new local fingerprint.
 */
export async function restampFile(root: string, rel: string, entry: FileEntry): Promise<StatFingerprint> {
  const abs = await resolveInside(root, rel);
  const handle = await fs.open(abs, FS.O_RDONLY | FS.O_NOFOLLOW);
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.size !== entry.size) throw new Error(`${rel}: changed on disk while its metadata was being set`);
    await handle.chmod(entry.mode);
  } finally {
    await handle.close();
  }
  await setMtime(abs, entry.mtime);
  return fingerprint(await fs.lstat(abs));
}

/** Make `rel` a directory with the entry's mode (parents created as needed). */
export async function placeDir(root: string, rel: string, entry: DirEntry, beforeReplace?: BeforeReplace): Promise<void> {
  await ensureParentDirs(root, rel);
  await clearForType(root, rel, 'dir', beforeReplace);
  const abs = await resolveInside(root, rel);
  try {
    await fs.mkdir(abs, { mode: entry.mode });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = await fs.lstat(abs);
  if (!st.isDirectory()) throw new Error(`${rel}: expected a directory after mkdir`);
  if ((st.mode & 0o7777) !== entry.mode) await fs.chmod(abs, entry.mode);
}

/** Make `rel` a symlink to `target`, atomically (created under a temp name, renamed into place). */
export async function placeSymlink(root: string, rel: string, target: string, beforeReplace?: BeforeReplace): Promise<void> {
  await ensureParentDirs(root, rel);
  await clearForType(root, rel, 'symlink', beforeReplace);
  const tmpAbs = path.join(tmpDirOf(root), newTempName('link'));
  await fs.mkdir(tmpDirOf(root), { recursive: true, mode: 0o700 });
  await fs.symlink(target, tmpAbs);
  await safeRename(root, tmpAbs, rel);
}

/**
 * Remove `rel`: a file or link (handed to `beforeReplace` first), or an empty directory.
 * Returns false when a directory still has children (something the remover did not know of).
 */
export async function removePath(root: string, rel: string, beforeReplace?: BeforeReplace): Promise<boolean> {
  const abs = await resolveInside(root, rel);
  const st = await lstatOrNull(abs);
  if (st === null) return true;
  if (st.isDirectory()) {
    try {
      await safeRmdir(root, rel);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
      throw err;
    }
  }
  if (beforeReplace !== undefined && st.isFile()) await beforeReplace(abs, rel);
  await safeUnlink(root, rel);
  return true;
}

/** Rename `from` to `to` inside one folder (posix rename: replaces a file at `to`). */
export async function movePath(root: string, from: string, to: string, beforeReplace?: BeforeReplace): Promise<void> {
  const fromAbs = await resolveInside(root, from);
  await ensureParentDirs(root, to);
  const toAbs = await resolveInside(root, to);
  const existing = await lstatOrNull(toAbs);
  if (existing !== null && !existing.isDirectory() && beforeReplace !== undefined && existing.isFile()) {
    await beforeReplace(toAbs, to);
  }
  await safeRename(root, fromAbs, to);
}

/**
 * Remove leftovers of interrupted transfers from `.systemsync/tmp`: everything, or with
 * `olderThan` only what was last modified before that time (transfers in flight keep writing).
 */
export async function cleanTempDir(root: string, olderThan: Date | null = null): Promise<number> {
  const dir = tmpDirOf(root);
  let removed = 0;
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const abs = path.join(dir, name);
    if (olderThan !== null) {
      const st = await lstatOrNull(abs).catch(() => null);
      if (st === null || st.mtimeMs >= olderThan.getTime()) continue;
    }
    await fs.rm(abs, { recursive: true, force: true });
    removed++;
  }
  return removed;
}

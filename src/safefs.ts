/**
 * Writes that never leave a synced folder.
 *
 * Node has no openat(2), so every operation here checks the path right before acting: the
 * relative path must pass `checkRelativePath`, every parent component under the root must be a
 * real directory (lstat: not a symlink), and the realpath of the parent must be exactly where the
 * relative path says. The final component is never followed: rename and unlink replace or remove
 * a symlink itself; chmod and utimes skip symlinks and work through a descriptor opened with
 * O_NOFOLLOW. After each operation the parent is checked again, so a directory swapped for a
 * symlink during the call is detected and reported (UnsafePathError) instead of passing silently.
 *
 * Plain fs errors (ENOENT, EEXIST, ENOTEMPTY, EISDIR, ...) pass through unchanged with their code.
 */
import { constants as FS, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { SyncError } from './core/errors.js';
import { checkRelativePath, parentOf, segments } from './core/paths.js';

/** A path that is, or would be, reached through a symlink, or that left the folder. code 'UNSAFE_PATH'. */
export class UnsafePathError extends SyncError {
  constructor(
    readonly root: string,
    readonly rel: string,
    detail: string,
  ) {
    super('UNSAFE_PATH', `${root}: ${JSON.stringify(rel)}: ${detail}`);
  }
}

/** A parent component of the path exists but is not a directory (a file stands in the way). */
export class NotADirectoryError extends SyncError {
  constructor(
    readonly root: string,
    readonly rel: string,
    readonly parent: string,
  ) {
    super('NOT_A_DIRECTORY', `${root}: ${JSON.stringify(rel)}: parent ${JSON.stringify(parent)} is not a directory`);
  }
}

/** The folder root itself is missing or not a directory. code 'ROOT_MISSING'. */
export class RootMissingError extends SyncError {
  constructor(
    readonly root: string,
    cause: unknown,
  ) {
    super('ROOT_MISSING', `${root}: folder root is missing or not a directory`, { cause });
  }
}

export interface SafeOptions {
  /** Accept relative paths under `.systemsync/` (temp files, trash). Default false. */
  allowReserved?: boolean;
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

async function lstatOrNull(abs: string): Promise<Stats | null> {
  try {
    return await fs.lstat(abs);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return null;
    throw err;
  }
}

function checkRoot(root: string): void {
  if (!path.isAbsolute(root)) throw new RootMissingError(root, new Error('root must be an absolute path'));
}

async function realRootOf(root: string): Promise<string> {
  checkRoot(root);
  try {
    const real = await fs.realpath(root);
    const st = await fs.stat(real);
    if (!st.isDirectory()) throw new Error('not a directory');
    return real;
  } catch (err) {
    throw new RootMissingError(root, err);
  }
}

function absOf(root: string, rel: string): string {
  return path.join(root, ...segments(rel));
}

/**
 * Walks the parents of `rel` below `root` with lstat. Stops at the first missing one (nothing
 * below it exists). Throws UnsafePathError for a symlink, NotADirectoryError for anything else.
 */
async function checkParents(root: string, rel: string): Promise<void> {
  const parts = segments(rel);
  let abs = root;
  for (let i = 0; i < parts.length - 1; i++) {
    abs = path.join(abs, parts[i] as string);
    const st = await lstatOrNull(abs);
    if (st === null) return;
    const shown = parts.slice(0, i + 1).join('/');
    if (st.isSymbolicLink()) throw new UnsafePathError(root, rel, `parent ${JSON.stringify(shown)} is a symlink`);
    if (!st.isDirectory()) throw new NotADirectoryError(root, rel, shown);
  }
}

/**
 * Confirms that the existing parent directory of `rel` resolves (realpath) to exactly
 * `<real root>/<parent>`: no symlink anywhere on the way, nothing outside the folder.
 * A missing parent is fine (nothing can be written through it).
 */
async function verifyParentReal(root: string, realRoot: string, rel: string, when: string): Promise<void> {
  const parent = parentOf(rel);
  if (parent === null) {
    let now: string;
    try {
      now = await fs.realpath(root);
    } catch (err) {
      throw new RootMissingError(root, err);
    }
    if (now !== realRoot) throw new UnsafePathError(root, rel, `folder root moved ${when} (now ${now})`);
    return;
  }
  let real: string;
  try {
    real = await fs.realpath(absOf(root, parent));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    if (errnoCode(err) === 'ENOTDIR') throw new NotADirectoryError(root, rel, parent);
    throw err;
  }
  const expected = absOf(realRoot, parent);
  if (real !== expected) {
    const inside = real.startsWith(realRoot + path.sep);
    throw new UnsafePathError(root, rel, `parent resolves ${inside ? 'elsewhere' : 'outside the folder'} ${when} (${real})`);
  }
}

interface Checked {
  rel: string;
  abs: string;
  realRoot: string;
}

async function prepare(root: string, rel: string, options: SafeOptions): Promise<Checked> {
  checkRelativePath(rel, options);
  const realRoot = await realRootOf(root);
  await checkParents(root, rel);
  await verifyParentReal(root, realRoot, rel, 'before the operation');
  return { rel, abs: absOf(root, rel), realRoot };
}

async function verifyAfter(root: string, c: Checked): Promise<void> {
  await verifyParentReal(root, c.realRoot, c.rel, 'during the operation');
}

/**
 * Checks `rel` (checkRelativePath) and every existing parent under `root` (a real directory,
 * not a symlink, resolving to where it should) and returns the absolute path `<root>/<rel>`.
 * The final component is not examined: it may be missing, a file, a directory or a symlink.
 * @throws PathError, UnsafePathError, NotADirectoryError, RootMissingError
 */
export async function resolveInside(root: string, rel: string, options: SafeOptions = {}): Promise<string> {
  return (await prepare(root, rel, options)).abs;
}

/**
 * True when an existing parent of `rel` is a symlink, not a directory, or resolves anywhere but
 * `<root>/<parent>`: whatever lies at `rel` is then not part of the folder and must not be read
 * as if it were. False when every existing parent is a real directory inside `root`.
 * @throws PathError for a bad `rel`, RootMissingError when the root is gone.
 */
export async function isReachedThroughLink(root: string, rel: string, options: SafeOptions = {}): Promise<boolean> {
  try {
    await prepare(root, rel, options);
    return false;
  } catch (err) {
    if (err instanceof UnsafePathError || err instanceof NotADirectoryError) return true;
    throw err;
  }
}

/**
 * Creates the missing parent directories of `rel`, one component at a time (mode default 0o755,
 * subject to umask), re-checking each with lstat after creating it so that a symlink planted in
 * a race is caught. Returns the relative paths of the directories it created, outermost first.
 */
export async function ensureParentDirs(root: string, rel: string, mode = 0o755, options: SafeOptions = {}): Promise<string[]> {
  checkRelativePath(rel, options);
  const realRoot = await realRootOf(root);
  const parts = segments(rel);
  const created: string[] = [];
  for (let i = 0; i < parts.length - 1; i++) {
    const sub = parts.slice(0, i + 1).join('/');
    const abs = absOf(root, sub);
    let st = await lstatOrNull(abs);
    if (st === null) {
      try {
        await fs.mkdir(abs, { mode });
        created.push(sub);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      st = await fs.lstat(abs);
    }
    if (st.isSymbolicLink()) throw new UnsafePathError(root, rel, `parent ${JSON.stringify(sub)} is a symlink`);
    if (!st.isDirectory()) throw new NotADirectoryError(root, rel, sub);
  }
  await verifyParentReal(root, realRoot, rel, 'while creating parents');
  return created;
}

/**
 * Turns `fromAbsOrRel` into a checked relative path: an absolute path must lie inside `root`
 * (`.systemsync/` allowed: temp files live there); a relative one follows `options`.
 */
function sourceRel(root: string, fromAbsOrRel: string, options: SafeOptions): string {
  if (!path.isAbsolute(fromAbsOrRel)) return checkRelativePath(fromAbsOrRel, options);
  const rel = path.relative(root, fromAbsOrRel);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel) || path.join(root, rel) !== path.normalize(fromAbsOrRel)) {
    throw new UnsafePathError(root, fromAbsOrRel, 'source is not inside the folder');
  }
  return checkRelativePath(rel.split(path.sep).join('/'), { allowReserved: true });
}

/**
 * Renames `fromAbsOrRel` (absolute inside `root`, e.g. a temp file under `.systemsync/tmp`, or
 * relative) to `toRel`, replacing what is at `toRel` (posix rename: a symlink there is replaced,
 * never written through). Parents of both ends are checked before and after.
 */
export async function safeRename(root: string, fromAbsOrRel: string, toRel: string, options: SafeOptions = {}): Promise<void> {
  const from = await prepare(root, sourceRel(root, fromAbsOrRel, options), { allowReserved: true });
  const to = await prepare(root, toRel, options);
  await fs.rename(from.abs, to.abs);
  await verifyAfter(root, to);
  await verifyAfter(root, from);
}

/** Removes the file or symlink at `rel` (a symlink itself, never its target). */
export async function safeUnlink(root: string, rel: string, options: SafeOptions = {}): Promise<void> {
  const c = await prepare(root, rel, options);
  await fs.unlink(c.abs);
  await verifyAfter(root, c);
}

/** Removes the empty directory at `rel` (ENOTEMPTY if it has children, ENOTDIR for a symlink). */
export async function safeRmdir(root: string, rel: string, options: SafeOptions = {}): Promise<void> {
  const c = await prepare(root, rel, options);
  await fs.rmdir(c.abs);
  await verifyAfter(root, c);
}

/**
 * Creates the directory `rel` with exactly `mode` (umask corrected). Returns false if a
 * directory was already there (its mode is left alone); EEXIST if something else is there.
 */
export async function safeMkdir(root: string, rel: string, mode = 0o755, options: SafeOptions = {}): Promise<boolean> {
  const c = await prepare(root, rel, options);
  try {
    await fs.mkdir(c.abs, { mode });
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
    const st = await fs.lstat(c.abs);
    if (st.isDirectory()) return false;
    throw err;
  }
  await verifyAfter(root, c);
  await safeChmod(root, rel, mode, options);
  return true;
}

/** Creates a symlink at `rel` pointing at `target` (any text: it is never followed). EEXIST if taken. */
export async function safeSymlink(root: string, rel: string, target: string, options: SafeOptions = {}): Promise<void> {
  const c = await prepare(root, rel, options);
  await fs.symlink(target, c.abs);
  await verifyAfter(root, c);
}

/** lstat of `rel` after the parent checks; null when nothing is there. Never follows a final symlink. */
export async function safeLstat(root: string, rel: string, options: SafeOptions = {}): Promise<Stats | null> {
  const c = await prepare(root, rel, options);
  return lstatOrNull(c.abs);
}

/**
 * Opens the final component without following it (O_NOFOLLOW; O_NONBLOCK so that a FIFO cannot
 * block) and runs `action` on it if it is a regular file or a directory. Returns false when the
 * path is a symlink or a special file (nothing done).
 */
async function withNoFollowHandle(
  root: string,
  rel: string,
  options: SafeOptions,
  action: (handle: fs.FileHandle) => Promise<void>,
): Promise<boolean> {
  const c = await prepare(root, rel, options);
  const st = await fs.lstat(c.abs);
  if (!st.isFile() && !st.isDirectory()) return false;
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(c.abs, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  } catch (err) {
    if (errnoCode(err) === 'ELOOP') return false; // swapped for a symlink since the lstat
    throw err;
  }
  try {
    const opened = await handle.stat();
    if (!opened.isFile() && !opened.isDirectory()) return false;
    await action(handle);
  } finally {
    await handle.close();
  }
  await verifyAfter(root, c);
  return true;
}

/**
 * Sets the permission bits of the file or directory at `rel` through a descriptor (never through
 * a symlink). Returns false, doing nothing, for a symlink or a special file.
 */
export async function safeChmod(root: string, rel: string, mode: number, options: SafeOptions = {}): Promise<boolean> {
  return withNoFollowHandle(root, rel, options, (h) => h.chmod(mode & 0o7777));
}

/**
 * Sets atime and mtime (integer milliseconds since the epoch) of the file or directory at `rel`
 * through a descriptor. Returns false, doing nothing, for a symlink or a special file.
 */
export async function safeUtimes(root: string, rel: string, atimeMs: number, mtimeMs: number, options: SafeOptions = {}): Promise<boolean> {
  return withNoFollowHandle(root, rel, options, (h) => h.utimes(toFsTime(atimeMs), toFsTime(mtimeMs)));
}

/**
 * Integer milliseconds → the time value for fs.utimes/futimes such that the stored time floors
 * back to exactly `ms`. Non-negative: seconds nudged by half a microsecond, so float rounding
 * cannot land just below the millisecond (1600000000.123 would be stored as ...122.9999).
 * Negative: a Date, because Node replaces a negative number by "now".
 */
export function toFsTime(ms: number): number | Date {
  if (ms < 0) return new Date(ms);
  const seconds = Math.floor(ms / 1000);
  return seconds + (ms - seconds * 1000 + 0.0005) / 1000;
}

/**
 * Writes that never leave a synced folder.
 *
 * Node has no openat(2), so every operation here checks the path right before acting: the
 * relative path must pass `checkRelativePath`, the root must still be the directory it was
 * resolved to, and every parent component under the root must be a real directory (lstat: not a
 * symlink, not a file). The final component is never followed: rename and unlink replace or
 * remove a symlink itself; chmod and utimes skip symlinks and work through a descriptor opened
 * with O_NOFOLLOW. After each operation the parent is checked again, so a directory swapped for a
 * symlink during the call is detected and reported (UnsafePathError) instead of passing silently.
 *
 * Cost: the root's realpath is cached per root and revalidated by one lstat (two for a root that
 * is a symlink); a parent check is then one lstat per level inside the folder (a realpath would
 * readlink every component from `/`, for every path of a commit). apply.ts checks once per
 * operation (`checkPath`) and re-checks after each change (`recheckPath`), instead of once per
 * primitive.
 *
 * The fs calls are synchronous on purpose: each is a metadata syscall of a few microseconds on a
 * local disk, where an async call costs a thread-pool round trip (two context switches and a
 * wake-up of the event loop) many times that. The functions stay async for their callers.
 *
 * Plain fs errors (ENOENT, EEXIST, ENOTEMPTY, EISDIR, ...) pass through unchanged with their code.
 */
import fs, { constants as FS, type Stats } from 'node:fs';
import path from 'node:path';
import { SyncError } from '../core/errors.js';
import { checkRelativePath, parentOf, segments } from '../core/paths.js';
import { fsTimeOf, lstatOrNull } from './stat.js';

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

function checkRoot(root: string): void {
  if (!path.isAbsolute(root)) throw new RootMissingError(root, new Error('root must be an absolute path'));
}

/**
 * What a folder root was found to be: its realpath, the identity (dev + ino) of the path itself
 * (lstat: the link when the root is a symlink) and of the directory it reaches.
 */
interface RootRecord {
  real: string;
  wasLink: boolean;
  pathDev: number;
  pathIno: number;
  dirDev: number;
  dirIno: number;
}

/**
 * Realpaths of the roots seen so far, so that each operation costs one lstat of the root instead
 * of a realpath (a readlink per component). An entry is trusted only while the root path still
 * has the identity it had when it was resolved; a root that was a real directory and is now a
 * symlink is refused for the life of the process (it was swapped under us).
 */
const knownRoots = new Map<string, RootRecord>();

function sameIdentity(st: Stats, dev: number, ino: number): boolean {
  return st.dev === dev && st.ino === ino;
}

/** Resolves `root` afresh and records it. */
async function resolveRoot(root: string, pathStat: Stats): Promise<string> {
  let real: string;
  let dir: Stats;
  try {
    real = fs.realpathSync.native(root);
    dir = fs.statSync(real);
  } catch (err) {
    throw new RootMissingError(root, err);
  }
  if (!dir.isDirectory()) throw new RootMissingError(root, new Error('not a directory'));
  knownRoots.set(root, {
    real,
    wasLink: pathStat.isSymbolicLink(),
    pathDev: pathStat.dev,
    pathIno: pathStat.ino,
    dirDev: dir.dev,
    dirIno: dir.ino,
  });
  return real;
}

/**
 * The realpath of `root`: cached, checked with one lstat (two for a root that is a symlink).
 * `fresh` forces a new realpath (used when a parent did not resolve where the cache says).
 * @throws RootMissingError, UnsafePathError when a root that was a directory became a symlink.
 */
async function realRootOf(root: string, rel: string, fresh = false): Promise<string> {
  checkRoot(root);
  let st: Stats;
  try {
    st = fs.lstatSync(root);
  } catch (err) {
    throw new RootMissingError(root, err);
  }
  const known = knownRoots.get(root);
  if (known !== undefined && !known.wasLink && st.isSymbolicLink()) {
    throw new UnsafePathError(root, rel, 'folder root was a directory and has been replaced by a symlink');
  }
  if (!st.isDirectory() && !st.isSymbolicLink()) throw new RootMissingError(root, new Error('not a directory'));
  if (fresh || known === undefined || !sameIdentity(st, known.pathDev, known.pathIno)) return resolveRoot(root, st);
  if (!known.wasLink) return known.real;
  // Same link, but what it points through may have changed: the directory reached must be the same.
  let dir: Stats;
  try {
    dir = fs.statSync(root);
  } catch (err) {
    throw new RootMissingError(root, err);
  }
  return sameIdentity(dir, known.dirDev, known.dirIno) ? known.real : resolveRoot(root, st);
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

/** `ok`: resolves exactly where it should; `missing`: a parent does not exist; else where it resolves. */
type ParentState = { ok: true } | { missing: true } | { elsewhere: string };

/**
 * The root path still leads to the directory it was resolved to (by lstat, and stat for a root
 * that is a symlink): same identities as recorded by `resolveRoot` for `realRoot`.
 */
function isRootUnchanged(root: string, realRoot: string): boolean {
  const known = knownRoots.get(root);
  if (known === undefined || known.real !== realRoot) return false;
  let st: Stats;
  try {
    st = fs.lstatSync(root);
    if (!sameIdentity(st, known.pathDev, known.pathIno)) return false;
    if (!known.wasLink) return st.isDirectory();
    return sameIdentity(fs.statSync(root), known.dirDev, known.dirIno);
  } catch (err) {
    throw new RootMissingError(root, err);
  }
}

/**
 * Is the parent of `rel` reached from the root through real directories only? The root must
 * still be the directory `realRoot` names (one lstat), then each parent component below it is
 * lstat'ed: one syscall per level inside the folder, where a realpath would readlink every
 * component from `/`. A component that is a symlink, or not a directory, throws (UnsafePathError,
 * NotADirectoryError); a missing one gives `missing` (nothing can be reached through it); a root
 * that no longer leads where it did gives `elsewhere` with its realpath now.
 */
function parentState(root: string, realRoot: string, rel: string, isRootChecked = false): ParentState {
  if (!isRootChecked && !isRootUnchanged(root, realRoot)) {
    let now: string;
    try {
      now = fs.realpathSync.native(root);
    } catch (err) {
      throw new RootMissingError(root, err);
    }
    return now === realRoot && parentOf(rel) === null ? { ok: true } : { elsewhere: now };
  }
  const parts = segments(rel);
  let abs = root;
  for (let i = 0; i < parts.length - 1; i++) {
    abs = path.join(abs, parts[i] as string);
    const st = lstatOrNull(abs);
    if (st === null) return { missing: true };
    const shown = parts.slice(0, i + 1).join('/');
    if (st.isSymbolicLink()) throw new UnsafePathError(root, rel, `parent ${JSON.stringify(shown)} is a symlink`);
    if (!st.isDirectory()) throw new NotADirectoryError(root, rel, shown);
  }
  return { ok: true };
}

function resolvedElsewhere(root: string, realRoot: string, rel: string, real: string, when: string): UnsafePathError {
  const inside = real.startsWith(realRoot + path.sep);
  const what = parentOf(rel) === null ? 'folder root moved' : `parent resolves ${inside ? 'elsewhere' : 'outside the folder'}`;
  return new UnsafePathError(root, rel, `${what} ${when} (${real})`);
}

/**
 * Confirms that the existing parent directory of `rel` is still reached from the unchanged root
 * through real directories only (parentState): no symlink anywhere on the way, nothing outside
 * the folder. A missing parent is fine (nothing can be written through it) once the existing
 * ones are checked.
 */
async function verifyParentReal(root: string, realRoot: string, rel: string, when: string, isRootChecked = false): Promise<void> {
  const state = parentState(root, realRoot, rel, isRootChecked);
  if ('ok' in state) return;
  await checkParents(root, rel);
  if ('missing' in state) return;
  throw resolvedElsewhere(root, realRoot, rel, state.elsewhere, when);
}

/** A relative path whose parents were checked; the real root it was checked against. */
export interface CheckedPath {
  readonly root: string;
  readonly rel: string;
  /** `<root>/<rel>` */
  readonly abs: string;
  readonly realRoot: string;
}

export interface CheckOptions extends SafeOptions {
  /** Create missing parents with this mode (subject to umask), as ensureParentDirs does. */
  createParents?: number;
  /** A path checked moments ago in the same operation: its real root is reused (no second lstat). */
  sameOperationAs?: CheckedPath;
}

/**
 * Creates the missing parents of `rel` one at a time, re-checking each with lstat after creating
 * it so that a symlink planted in a race is caught. Returns the created relative paths.
 */
async function createParents(root: string, rel: string, mode: number): Promise<string[]> {
  const parts = segments(rel);
  const created: string[] = [];
  for (let i = 0; i < parts.length - 1; i++) {
    const sub = parts.slice(0, i + 1).join('/');
    const abs = absOf(root, sub);
    let st = await lstatOrNull(abs);
    if (st === null) {
      try {
        fs.mkdirSync(abs, { mode });
        created.push(sub);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      st = fs.lstatSync(abs);
    }
    if (st.isSymbolicLink()) throw new UnsafePathError(root, rel, `parent ${JSON.stringify(sub)} is a symlink`);
    if (!st.isDirectory()) throw new NotADirectoryError(root, rel, sub);
  }
  return created;
}

async function checkWithCreated(root: string, rel: string, options: CheckOptions): Promise<{ checked: CheckedPath; created: string[] }> {
  checkRelativePath(rel, options);
  const reuse = options.sameOperationAs;
  const isReused = reuse !== undefined && reuse.root === root;
  let realRoot = isReused ? reuse.realRoot : await realRootOf(root, rel);
  // A top-level path: the root check above is the parent check. realRootOf has just checked the
  // root's identity; a path checked in the same operation has its root checked by parentState.
  let state: ParentState = parentOf(rel) === null && !isReused ? { ok: true } : parentState(root, realRoot, rel, !isReused);
  if ('elsewhere' in state) {
    // The cached root may be stale (an ancestor of the root moved): resolve it afresh, once.
    const now = await realRootOf(root, rel, true);
    if (now !== realRoot) {
      realRoot = now;
      state = parentState(root, realRoot, rel, true);
    }
  }
  let created: string[] = [];
  if (!('ok' in state)) {
    await checkParents(root, rel);
    if ('elsewhere' in state) throw resolvedElsewhere(root, realRoot, rel, state.elsewhere, 'before the operation');
    if (options.createParents !== undefined) {
      created = await createParents(root, rel, options.createParents);
      await verifyParentReal(root, realRoot, rel, 'while creating parents');
    }
  }
  return { checked: { root, rel, abs: absOf(root, rel), realRoot }, created };
}

/**
 * Checks `rel` (checkRelativePath) and its existing parents once for a whole operation: the root
 * (cached realpath, revalidated by lstat), then one realpath of the parent compared with
 * `<real root>/<parent>`; only when that fails are the parents walked one by one (to name the
 * culprit, or to create missing ones with `createParents`). The final component is not examined.
 * Follow each change made through the result with `recheckPath`.
 * @throws PathError, UnsafePathError, NotADirectoryError, RootMissingError
 */
export async function checkPath(root: string, rel: string, options: CheckOptions = {}): Promise<CheckedPath> {
  return (await checkWithCreated(root, rel, options)).checked;
}

/**
 * Post-check after a change made through `c` (one realpath): the parent still resolves where it
 * did, so a directory swapped for a symlink during the change is reported, not passed silently.
 * Also a valid pre-check for the next change in the same operation.
 * @throws UnsafePathError, NotADirectoryError
 */
export async function recheckPath(c: CheckedPath, when = 'during the operation'): Promise<void> {
  await verifyParentReal(c.root, c.realRoot, c.rel, when);
}

/**
 * True when an existing parent of `rel` is a symlink, not a directory, or resolves anywhere but
 * `<root>/<parent>`: whatever lies at `rel` is then not part of the folder and must not be read
 * as if it were. False when every existing parent is a real directory inside `root`.
 * @throws PathError for a bad `rel`, RootMissingError when the root is gone.
 */
export async function isReachedThroughLink(root: string, rel: string, options: SafeOptions = {}): Promise<boolean> {
  try {
    await checkPath(root, rel, options);
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
  return (await checkWithCreated(root, rel, { ...options, createParents: mode })).created;
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
 * checkPath for the source of a rename: `fromAbsOrRel` is absolute inside `root` (e.g. a temp
 * file under `.systemsync/tmp`, which is allowed) or relative (checked with `options`).
 * @throws UnsafePathError for an absolute path outside the folder; as checkPath otherwise.
 */
export async function checkSource(root: string, fromAbsOrRel: string, options: CheckOptions = {}): Promise<CheckedPath> {
  return checkPath(root, sourceRel(root, fromAbsOrRel, options), { ...options, allowReserved: true });
}

/** Renames checked `from` to checked `to` (posix rename: replaces a file or symlink there), then rechecks both. */
export async function renameChecked(from: CheckedPath, to: CheckedPath): Promise<void> {
  fs.renameSync(from.abs, to.abs);
  await recheckPath(to);
  // Same root, checked a moment ago by the recheck of `to`: only the source's parents are walked.
  await verifyParentReal(from.root, from.realRoot, from.rel, 'during the operation', from.root === to.root && from.realRoot === to.realRoot);
}

/** Unlinks the checked path (a symlink itself, never its target), then rechecks it. */
export async function unlinkChecked(c: CheckedPath): Promise<void> {
  fs.unlinkSync(c.abs);
  await recheckPath(c);
}

/** Removes the checked empty directory (ENOTEMPTY with children, ENOTDIR for a symlink), then rechecks. */
export async function rmdirChecked(c: CheckedPath): Promise<void> {
  fs.rmdirSync(c.abs);
  await recheckPath(c);
}

/** Removes the file or symlink at `rel` (a symlink itself, never its target). */
export async function safeUnlink(root: string, rel: string, options: SafeOptions = {}): Promise<void> {
  await unlinkChecked(await checkPath(root, rel, options));
}

/** Removes the empty directory at `rel` (ENOTEMPTY if it has children, ENOTDIR for a symlink). */
export async function safeRmdir(root: string, rel: string, options: SafeOptions = {}): Promise<void> {
  await rmdirChecked(await checkPath(root, rel, options));
}

/** lstat of `rel` after the parent checks; null when nothing is there. Never follows a final symlink. */
export async function safeLstat(root: string, rel: string, options: SafeOptions = {}): Promise<Stats | null> {
  const c = await checkPath(root, rel, options);
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
  action: (fd: number) => void,
): Promise<boolean> {
  const c = await checkPath(root, rel, options);
  const st = fs.lstatSync(c.abs);
  if (!st.isFile() && !st.isDirectory()) return false;
  let fd: number;
  try {
    fd = fs.openSync(c.abs, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  } catch (err) {
    if (errnoCode(err) === 'ELOOP') return false; // swapped for a symlink since the lstat
    throw err;
  }
  try {
    const opened = fs.fstatSync(fd);
    if (!opened.isFile() && !opened.isDirectory()) return false;
    action(fd);
  } finally {
    fs.closeSync(fd);
  }
  await recheckPath(c);
  return true;
}

/**
 * Sets the permission bits of the file or directory at `rel` through a descriptor (never through
 * a symlink). Returns false, doing nothing, for a symlink or a special file.
 */
export async function safeChmod(root: string, rel: string, mode: number, options: SafeOptions = {}): Promise<boolean> {
  return withNoFollowHandle(root, rel, options, (fd) => fs.fchmodSync(fd, mode & 0o7777));
}

/**
 * Sets atime and mtime (integer milliseconds since the epoch) of the file or directory at `rel`
 * through a descriptor. Returns false, doing nothing, for a symlink or a special file.
 */
export async function safeUtimes(root: string, rel: string, atimeMs: number, mtimeMs: number, options: SafeOptions = {}): Promise<boolean> {
  return withNoFollowHandle(root, rel, options, (fd) => fs.futimesSync(fd, fsTimeOf(atimeMs), fsTimeOf(mtimeMs)));
}

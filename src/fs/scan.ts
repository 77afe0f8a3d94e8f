/**
 * What is on disk in a synced folder: lstat (never following symlinks), streaming sha256,
 * a deterministic tree walk, and an mtime setter whose value survives the round trip.
 */
import { createHash } from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import type { IgnoreMatcher } from '../core/ignore.js';
import { isReservedPath } from '../core/ignore.js';
import { permissionBits } from '../core/modes.js';
import { SyncError } from '../core/errors.js';
import { isSameFingerprint } from '../core/reconcile.js';
import type { Entry, StatFingerprint } from '../core/types.js';
import { fsTimeOf, lstatOrNull, mtimeOf } from './stat.js';

/** A path as found on disk: its entry plus the stat fingerprint (null for dirs and symlinks). */
export interface LocalState {
  entry: Entry;
  stat: StatFingerprint | null;
  /** Hard links of a regular file (its other names may be indexed too). */
  links?: number;
}

/** The hash of a file entry whose content has not been read yet (see `readLocal`'s `deferHash`). */
export const DEFERRED_HASH = '';

const HASH_CHUNK = 1024 * 1024;
/**
 * Small enough that the buffer of a small file comes from Node's shared Buffer pool: a 64 KiB
 * buffer per file, malloc'd and freed by the thousand during a scan, fragments the malloc heap,
 * which then stays larger.
 */
const MIN_HASH_CHUNK = 1024;
const HASH_TRIES = 3;

/** Absolute path of folder-relative `rel` under `root`. */
export function absPathOf(root: string, rel: string): string {
  return rel === '' ? root : `${root.endsWith('/') ? root.slice(0, -1) : root}/${rel}`;
}

/**
 * Streaming sha256 (lowercase hex) of a regular file, in bounded memory, and the number of
 * bytes hashed. Opens with O_NOFOLLOW: a symlink is an error (ELOOP), never followed.
 * Rejects with the fs error (ENOENT etc.) or an AbortError when `signal` fires.
 */
export async function hashFile(absPath: string, signal?: AbortSignal): Promise<{ hash: string; size: number }> {
  signal?.throwIfAborted();
  // O_NONBLOCK: a FIFO swapped in after the caller's lstat must not block the open.
  const handle = await fsp.open(absPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new SyncError('NOT_A_FILE', `${absPath}: not a regular file`);
    return await hashOpenFile(handle, st.size, signal);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * sha256 of an open file from its start to EOF, with plain reads into one buffer sized for the
 * file (`sizeHint` + 1, at least 1 KiB, at most 1 MiB): a small file costs two reads and no
 * stream machinery. The file may grow or shrink meanwhile; the bytes hashed are counted, not
 * assumed, and a read that fills the buffer doubles it (up to 1 MiB), so a file that was empty
 * when opened and grows while it is read is still read in large chunks.
 */
export async function hashOpenFile(handle: fsp.FileHandle, sizeHint: number, signal?: AbortSignal): Promise<{ hash: string; size: number }> {
  const hash = createHash('sha256');
  let buffer = Buffer.allocUnsafe(Math.max(MIN_HASH_CHUNK, Math.min(HASH_CHUNK, sizeHint + 1)));
  let size = 0;
  for (;;) {
    signal?.throwIfAborted();
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, size);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    size += bytesRead;
    if (bytesRead === buffer.length && buffer.length < HASH_CHUNK) buffer = Buffer.allocUnsafe(Math.min(HASH_CHUNK, buffer.length * 2));
  }
  return { hash: hash.digest('hex'), size };
}

/** Files up to this size are read and hashed synchronously, in one read (see hashSmallFile). */
export const SMALL_FILE = 256 * 1024;
let syncScratch: Buffer | null = null;

/**
 * hashFile for a file expected to be small: synchronous open, fstat, reads and close. A few
 * syscalls of microseconds each instead of a thread-pool round trip per call; a file that turns
 * out larger than SMALL_FILE is still read whole, in chunks, so the result is always right.
 * `inspect` sees the fstat of what was opened and throws to refuse it (default: not a regular file).
 */
export function hashSmallFile(absPath: string, inspect: (opened: fs.Stats) => void = requireRegularFile(absPath)): { hash: string; size: number } {
  const fd = fs.openSync(absPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    inspect(fs.fstatSync(fd));
    const hash = createHash('sha256');
    // Synchronous use only: one scratch buffer serves every call.
    syncScratch ??= Buffer.allocUnsafe(HASH_CHUNK);
    const buffer = syncScratch;
    let size = 0;
    for (;;) {
      const bytesRead = fs.readSync(fd, buffer, 0, buffer.length, size);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      size += bytesRead;
    }
    return { hash: hash.digest('hex'), size };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The whole content of a small regular file, read synchronously without following a final
 * symlink (O_NOFOLLOW) and without blocking on a FIFO (O_NONBLOCK). `inspect` sees the fstat of
 * what was opened and throws to refuse it (default: not a regular file). A file larger than
 * `maxSize` (when opened, or grown past it while read) throws SyncError 'TOO_LARGE'.
 */
export function readSmallFile(absPath: string, maxSize: number, inspect: (opened: fs.Stats) => void = requireRegularFile(absPath)): Buffer {
  const fd = fs.openSync(absPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    inspect(st);
    if (st.size > maxSize) throw new SyncError('TOO_LARGE', `${absPath}: larger than ${maxSize} bytes`);
    // One byte more than the file's size: the read that finds EOF needs room to tell.
    let buffer = Buffer.allocUnsafe(st.size + 1);
    let size = 0;
    for (;;) {
      if (size === buffer.length) {
        const bigger = Buffer.allocUnsafe(Math.min(maxSize + 1, buffer.length * 2));
        buffer.copy(bigger, 0, 0, size);
        buffer = bigger;
      }
      const bytesRead = fs.readSync(fd, buffer, size, buffer.length - size, size);
      if (bytesRead === 0) break;
      size += bytesRead;
      if (size > maxSize) throw new SyncError('TOO_LARGE', `${absPath}: grew past ${maxSize} bytes while read`);
    }
    return buffer.subarray(0, size);
  } finally {
    fs.closeSync(fd);
  }
}

function requireRegularFile(absPath: string): (opened: fs.Stats) => void {
  return (st) => {
    if (!st.isFile()) throw new SyncError('NOT_A_FILE', `${absPath}: not a regular file`);
  };
}

/** The cheap identity of a file (see StatFingerprint). */
export function fingerprint(st: fs.Stats): StatFingerprint {
  return { ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

/**
 * True when the file at `rel` is, by one lstat, exactly the file `recorded` describes (same
 * fingerprint): a watcher hint for it is the echo of our own write, not an edit. Never true for
 * directories, symlinks or records without a fingerprint (those are looked at in full).
 */
export function isRecordedFile(root: string, rel: string, recorded: { entry: Entry | null; stat: StatFingerprint | null } | null): boolean {
  if (recorded?.entry?.type !== 'file' || recorded.stat === null) return false;
  const st = lstatOrNull(absPathOf(root, rel));
  return st !== null && st.isFile() && isSameFingerprint(recorded.stat, fingerprint(st));
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * What is at `rel` under `root` now, by lstat (symlinks are read, never followed).
 * - null: nothing there (also when a parent is missing or is not a directory).
 * - 'unsupported': a socket, FIFO or device (the caller skips it with a warning).
 * - a file: its hash is taken from `knownHash` when `knownStat` equals the current fingerprint,
 *   else computed; if the file changes while being hashed (size, mtime or ctime moved), it is
 *   hashed again, up to 3 times, so that entry and stat describe the same content. A file that
 *   is still changing after that throws SyncError 'FILE_UNSTABLE' (retry later).
 *   With `deferHash` returning true for the fingerprint, the file is not read: its hash is
 *   DEFERRED_HASH and the caller must take it from a later read of the same fingerprint.
 * Other fs errors (EACCES...) are thrown as they are.
 */
export async function readLocal(
  root: string,
  rel: string,
  opts: { knownStat?: StatFingerprint | null; knownHash?: string | null; deferHash?: (fp: StatFingerprint) => boolean } = {},
): Promise<LocalState | null | 'unsupported'> {
  const abs = absPathOf(root, rel);
  let st = lstatOrNull(abs);
  if (st === null) return null;
  if (st.isSymbolicLink()) {
    let target: string;
    try {
      target = fs.readlinkSync(abs);
    } catch (err) {
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'EINVAL') return readLocal(root, rel, opts);
      throw err;
    }
    return { entry: { type: 'symlink', target }, stat: null };
  }
  // A directory's fingerprint serves its inode (rename detection); its mtime moves with its children.
  if (st.isDirectory()) return { entry: { type: 'dir', mode: permissionBits(st.mode) }, stat: fingerprint(st) };
  if (!st.isFile()) return 'unsupported';

  let fp = fingerprint(st);
  if (opts.knownHash != null && isSameFingerprint(opts.knownStat, fp)) {
    return { entry: fileEntry(st, opts.knownHash), stat: fp, links: st.nlink };
  }
  if (opts.deferHash?.(fp) === true) return { entry: fileEntry(st, DEFERRED_HASH), stat: fp, links: st.nlink };
  for (let attempt = 1; ; attempt++) {
    let hashed: { hash: string; size: number };
    try {
      hashed = st.size <= SMALL_FILE ? hashSmallFile(abs) : await hashFile(abs);
    } catch (err) {
      // Replaced by something else (a symlink: ELOOP) or removed while we looked: look again.
      const code = (err as NodeJS.ErrnoException).code;
      const replaced = code === 'ELOOP' || (err as SyncError).code === 'NOT_A_FILE';
      if ((isMissing(err) || replaced) && attempt < HASH_TRIES) return readLocal(root, rel, opts);
      if (isMissing(err)) return null;
      throw err;
    }
    const after = lstatOrNull(abs);
    if (after === null) return null;
    const fpAfter = fingerprint(after);
    if (after.isFile() && isSameFingerprint(fp, fpAfter) && hashed.size === after.size) {
      return { entry: fileEntry(after, hashed.hash), stat: fpAfter, links: after.nlink };
    }
    if (attempt >= HASH_TRIES) {
      throw new SyncError('FILE_UNSTABLE', `${abs}: still changing after ${HASH_TRIES} attempts to hash it`);
    }
    if (!after.isFile()) return readLocal(root, rel, opts);
    st = after;
    fp = fpAfter;
  }
}

function fileEntry(st: fs.Stats, hash: string): Entry {
  return { type: 'file', size: st.size, mtime: mtimeOf(st), mode: permissionBits(st.mode), hash };
}

/**
 * Sets the modification time (and access time) of the file at `absPath` to `mtimeMs`
 * (integer ms) so that `mtimeOf` reads back exactly `mtimeMs` (see `fsTimeOf`). Follows the path like utimes
 * (use it on regular files). Returns the lstat after setting, for the caller's fingerprint.
 * Values the file system cannot store (ext4: before 1901 or after 2446) are clamped by the
 * kernel; compare `mtimeOf(result)` if that matters.
 * @throws SyncError 'BAD_MTIME' when `mtimeMs` is not a safe integer; fs errors as they are.
 */
export async function setMtime(absPath: string, mtimeMs: number): Promise<fs.Stats> {
  const time = fsTimeOf(mtimeMs);
  await fsp.utimes(absPath, time, time);
  return fsp.lstat(absPath);
}

/** One path found by `walkTree`. */
export interface WalkItem {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  stat: fs.Stats;
}

/** A directory `walkTree` could not read; the walk goes on without its contents. */
export interface WalkProblem {
  path: string;
  error: Error;
}

const LSTAT_CHUNK = 128;

function typeOf(st: fs.Stats): WalkItem['type'] {
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  return 'other';
}

/**
 * lstat of many paths, null for vanished ones. Synchronous lstat in small chunks, yielding to
 * the event loop between chunks: it costs far less than fs.promises.lstat, which pays a threadpool
 * round trip per path, and blocks the loop for about a millisecond at a time.
 */
async function lstatMany(root: string, rels: readonly string[], onProblem: (problem: WalkProblem) => void): Promise<Array<fs.Stats | null>> {
  const out: Array<fs.Stats | null> = [];
  for (let i = 0; i < rels.length; i++) {
    if (i > 0 && i % LSTAT_CHUNK === 0) await new Promise((resolve) => setImmediate(resolve));
    const rel = rels[i] as string;
    try {
      out.push(fs.lstatSync(absPathOf(root, rel)));
    } catch (err) {
      if (!isMissing(err)) onProblem({ path: rel, error: err as Error });
      out.push(null);
    }
  }
  return out;
}

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Every path under `root` (or under the folder-relative dir `under`, which itself is not
 * yielded), pre-order: a directory comes before its children, names sorted by code unit.
 * Never follows symlinks. Skips `.systemsync` and ignored paths (an ignored directory is not
 * entered). Paths that vanish during the walk are skipped. A directory that cannot be read is
 * passed to `onProblem` (default: dropped) and the walk goes on; only a failure to read the
 * starting directory itself (other than ENOENT, which yields nothing) is thrown.
 */
export async function* walkTree(
  root: string,
  opts: { ignore: IgnoreMatcher; under?: string; onProblem?: (problem: WalkProblem) => void },
): AsyncGenerator<WalkItem> {
  const onProblem = opts.onProblem ?? (() => undefined);
  // A starting directory reached through a symlink (or swapped for one) lies outside the folder:
  // its names are not the folder's, so nothing is listed.
  if (opts.under !== undefined && opts.under !== '' && !isPlainDirectoryPath(root, opts.under)) return;
  // Explicit stack of sibling lists instead of nested generators (each level of `yield*`
  // would add a hop per item).
  const first = await readChildren(root, opts.under ?? '', true, opts.ignore, onProblem);
  const stack: Array<{ items: WalkItem[]; next: number }> = [{ items: first, next: 0 }];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1] as { items: WalkItem[]; next: number };
    if (frame.next >= frame.items.length) {
      stack.pop();
      continue;
    }
    const item = frame.items[frame.next++] as WalkItem;
    yield item;
    if (item.type === 'dir') {
      stack.push({ items: await readChildren(root, item.path, false, opts.ignore, onProblem), next: 0 });
    }
  }
}

/** Whether every component of the folder-relative `rel`, itself included, is a real directory (no symlink). */
function isPlainDirectoryPath(root: string, rel: string): boolean {
  let at = '';
  for (const part of rel.split('/')) {
    at = at === '' ? part : `${at}/${part}`;
    const st = lstatOrNull(absPathOf(root, at));
    if (st === null || !st.isDirectory()) return false;
  }
  return true;
}

/** The children of `dir`, sorted, lstat'ed, without vanished, reserved or ignored ones. */
async function readChildren(
  root: string,
  dir: string,
  isStart: boolean,
  ignore: IgnoreMatcher,
  onProblem: (problem: WalkProblem) => void,
): Promise<WalkItem[]> {
  let names: string[];
  try {
    names = await fsp.readdir(absPathOf(root, dir));
  } catch (err) {
    if (isMissing(err)) return [];
    if (isStart) throw err;
    onProblem({ path: dir, error: err as Error });
    return [];
  }
  names.sort(byCodeUnit);
  const rels = names.map((n) => (dir === '' ? n : `${dir}/${n}`)).filter((r) => !isReservedPath(r));
  const stats = await lstatMany(root, rels, onProblem);
  const items: WalkItem[] = [];
  for (let i = 0; i < rels.length; i++) {
    const st = stats[i];
    const rel = rels[i] as string;
    if (st === null || st === undefined) continue;
    const type = typeOf(st);
    if (ignore.isIgnored(rel, type === 'dir')) continue;
    items.push({ path: rel, type, stat: st });
  }
  return items;
}

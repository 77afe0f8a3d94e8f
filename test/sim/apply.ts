/**
 * The daemons' disk primitives (src/fs/apply.ts, src/fs/scan.ts readLocal, src/fs/safefs.ts parent
 * checks) over the in-memory file system. Each function is one atomic step of the model; the
 * shells yield between them, where the real code awaits.
 */
import type { Entry, FileEntry, StatFingerprint } from '../../src/core/types.js';
import { FsError, fingerprintOf, parentPath, type MemFs } from './fs.js';

export const MARKER = '.systemsync';
export const TMP = `${MARKER}/tmp`;
export const TRASH = `${MARKER}/trash`;

export function hashOf(data: string): string {
  return `#${data}`;
}

export interface LocalState {
  entry: Entry;
  stat: StatFingerprint | null;
  /** Hard links of a regular file. */
  links?: number;
}

/** readLocal: lstat, and the content hash unless the fingerprint is the known one. */
export function readLocal(fs: MemFs, p: string, known: { stat: StatFingerprint | null; hash: string | null } | null = null): LocalState | null {
  const st = fs.lstat(p);
  if (st === null) return null;
  if (st.kind === 'symlink') return { entry: { type: 'symlink', target: fs.readlink(p) }, stat: null };
  const fp = fingerprintOf(st);
  if (st.kind === 'dir') return { entry: { type: 'dir', mode: st.mode }, stat: fp };
  const same = known !== null && known.stat !== null && known.hash !== null && sameFp(known.stat, fp);
  const hash = same ? known.hash! : hashOf(fs.readFile(p));
  return { entry: { type: 'file', size: st.size, mtime: st.mtime, mode: st.mode, hash }, stat: fp, links: st.nlink };
}

export function sameFp(a: StatFingerprint | null | undefined, b: StatFingerprint | null | undefined): boolean {
  if (a == null || b == null) return false;
  return a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

/** isRecordedFile: a file whose fingerprint is exactly the recorded one. */
export function isRecordedFile(fs: MemFs, p: string, recorded: { entry: Entry | null; stat: StatFingerprint | null } | null): boolean {
  if (recorded?.entry?.type !== 'file' || recorded.stat === null) return false;
  const st = fs.lstat(p);
  return st !== null && st.kind === 'file' && sameFp(recorded.stat, fingerprintOf(st));
}

/** checkPath: every existing parent must be a real directory (never a link or file); missing ones are created when asked. */
export function checkParents(fs: MemFs, p: string, create: boolean): void {
  const missing: string[] = [];
  for (let dir = parentPath(p); dir !== ''; dir = parentPath(dir)) {
    const st = fs.lstat(dir);
    if (st === null) {
      // A missing parent under a non-directory: lstat of the parent's parent will say.
      missing.unshift(dir);
      continue;
    }
    if (st.kind !== 'dir') throw new FsError('UNSAFE_PATH', `${dir} is not a directory`);
    break;
  }
  if (missing.length === 0) return;
  // Walk from the top: a missing name may sit under a link or file further up.
  for (let dir = parentPath(missing[0]!); dir !== ''; dir = parentPath(dir)) {
    const st = fs.lstat(dir);
    if (st !== null && st.kind !== 'dir') throw new FsError('UNSAFE_PATH', `${dir} is not a directory`);
  }
  if (!create) throw new FsError('ENOENT', `${parentPath(p)} is missing`);
  for (const dir of missing) fs.mkdir(dir, 0o755);
}

/** True when some parent of `p` is not a real directory (isReachedThroughLink). */
export function isReachedThroughLink(fs: MemFs, p: string): boolean {
  for (let dir = parentPath(p); dir !== ''; dir = parentPath(dir)) {
    const st = fs.lstat(dir);
    if (st !== null && st.kind !== 'dir') return true;
  }
  return false;
}

export type BeforeReplace = (p: string) => void;

function clearForType(fs: MemFs, p: string, wanted: Entry['type'], beforeReplace?: BeforeReplace): boolean {
  const st = fs.lstat(p);
  if (st === null) return false;
  if (st.kind === 'dir') {
    if (wanted === 'dir') return true;
    fs.rmdir(p);
    return false;
  }
  if (st.kind === 'file') beforeReplace?.(p);
  if (wanted === 'dir') fs.unlink(p);
  return false;
}

export function newTempName(fs: MemFs, suffix: string): string {
  return `t${fs.nextTemp()}.${suffix}`;
}

/** Write content to a fresh temp file under `.systemsync/tmp`; returns its path. */
export function writeTemp(fs: MemFs, data: string, suffix: string): string {
  fs.mkdirp(TMP, 0o700);
  const p = `${TMP}/${newTempName(fs, suffix)}`;
  fs.writeFile(p, data, 0o600);
  return p;
}

export function placeFile(fs: MemFs, tmp: string, p: string, entry: FileEntry, beforeReplace?: BeforeReplace): StatFingerprint {
  fs.chmod(tmp, entry.mode);
  fs.utimes(tmp, entry.mtime);
  checkParents(fs, p, true);
  clearForType(fs, p, 'file', beforeReplace);
  fs.rename(tmp, p);
  return fingerprintOf(fs.lstat(p)!);
}

export function restampFile(fs: MemFs, p: string, entry: FileEntry): StatFingerprint {
  checkParents(fs, p, false);
  const st = fs.lstat(p);
  if (st === null || st.kind !== 'file' || st.size !== entry.size) throw new FsError('EBUSY', `${p}: changed on disk while its metadata was being set`);
  fs.chmod(p, entry.mode);
  fs.utimes(p, entry.mtime);
  return fingerprintOf(fs.lstat(p)!);
}

export function placeDir(fs: MemFs, p: string, mode: number, beforeReplace?: BeforeReplace): void {
  checkParents(fs, p, true);
  if (!clearForType(fs, p, 'dir', beforeReplace)) fs.mkdir(p, mode);
  if (fs.lstat(p)!.mode !== mode) fs.chmod(p, mode);
}

/** src/fs/apply.ts placeDirIfFree: mkdir only (EEXIST leaves a file or link alone: false). */
export function placeDirIfFree(fs: MemFs, p: string, mode: number): boolean {
  checkParents(fs, p, true);
  const st = fs.lstat(p);
  if (st === null) fs.mkdir(p, mode);
  else if (st.kind !== 'dir') return false;
  if (fs.lstat(p)!.mode !== mode) fs.chmod(p, mode);
  return true;
}

export function placeSymlink(fs: MemFs, p: string, target: string, beforeReplace?: BeforeReplace): void {
  checkParents(fs, p, true);
  clearForType(fs, p, 'symlink', beforeReplace);
  fs.mkdirp(TMP, 0o700);
  const tmp = `${TMP}/${newTempName(fs, 'link')}`;
  fs.symlink(target, tmp);
  fs.rename(tmp, p);
}

/** src/fs/apply.ts removeEmptyDir: one rmdir, only of an empty directory; whether the path is free. */
export function removeEmptyDir(fs: MemFs, p: string): boolean {
  checkParents(fs, p, false);
  const st = fs.lstat(p);
  if (st === null) return true;
  if (st.kind !== 'dir' || fs.children(p).length > 0) return false;
  fs.rmdir(p);
  return true;
}

/** Remove a file or link, or an empty directory; false when a directory still has children. */
export function removePath(fs: MemFs, p: string, beforeReplace?: BeforeReplace): boolean {
  checkParents(fs, p, false);
  const st = fs.lstat(p);
  if (st === null) return true;
  if (st.kind === 'dir') {
    if (fs.children(p).length > 0) return false;
    fs.rmdir(p);
    return true;
  }
  if (st.kind === 'file') beforeReplace?.(p);
  fs.unlink(p);
  return true;
}

export function movePath(fs: MemFs, from: string, to: string, beforeReplace?: BeforeReplace): void {
  checkParents(fs, from, false);
  checkParents(fs, to, true);
  // As fs/apply.ts: two names of one inode, where rename(2) does nothing: the source name goes.
  const moving = fs.lstat(from);
  if (moving !== null && moving.kind !== 'dir' && moving.ino === fs.lstat(to)?.ino) return fs.unlink(from);
  if (fs.lstat(to)?.kind === 'file') beforeReplace?.(to);
  fs.rename(from, to);
}

/** Remove everything under `.systemsync/tmp` (start-up). */
export function cleanTempDir(fs: MemFs): number {
  const names = fs.children(TMP);
  for (const p of names) fs.removeTree(p);
  return names.length;
}

/**
 * An in-memory POSIX file system, just rich enough for the simulation: regular files (with
 * hard links), directories, symlinks, modes, mtimes and ctimes, inode numbers, and rename with
 * Linux semantics. Paths are folder-relative ("a/b"); the root "" always exists. Nothing here
 * follows a symlink: a path under a symlink (or a file) does not exist.
 */
import type { StatFingerprint } from '../../src/core/types.js';

export type Inode =
  | { kind: 'file'; ino: number; data: string; mode: number; mtime: number; ctime: number }
  | { kind: 'dir'; ino: number; mode: number; ctime: number }
  | { kind: 'symlink'; ino: number; target: string; ctime: number };

export interface Stat {
  kind: Inode['kind'];
  ino: number;
  size: number;
  mode: number;
  mtime: number;
  ctime: number;
  nlink: number;
}

export class FsError extends Error {
  constructor(readonly code: string, message: string) {
    super(`${code}: ${message}`);
  }
}

export function parentPath(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

export function isUnder(p: string, dir: string): boolean {
  return dir === '' || p === dir || p.startsWith(`${dir}/`);
}

export class MemFs {
  private readonly names = new Map<string, number>();
  private readonly inodes = new Map<number, Inode>();
  /** Names per inode (hard links). */
  private readonly nlinks = new Map<number, number>();
  /** All names, sorted; rebuilt after a change of names. */
  private sorted: string[] | null = null;
  private temps = 0;

  constructor(
    private readonly clock: () => number,
    private readonly newIno: () => number,
  ) {}

  private node(p: string): Inode | null {
    if (p === '') return null;
    const ino = this.names.get(p);
    return ino === undefined ? null : this.inodes.get(ino)!;
  }

  /** True when every parent of `p` is a real directory (the root counts). */
  private parentsOk(p: string): boolean {
    for (let dir = parentPath(p); dir !== ''; dir = parentPath(dir)) {
      if (this.node(dir)?.kind !== 'dir') return false;
    }
    return true;
  }

  private requireParent(p: string): void {
    if (!this.parentsOk(p)) throw new FsError('ENOENT', `parent of ${p} is not a directory`);
  }

  private sortedNames(): string[] {
    this.sorted ??= [...this.names.keys()].sort();
    return this.sorted;
  }

  private addName(p: string, ino: number): void {
    this.sorted = null;
    this.names.set(p, ino);
    this.nlinks.set(ino, (this.nlinks.get(ino) ?? 0) + 1);
  }

  /** Drop one name; the inode goes with its last name. Returns true when it went. */
  private dropName(p: string): boolean {
    const ino = this.names.get(p)!;
    this.sorted = null;
    this.names.delete(p);
    const left = (this.nlinks.get(ino) ?? 1) - 1;
    if (left > 0) {
      this.nlinks.set(ino, left);
      return false;
    }
    this.nlinks.delete(ino);
    this.inodes.delete(ino);
    return true;
  }

  lstat(p: string): Stat | null {
    if (p === '') return { kind: 'dir', ino: 0, size: 0, mode: 0o755, mtime: 0, ctime: 0, nlink: 1 };
    if (!this.parentsOk(p)) return null;
    const n = this.node(p);
    if (n === null) return null;
    const nlink = this.nlinks.get(n.ino) ?? 1;
    return {
      kind: n.kind,
      ino: n.ino,
      size: n.kind === 'file' ? n.data.length : 0,
      mode: n.kind === 'symlink' ? 0o777 : n.mode,
      mtime: n.kind === 'file' ? n.mtime : 0,
      ctime: n.ctime,
      nlink,
    };
  }

  exists(p: string): boolean {
    return this.lstat(p) !== null;
  }

  readFile(p: string): string {
    const st = this.lstat(p);
    if (st === null) throw new FsError('ENOENT', p);
    const n = this.node(p)!;
    if (n.kind !== 'file') throw new FsError(n.kind === 'dir' ? 'EISDIR' : 'ELOOP', p);
    return n.data;
  }

  readlink(p: string): string {
    const n = this.lstat(p) === null ? null : this.node(p);
    if (n?.kind !== 'symlink') throw new FsError('EINVAL', p);
    return n.target;
  }

  /** Write in place (same inode: every hard link sees it), creating the file if missing. */
  writeFile(p: string, data: string, mode = 0o644, mtime?: number): void {
    this.requireParent(p);
    const n = this.node(p);
    const now = this.clock();
    if (n !== null && n.kind !== 'file') throw new FsError(n.kind === 'dir' ? 'EISDIR' : 'EEXIST', p);
    if (n !== null) {
      n.data = data;
      n.mtime = mtime ?? now;
      n.ctime = now;
      return;
    }
    const ino = this.newIno();
    this.inodes.set(ino, { kind: 'file', ino, data, mode, mtime: mtime ?? now, ctime: now });
    this.addName(p, ino);
  }

  appendFile(p: string, data: string): void {
    this.writeFile(p, this.readFile(p) + data);
  }

  mkdir(p: string, mode = 0o755): void {
    this.requireParent(p);
    if (this.node(p) !== null) throw new FsError('EEXIST', p);
    const ino = this.newIno();
    this.inodes.set(ino, { kind: 'dir', ino, mode, ctime: this.clock() });
    this.addName(p, ino);
  }

  /** mkdir -p (parents only through real directories). */
  mkdirp(p: string, mode = 0o755): void {
    if (p === '') return;
    this.mkdirp(parentPath(p), mode);
    const n = this.node(p);
    if (n?.kind === 'dir') return;
    if (n !== null) throw new FsError('ENOTDIR', p);
    this.mkdir(p, mode);
  }

  symlink(target: string, p: string): void {
    this.requireParent(p);
    if (this.node(p) !== null) throw new FsError('EEXIST', p);
    const ino = this.newIno();
    this.inodes.set(ino, { kind: 'symlink', ino, target, ctime: this.clock() });
    this.addName(p, ino);
  }

  link(existing: string, p: string): void {
    const st = this.lstat(existing);
    if (st === null) throw new FsError('ENOENT', existing);
    if (st.kind === 'dir') throw new FsError('EPERM', existing); // Linux: files and symlinks (not followed), never directories
    this.requireParent(p);
    if (this.node(p) !== null) throw new FsError('EEXIST', p);
    this.addName(p, st.ino);
    (this.inodes.get(st.ino) as Inode).ctime = this.clock();
  }

  children(dir: string): string[] {
    const out: string[] = [];
    for (const p of this.names.keys()) if (parentPath(p) === dir) out.push(p);
    return out.sort();
  }

  unlink(p: string): void {
    const st = this.lstat(p);
    if (st === null) throw new FsError('ENOENT', p);
    if (st.kind === 'dir') throw new FsError('EISDIR', p);
    if (!this.dropName(p)) (this.inodes.get(st.ino) as Inode).ctime = this.clock();
  }

  rmdir(p: string): void {
    const st = this.lstat(p);
    if (st === null) throw new FsError('ENOENT', p);
    if (st.kind !== 'dir') throw new FsError('ENOTDIR', p);
    if (this.children(p).length > 0) throw new FsError('ENOTEMPTY', p);
    this.dropName(p);
  }

  /** rm -r */
  removeTree(p: string): void {
    const st = this.lstat(p);
    if (st === null) return;
    if (st.kind === 'dir') for (const child of this.children(p)) this.removeTree(child);
    if (st.kind === 'dir') this.rmdir(p);
    else this.unlink(p);
  }

  /** rename(2): replaces a file or link at `to`, or an empty directory by a directory. */
  rename(from: string, to: string): void {
    const src = this.lstat(from);
    if (src === null) throw new FsError('ENOENT', from);
    this.requireParent(to);
    if (from === to) return;
    if (src.kind === 'dir' && isUnder(to, from)) throw new FsError('EINVAL', `${from} into itself`);
    const dst = this.lstat(to);
    if (dst !== null) {
      if (dst.ino === src.ino) return; // two names of one file: rename does nothing
      if (src.kind === 'dir' && dst.kind !== 'dir') throw new FsError('ENOTDIR', to);
      if (src.kind !== 'dir' && dst.kind === 'dir') throw new FsError('EISDIR', to);
      if (dst.kind === 'dir') this.rmdir(to);
      else this.unlink(to);
    }
    const moved: Array<[string, number]> = [];
    for (const [p, ino] of this.names) if (isUnder(p, from)) moved.push([p, ino]);
    this.sorted = null;
    for (const [p] of moved) this.names.delete(p);
    for (const [p, ino] of moved) this.names.set(to + p.slice(from.length), ino);
    (this.inodes.get(src.ino) as Inode).ctime = this.clock();
  }

  chmod(p: string, mode: number): void {
    const n = this.lstat(p) === null ? null : this.node(p);
    if (n === null) throw new FsError('ENOENT', p);
    if (n.kind === 'symlink') throw new FsError('EOPNOTSUPP', p);
    n.mode = mode;
    n.ctime = this.clock();
  }

  utimes(p: string, mtime: number): void {
    const n = this.lstat(p) === null ? null : this.node(p);
    if (n?.kind !== 'file') throw new FsError('ENOENT', p);
    n.mtime = mtime;
    n.ctime = this.clock();
  }

  /** A number for a fresh temp name (deterministic per file system). */
  nextTemp(): number {
    return ++this.temps;
  }

  /** Every synced path under `dir` (not `dir` itself, never `.systemsync/`), parents first, sorted. */
  walk(dir = ''): string[] {
    const out: string[] = [];
    for (const p of this.sortedNames()) {
      if (p === '.systemsync' || p.startsWith('.systemsync/')) continue;
      if (p !== dir && isUnder(p, dir) && this.lstat(p) !== null) out.push(p);
    }
    return out;
  }

  /** All names, including the ones under a symlink or file that cannot be reached (none: the model never creates them). */
  allPaths(): string[] {
    return [...this.sortedNames()];
  }
}

export function fingerprintOf(st: Stat): StatFingerprint {
  return { ino: st.ino, size: st.size, mtimeMs: st.mtime, ctimeMs: st.ctime };
}

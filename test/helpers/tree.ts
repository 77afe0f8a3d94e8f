/**
 * Real directory trees for tests: build one from a spec, snapshot one, compare two.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setMtime } from '../../src/fs/scan.js';

/** One node of a tree spec: file content, a symlink, an empty directory, or a file with metadata. */
export type TreeSpecItem =
  | string
  | Buffer
  | { symlink: string }
  | { dir: true; mode?: number }
  | { content: string | Buffer; mode?: number; mtime?: number | Date };

/** Folder-relative POSIX path → what is there. Parent directories are created as needed. */
export type TreeSpec = Record<string, TreeSpecItem>;

/** `mtime` is integer ms, rounded down: the value that travels (see mtimeOf in src/fs/scan.ts). */
export type TreeItem =
  | { type: 'file'; hash: string; size: number; mode: number; mtime: number }
  | { type: 'dir'; mode: number }
  | { type: 'symlink'; target: string };

const tempDirs: string[] = [];

/** A fresh directory under the OS temp dir, removed by `cleanupTempDirs()`. */
export async function tempDir(prefix = 'systemsync-test-'): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** Removes every directory made by `tempDir()`/`makeTree()` so far. Use in `afterAll`/`afterEach`. */
export async function cleanupTempDirs(): Promise<void> {
  const dirs = tempDirs.splice(0);
  await Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true, maxRetries: 3 })));
}

function checkSpecPath(rel: string): void {
  const parts = rel.split('/');
  if (rel === '' || rel.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new Error(`makeTree: bad path ${JSON.stringify(rel)} (expected a relative POSIX path without "." or ".." segments)`);
  }
}

/**
 * Builds `spec` in a fresh temp dir (or under `root`, which is created if needed) and returns the
 * root. Items are made in spec order, parents first; mtimes are set last so that creating
 * children does not disturb them (directory mtimes are not set).
 */
export async function makeTree(spec: TreeSpec, root?: string): Promise<string> {
  const base = root ?? (await tempDir());
  await fsp.mkdir(base, { recursive: true });
  const mtimes: Array<[string, Date]> = [];
  for (const [rel, item] of Object.entries(spec)) {
    checkSpecPath(rel);
    const abs = path.join(base, ...rel.split('/'));
    await fsp.mkdir(path.dirname(abs), { recursive: true });
    if (typeof item === 'string' || Buffer.isBuffer(item)) {
      await fsp.writeFile(abs, item);
    } else if ('symlink' in item) {
      await fsp.symlink(item.symlink, abs);
    } else if ('dir' in item) {
      await fsp.mkdir(abs, { recursive: true });
      if (item.mode !== undefined) await fsp.chmod(abs, item.mode);
    } else {
      await fsp.writeFile(abs, item.content);
      if (item.mode !== undefined) await fsp.chmod(abs, item.mode);
      if (item.mtime !== undefined) mtimes.push([abs, item.mtime instanceof Date ? item.mtime : new Date(item.mtime)]);
    }
  }
  // setMtime reads back exactly the integer ms that was set (plain utimes often gives ms - 0.001).
  for (const [abs, mtime] of mtimes) await setMtime(abs, Math.floor(mtime.getTime()));
  return base;
}

async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await fsp.open(file, 'r');
  try {
    for await (const chunk of handle.createReadStream()) hash.update(chunk as Buffer);
  } finally {
    await handle.close().catch(() => undefined);
  }
  return hash.digest('hex');
}

function isExcluded(rel: string, exclude: string[]): boolean {
  return exclude.some((e) => rel === e || rel.startsWith(e.endsWith('/') ? e : `${e}/`));
}

/**
 * Walks `root` with lstat (symlinks are recorded, never followed) and returns
 * relative POSIX path → item, sorted by path. `.systemsync` at the root is always skipped;
 * `exclude` lists more relative paths (a directory excludes everything under it).
 * Paths that vanish during the walk are skipped.
 */
/**
 * Hashes by (path, inode, size, mtime, ctime): polling a tree must not re-read every byte each
 * time. Any write moves ctime, so a changed file is always hashed again.
 */
const hashCache = new Map<string, { key: string; hash: string }>();
async function cachedHash(abs: string, st: import('node:fs').Stats): Promise<string> {
  const key = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  const known = hashCache.get(abs);
  if (known?.key === key) return known.hash;
  const hash = await hashFile(abs);
  const after = await fsp.lstat(abs);
  if (`${after.ino}:${after.size}:${after.mtimeMs}:${after.ctimeMs}` === key) hashCache.set(abs, { key, hash });
  return hash;
}

export async function snapshotTree(root: string, options: { exclude?: string[] } = {}): Promise<Map<string, TreeItem>> {
  const exclude = ['.systemsync', ...(options.exclude ?? [])];
  const items: Array<[string, TreeItem]> = [];
  const walk = async (relDir: string): Promise<void> => {
    let names: string[];
    try {
      names = await fsp.readdir(relDir === '' ? root : path.join(root, relDir));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && relDir !== '') return;
      throw err;
    }
    for (const name of names.sort()) {
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      if (isExcluded(rel, exclude)) continue;
      const abs = path.join(root, rel);
      try {
        const st = await fsp.lstat(abs);
        if (st.isSymbolicLink()) {
          items.push([rel, { type: 'symlink', target: await fsp.readlink(abs) }]);
        } else if (st.isDirectory()) {
          items.push([rel, { type: 'dir', mode: st.mode & 0o7777 }]);
          await walk(rel);
        } else if (st.isFile()) {
          const hash = await cachedHash(abs, st);
          items.push([rel, { type: 'file', hash, size: st.size, mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs) }]);
        } else {
          throw new Error(`snapshotTree: ${abs} is neither a file, a directory nor a symlink`);
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
    }
  };
  await walk('');
  items.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return new Map(items);
}

function describeItem(item: TreeItem): string {
  switch (item.type) {
    case 'file':
      return `file (${item.size} bytes, mode ${item.mode.toString(8)}, mtime ${item.mtime}, sha256 ${item.hash.slice(0, 12)})`;
    case 'dir':
      return `dir (mode ${item.mode.toString(8)})`;
    case 'symlink':
      return `symlink -> ${item.target}`;
  }
}

/**
 * Human-readable differences between two snapshots; empty means identical.
 * Compares type, file content/size/mode/mtime, directory mode and symlink target
 * (not directory mtimes).
 */
export function diffTrees(a: Map<string, TreeItem>, b: Map<string, TreeItem>, names: [string, string] = ['a', 'b']): string[] {
  const [na, nb] = names;
  const out: string[] = [];
  const paths = [...new Set([...a.keys(), ...b.keys()])].sort();
  for (const p of paths) {
    const x = a.get(p);
    const y = b.get(p);
    if (x === undefined) {
      out.push(`${p}: only in ${nb}: ${describeItem(y as TreeItem)}`);
      continue;
    }
    if (y === undefined) {
      out.push(`${p}: only in ${na}: ${describeItem(x)}`);
      continue;
    }
    if (x.type !== y.type) {
      out.push(`${p}: type differs: ${na} has ${describeItem(x)}, ${nb} has ${describeItem(y)}`);
      continue;
    }
    if (x.type === 'file' && y.type === 'file') {
      if (x.hash !== y.hash || x.size !== y.size) {
        out.push(`${p}: content differs: ${na} ${x.size} bytes sha256 ${x.hash.slice(0, 12)}, ${nb} ${y.size} bytes sha256 ${y.hash.slice(0, 12)}`);
      }
      if (x.mode !== y.mode) out.push(`${p}: mode differs: ${na} ${x.mode.toString(8)}, ${nb} ${y.mode.toString(8)}`);
      if (x.mtime !== y.mtime) {
        out.push(`${p}: mtime differs: ${na} ${x.mtime} (${new Date(x.mtime).toISOString()}), ${nb} ${y.mtime} (${new Date(y.mtime).toISOString()})`);
      }
    } else if (x.type === 'dir' && y.type === 'dir') {
      if (x.mode !== y.mode) out.push(`${p}: mode differs: ${na} ${x.mode.toString(8)}, ${nb} ${y.mode.toString(8)}`);
    } else if (x.type === 'symlink' && y.type === 'symlink') {
      if (x.target !== y.target) out.push(`${p}: symlink target differs: ${na} -> ${x.target}, ${nb} -> ${y.target}`);
    }
  }
  return out;
}

/**
 * Throws an assertion error listing every difference if the two snapshots differ.
 * Accepts snapshots or root paths (which are snapshotted).
 */
export async function expectSameTree(
  a: Map<string, TreeItem> | string,
  b: Map<string, TreeItem> | string,
  options: { exclude?: string[] } = {},
): Promise<void> {
  const sa = typeof a === 'string' ? await snapshotTree(a, options) : a;
  const sb = typeof b === 'string' ? await snapshotTree(b, options) : b;
  const names: [string, string] = [typeof a === 'string' ? a : 'a', typeof b === 'string' ? b : 'b'];
  const diff = diffTrees(sa, sb, names);
  if (diff.length > 0) {
    throw new Error(`trees differ (${diff.length} difference${diff.length === 1 ? '' : 's'}):\n  ${diff.join('\n  ')}`);
  }
}

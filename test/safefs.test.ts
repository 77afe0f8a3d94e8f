import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PathError } from '../src/core/paths.js';
import {
  NotADirectoryError,
  checkPath,
  recheckPath,
  RootMissingError,
  UnsafePathError,
  ensureParentDirs,
  checkSource,
  isReachedThroughLink,
  renameChecked,
  safeChmod,
  safeLstat,
  safeRmdir,
  safeUnlink,
  safeUtimes,
  type SafeOptions,
} from '../src/fs/safefs.js';
import { cleanupTempDirs, makeTree, snapshotTree, tempDir } from './helpers/tree.js';
import { rejection } from './helpers/wait.js';

afterEach(cleanupTempDirs);

// The operations below are built here from the product's own primitives (checkPath, checkSource,
// renameChecked, recheckPath), the way fs/apply.ts and fs/place.ts use them; the product has no
// one-call form of them.

/** `<root>/<rel>` after the parent checks. */
async function resolveInside(root: string, rel: string, options: SafeOptions = {}): Promise<string> {
  return (await checkPath(root, rel, options)).abs;
}

/** Renames `fromAbsOrRel` to `toRel`, both ends checked before and after. */
async function safeRename(root: string, fromAbsOrRel: string, toRel: string, options: SafeOptions = {}): Promise<void> {
  const from = await checkSource(root, fromAbsOrRel, options);
  const to = await checkPath(root, toRel, { ...options, sameOperationAs: from });
  await renameChecked(from, to);
}

/** Creates the directory `rel` with `mode`; false if a directory was already there. */
async function safeMkdir(root: string, rel: string, mode = 0o755, options: SafeOptions = {}): Promise<boolean> {
  const c = await checkPath(root, rel, options);
  try {
    fs.mkdirSync(c.abs, { mode });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !fs.lstatSync(c.abs).isDirectory()) throw err;
    return false;
  }
  await recheckPath(c);
  await safeChmod(root, rel, mode, options);
  return true;
}

/** Creates a symlink at `rel` pointing at `target`, its parents checked before and after. */
async function safeSymlink(root: string, rel: string, target: string, options: SafeOptions = {}): Promise<void> {
  const c = await checkPath(root, rel, options);
  fs.symlinkSync(target, c.abs);
  await recheckPath(c);
}

/** A folder root and an "outside" directory next to it, both fresh. */
async function fixture(spec: Parameters<typeof makeTree>[0] = {}): Promise<{ root: string; outside: string }> {
  const base = await tempDir();
  const root = await makeTree(spec, path.join(base, 'root'));
  const outside = await makeTree({ 'keep.txt': 'outside' }, path.join(base, 'outside'));
  return { root, outside };
}

async function expectOutsideUntouched(outside: string): Promise<void> {
  expect([...(await snapshotTree(outside)).keys()]).toEqual(['keep.txt']);
  expect(await fsp.readFile(path.join(outside, 'keep.txt'), 'utf8')).toBe('outside');
}

describe('resolveInside', () => {
  it('returns the absolute path for plain paths, existing or not', async () => {
    const { root } = await fixture({ 'a/b.txt': 'x' });
    expect(await resolveInside(root, 'a/b.txt')).toBe(path.join(root, 'a', 'b.txt'));
    expect(await resolveInside(root, 'a/new/deeper/c')).toBe(path.join(root, 'a/new/deeper/c'));
  });

  it('allows a final symlink (it is not followed here)', async () => {
    const { root, outside } = await fixture({ dir: { dir: true } });
    await fsp.symlink(outside, path.join(root, 'dir', 'link'));
    expect(await resolveInside(root, 'dir/link')).toBe(path.join(root, 'dir', 'link'));
  });

  it.each([
    { rel: '../x', reason: 'dot-dot segment' },
    { rel: '/etc/passwd', reason: 'absolute' },
    { rel: '.systemsync/tmp/x', reason: 'reserved' },
    { rel: 'a\0b', reason: 'NUL byte' },
  ])('refuses $rel ($reason)', async ({ rel, reason }) => {
    const { root } = await fixture();
    const err = await rejection(resolveInside(root, rel));
    expect(err).toBeInstanceOf(PathError);
    expect((err as PathError).reason).toBe(reason);
  });

  it('refuses a symlink in the middle of the path', async () => {
    const { root, outside } = await fixture();
    await fsp.symlink(outside, path.join(root, 'a'));
    const err = await rejection(resolveInside(root, 'a/x'));
    expect(err).toBeInstanceOf(UnsafePathError);
    expect(err.code).toBe('UNSAFE_PATH');
    expect(err.message).toContain('"a" is a symlink');
  });

  it('refuses a symlink to a directory inside the folder too', async () => {
    const { root } = await fixture({ 'real/f': 'x' });
    await fsp.symlink('real', path.join(root, 'alias'));
    expect((await rejection(resolveInside(root, 'alias/f'))).code).toBe('UNSAFE_PATH');
  });

  it('reports a file standing where a parent directory should be', async () => {
    const { root } = await fixture({ a: 'file' });
    const err = await rejection(resolveInside(root, 'a/b'));
    expect(err).toBeInstanceOf(NotADirectoryError);
    expect(err.code).toBe('NOT_A_DIRECTORY');
  });

  it('reports a missing root', async () => {
    const base = await tempDir();
    const err = await rejection(resolveInside(path.join(base, 'gone'), 'x'));
    expect(err).toBeInstanceOf(RootMissingError);
    expect(err.code).toBe('ROOT_MISSING');
  });

  it('accepts a root that is itself a symlink to a directory', async () => {
    const { root } = await fixture({ 'a/b': 'x' });
    const alias = path.join(path.dirname(root), 'alias');
    await fsp.symlink(root, alias);
    expect(await resolveInside(alias, 'a/b')).toBe(path.join(alias, 'a', 'b'));
    await safeRename(alias, 'a/b', 'a/c');
    expect(await fsp.readFile(path.join(root, 'a', 'c'), 'utf8')).toBe('x');
  });
});

describe('ensureParentDirs', () => {
  it('creates missing parents one by one and lists them', async () => {
    const { root } = await fixture({ a: { dir: true } });
    expect(await ensureParentDirs(root, 'a/b/c/file.txt')).toEqual(['a/b', 'a/b/c']);
    expect((await fsp.lstat(path.join(root, 'a/b/c'))).isDirectory()).toBe(true);
    expect(await ensureParentDirs(root, 'a/b/c/file.txt')).toEqual([]);
  });

  it('refuses to create below a planted symlink and creates nothing outside', async () => {
    const { root, outside } = await fixture();
    await fsp.symlink(outside, path.join(root, 'a'));
    expect((await rejection(ensureParentDirs(root, 'a/b/c/x'))).code).toBe('UNSAFE_PATH');
    await expectOutsideUntouched(outside);
  });

  it('refuses a dangling symlink as a parent', async () => {
    const { root, outside } = await fixture();
    await fsp.symlink(path.join(outside, 'not-yet'), path.join(root, 'a'));
    expect((await rejection(ensureParentDirs(root, 'a/x'))).code).toBe('UNSAFE_PATH');
    await expectOutsideUntouched(outside);
  });
});

describe('writes through a planted symlink are refused', () => {
  it('safeRename into a/x where a -> outside', async () => {
    const { root, outside } = await fixture({ 'src.txt': 'payload' });
    await fsp.symlink(outside, path.join(root, 'a'));
    expect((await rejection(safeRename(root, 'src.txt', 'a/x'))).code).toBe('UNSAFE_PATH');
    await expectOutsideUntouched(outside);
    expect(await fsp.readFile(path.join(root, 'src.txt'), 'utf8')).toBe('payload');
  });

  it('safeRename from a/keep.txt where a -> outside (moving a file out of outside)', async () => {
    const { root, outside } = await fixture();
    await fsp.symlink(outside, path.join(root, 'a'));
    expect((await rejection(safeRename(root, 'a/keep.txt', 'stolen.txt'))).code).toBe('UNSAFE_PATH');
    await expectOutsideUntouched(outside);
  });

  it('safeUnlink, safeMkdir, safeSymlink, safeRmdir, safeChmod, safeUtimes below a symlink', async () => {
    const { root, outside } = await fixture();
    await fsp.symlink(outside, path.join(root, 'a'));
    await fsp.mkdir(path.join(outside, 'emptydir'));
    const attempts = [
      () => safeUnlink(root, 'a/keep.txt'),
      () => safeMkdir(root, 'a/newdir'),
      () => safeSymlink(root, 'a/newlink', '/etc'),
      () => safeRmdir(root, 'a/emptydir'),
      () => safeChmod(root, 'a/keep.txt', 0o777),
      () => safeUtimes(root, 'a/keep.txt', 0, 0),
      () => safeLstat(root, 'a/keep.txt'),
    ];
    for (const attempt of attempts) expect((await rejection(attempt())).code).toBe('UNSAFE_PATH');
    await fsp.rmdir(path.join(outside, 'emptydir'));
    await expectOutsideUntouched(outside);
    const st = await fsp.stat(path.join(outside, 'keep.txt'));
    expect(st.mode & 0o777).not.toBe(0o777);
    expect(st.mtimeMs).not.toBe(0);
  });

  it('a directory swapped for a symlink between calls is refused', async () => {
    const { root, outside } = await fixture({ 'a/old.txt': 'x', 'new.txt': 'payload' });
    expect(await resolveInside(root, 'a/x')).toBe(path.join(root, 'a', 'x'));
    await fsp.rename(path.join(root, 'a'), path.join(root, 'a-moved'));
    await fsp.symlink(outside, path.join(root, 'a'));
    expect((await rejection(safeRename(root, 'new.txt', 'a/x'))).code).toBe('UNSAFE_PATH');
    expect((await rejection(ensureParentDirs(root, 'a/x'))).code).toBe('UNSAFE_PATH');
    await expectOutsideUntouched(outside);
  });

  it('a symlink deeper in the path (a/b -> outside) is refused', async () => {
    const { root, outside } = await fixture({ 'a/f': 'x', 'src.txt': 'payload' });
    await fsp.symlink(outside, path.join(root, 'a', 'b'));
    expect((await rejection(safeRename(root, 'src.txt', 'a/b/c/d'))).code).toBe('UNSAFE_PATH');
    await expectOutsideUntouched(outside);
  });
});

describe('the final component is never followed', () => {
  it('safeRename over a symlink replaces the link, not its target', async () => {
    const { root, outside } = await fixture({ 'new.txt': 'payload' });
    await fsp.symlink(path.join(outside, 'keep.txt'), path.join(root, 'target'));
    await safeRename(root, 'new.txt', 'target');
    const st = await fsp.lstat(path.join(root, 'target'));
    expect(st.isFile()).toBe(true);
    expect(await fsp.readFile(path.join(root, 'target'), 'utf8')).toBe('payload');
    await expectOutsideUntouched(outside);
  });

  it('safeRename from an absolute temp file under .systemsync/tmp', async () => {
    const { root } = await fixture({ '.systemsync/tmp/abc.part': 'data' });
    await ensureParentDirs(root, 'd/e/f.txt');
    await safeRename(root, path.join(root, '.systemsync', 'tmp', 'abc.part'), 'd/e/f.txt');
    expect(await fsp.readFile(path.join(root, 'd/e/f.txt'), 'utf8')).toBe('data');
  });

  it('safeRename refuses an absolute source outside the folder', async () => {
    const { root, outside } = await fixture();
    expect((await rejection(safeRename(root, path.join(outside, 'keep.txt'), 'x'))).code).toBe('UNSAFE_PATH');
    expect((await rejection(safeRename(root, path.join(root, '..', 'outside', 'keep.txt'), 'x'))).code).toBe('UNSAFE_PATH');
    await expectOutsideUntouched(outside);
  });

  it('safeRename refuses a reserved destination unless asked', async () => {
    const { root } = await fixture({ 'f.txt': 'x', '.systemsync/trash/t1': { dir: true } });
    expect(await rejection(safeRename(root, 'f.txt', '.systemsync/trash/t1/f.txt'))).toBeInstanceOf(PathError);
    await safeRename(root, 'f.txt', '.systemsync/trash/t1/f.txt', { allowReserved: true });
    expect(await fsp.readFile(path.join(root, '.systemsync/trash/t1/f.txt'), 'utf8')).toBe('x');
  });

  it('safeUnlink removes a symlink, not its target', async () => {
    const { root, outside } = await fixture();
    await fsp.symlink(path.join(outside, 'keep.txt'), path.join(root, 'link'));
    await safeUnlink(root, 'link');
    expect(await safeLstat(root, 'link')).toBeNull();
    await expectOutsideUntouched(outside);
  });

  it('safeRmdir refuses a symlink to a directory (ENOTDIR) and leaves the target', async () => {
    const { root, outside } = await fixture();
    await fsp.mkdir(path.join(outside, 'emptydir'));
    await fsp.symlink(path.join(outside, 'emptydir'), path.join(root, 'link'));
    expect((await rejection(safeRmdir(root, 'link'))).code).toBe('ENOTDIR');
    expect((await fsp.lstat(path.join(outside, 'emptydir'))).isDirectory()).toBe(true);
  });

  it('safeChmod and safeUtimes skip a symlink and leave its target alone', async () => {
    const { root, outside } = await fixture();
    await fsp.chmod(path.join(outside, 'keep.txt'), 0o600);
    const before = await fsp.stat(path.join(outside, 'keep.txt'));
    await fsp.symlink(path.join(outside, 'keep.txt'), path.join(root, 'link'));
    expect(await safeChmod(root, 'link', 0o777)).toBe(false);
    expect(await safeUtimes(root, 'link', 1000, 1000)).toBe(false);
    const after = await fsp.stat(path.join(outside, 'keep.txt'));
    expect(after.mode & 0o7777).toBe(0o600);
    expect(after.mtimeMs).toBe(before.mtimeMs);
  });

  it('safeChmod and safeUtimes work on files and directories', async () => {
    const { root } = await fixture({ 'd/f.txt': 'x' });
    expect(await safeChmod(root, 'd/f.txt', 0o640)).toBe(true);
    expect(await safeUtimes(root, 'd/f.txt', 1_600_000_000_000, 1_600_000_000_123)).toBe(true);
    expect(await safeChmod(root, 'd', 0o750)).toBe(true);
    const st = await fsp.lstat(path.join(root, 'd/f.txt'));
    expect(st.mode & 0o7777).toBe(0o640);
    expect(Math.floor(st.mtimeMs)).toBe(1_600_000_000_123);
    expect((await fsp.lstat(path.join(root, 'd'))).mode & 0o7777).toBe(0o750);
  });

  it('safeUtimes keeps exact milliseconds, negative ones too', async () => {
    const { root } = await fixture({ f: 'x' });
    for (const ms of [1_600_000_000_123, 1_700_000_000_999, 1_000, -1_234, 0]) {
      await safeUtimes(root, 'f', ms, ms);
      expect(Math.floor((await fsp.lstat(path.join(root, 'f'))).mtimeMs)).toBe(ms);
    }
  });

  it('safeChmod skips a FIFO without blocking', async () => {
    const { root } = await fixture();
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [path.join(root, 'fifo')]);
    expect(await safeChmod(root, 'fifo', 0o600)).toBe(false);
  });
});

describe('plain operations', () => {
  it('safeMkdir creates with the exact mode and reports an existing directory', async () => {
    const { root } = await fixture();
    expect(await safeMkdir(root, 'x', 0o705)).toBe(true);
    expect((await fsp.lstat(path.join(root, 'x'))).mode & 0o7777).toBe(0o705);
    expect(await safeMkdir(root, 'x', 0o700)).toBe(false);
  });

  it('safeMkdir refuses to treat a symlink to a directory as the directory', async () => {
    const { root, outside } = await fixture();
    await fsp.symlink(outside, path.join(root, 'x'));
    expect((await rejection(safeMkdir(root, 'x'))).code).toBe('EEXIST');
  });

  it('safeSymlink stores any target text, and refuses an existing path', async () => {
    const { root } = await fixture({ taken: 'x' });
    await safeSymlink(root, 'l', '../../../etc/passwd');
    expect(await fsp.readlink(path.join(root, 'l'))).toBe('../../../etc/passwd');
    expect((await rejection(safeSymlink(root, 'taken', 'y'))).code).toBe('EEXIST');
  });

  it('safeRmdir reports a non-empty directory with ENOTEMPTY', async () => {
    const { root } = await fixture({ 'd/f': 'x', e: { dir: true } });
    expect((await rejection(safeRmdir(root, 'd'))).code).toBe('ENOTEMPTY');
    await safeRmdir(root, 'e');
    expect(await safeLstat(root, 'e')).toBeNull();
  });

  it('names with newlines and unicode work end to end', async () => {
    const { root } = await fixture({ 'src': 'x' });
    await ensureParentDirs(root, 'caf\u00e9/line\nbreak');
    await safeRename(root, 'src', 'caf\u00e9/line\nbreak');
    expect(await fsp.readFile(path.join(root, 'caf\u00e9', 'line\nbreak'), 'utf8')).toBe('x');
  });
});

describe('the cached folder root', () => {
  it('notices a root symlink retargeted to another directory between two calls', async () => {
    const base = await tempDir();
    const first = await makeTree({ 'a/old.txt': 'first' }, path.join(base, 'first'));
    const second = await makeTree({ 'a/old.txt': 'second', 'src.txt': 'payload' }, path.join(base, 'second'));
    const alias = path.join(base, 'alias');
    await fsp.symlink(first, alias);
    expect((await checkPath(alias, 'a/x')).realRoot).toBe(first);
    await fsp.rm(alias);
    await fsp.symlink(second, alias);
    expect((await checkPath(alias, 'a/x')).realRoot).toBe(second);
    await safeRename(alias, 'src.txt', 'a/x');
    expect(await fsp.readFile(path.join(second, 'a', 'x'), 'utf8')).toBe('payload');
    expect([...(await snapshotTree(first)).keys()].sort()).toEqual(['a', 'a/old.txt']);
  });

  it('notices a root directory swapped for another one whose parent is a symlink elsewhere', async () => {
    const base = await tempDir();
    const realA = await makeTree({ 'root/d/keep': 'a' }, path.join(base, 'A'));
    const realB = await makeTree({ 'root/d/keep': 'b', 'root/src.txt': 'payload' }, path.join(base, 'B'));
    const via = path.join(base, 'via');
    await fsp.symlink(realA, via);
    const root = path.join(via, 'root');
    expect((await checkPath(root, 'd/x')).realRoot).toBe(path.join(realA, 'root'));
    await fsp.rm(via);
    await fsp.symlink(realB, via);
    await safeRename(root, 'src.txt', 'd/x');
    expect(await fsp.readFile(path.join(realB, 'root', 'd', 'x'), 'utf8')).toBe('payload');
    expect([...(await snapshotTree(path.join(realA, 'root'))).keys()].sort()).toEqual(['d', 'd/keep']);
  });

  it('refuses a root that was a directory and has been replaced by a symlink', async () => {
    const { root, outside } = await fixture({ 'a/f': 'x', 'src.txt': 'payload' });
    await resolveInside(root, 'a/f');
    await fsp.rename(root, `${root}-moved`);
    await fsp.symlink(outside, root);
    for (const attempt of [
      () => resolveInside(root, 'x'),
      () => ensureParentDirs(root, 'a/b/x'),
      () => safeSymlink(root, 'newlink', '/etc'),
      () => safeUnlink(root, 'keep.txt'),
    ]) {
      const err = await rejection(attempt());
      expect(err).toBeInstanceOf(UnsafePathError);
      expect(err.message).toContain('replaced by a symlink');
    }
    await expectOutsideUntouched(outside);
  });

  it('reports a root that disappeared after it was cached', async () => {
    const { root } = await fixture({ f: 'x' });
    await resolveInside(root, 'f');
    await fsp.rm(root, { recursive: true });
    expect((await rejection(resolveInside(root, 'f'))).code).toBe('ROOT_MISSING');
    await fsp.writeFile(root, 'now a file');
    expect((await rejection(resolveInside(root, 'f'))).code).toBe('ROOT_MISSING');
  });
});

describe('checkPath and recheckPath', () => {
  it('creates missing parents on request and checks once for a whole operation', async () => {
    const { root } = await fixture({ a: { dir: true } });
    const c = await checkPath(root, 'a/b/c/f.txt', { createParents: 0o755 });
    expect(c.abs).toBe(path.join(root, 'a/b/c/f.txt'));
    expect((await fsp.lstat(path.join(root, 'a/b/c'))).isDirectory()).toBe(true);
    await recheckPath(c);
  });

  it('recheckPath reports a parent swapped for a symlink after the check', async () => {
    const { root, outside } = await fixture({ 'a/f': 'x' });
    const c = await checkPath(root, 'a/f');
    await fsp.rename(path.join(root, 'a'), path.join(root, 'a-moved'));
    await fsp.symlink(outside, path.join(root, 'a'));
    const err = await rejection(recheckPath(c));
    expect(err).toBeInstanceOf(UnsafePathError);
    expect(err.message).toContain('"a" is a symlink');
  });

  it('recheckPath reports a top-level path whose root moved after the check', async () => {
    const base = await tempDir();
    const first = await makeTree({ f: 'x' }, path.join(base, 'first'));
    const second = await makeTree({ f: 'y' }, path.join(base, 'second'));
    const alias = path.join(base, 'alias');
    await fsp.symlink(first, alias);
    const c = await checkPath(alias, 'f');
    await fsp.rm(alias);
    await fsp.symlink(second, alias);
    expect((await rejection(recheckPath(c))).code).toBe('UNSAFE_PATH');
  });

  it('refuses a parent that resolves elsewhere inside the folder through a deeper link', async () => {
    const { root } = await fixture({ 'real/sub/f': 'x' });
    await fsp.symlink('real/sub', path.join(root, 'alias'));
    expect((await rejection(checkPath(root, 'alias/f'))).code).toBe('UNSAFE_PATH');
    expect((await rejection(checkPath(root, 'alias/new/f', { createParents: 0o755 }))).code).toBe('UNSAFE_PATH');
    expect(await fsp.readdir(path.join(root, 'real', 'sub'))).toEqual(['f']);
  });

  it('isReachedThroughLink: false for real parents (existing or not), true below a link or a file', async () => {
    const { root, outside } = await fixture({ 'a/b/f': 'x', file: 'y' });
    await fsp.symlink(outside, path.join(root, 'link'));
    expect(await isReachedThroughLink(root, 'a/b/f')).toBe(false);
    expect(await isReachedThroughLink(root, 'a/missing/deeper/f')).toBe(false);
    expect(await isReachedThroughLink(root, 'link/keep.txt')).toBe(true);
    expect(await isReachedThroughLink(root, 'file/x')).toBe(true);
  });
});

// src/fs/apply.ts on real temp directories: how a pulled or committed file, directory, symlink,
// delete and rename lands on disk, what is handed to beforeReplace first, and that nothing is
// written through a symlink or left behind in .systemsync/tmp.
import { afterAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  cleanTempDir,
  movePath,
  newTempName,
  placeDir,
  placeFile,
  placeSymlink,
  removePath,
  restampFile,
  tmpDirOf,
  type BeforeReplace,
} from '../src/fs/apply.js';
import { mtimeOf } from '../src/fs/stat.js';
import type { FileEntry } from '../src/core/types.js';
import { cleanupTempDirs, makeTree, tempDir } from './helpers/tree.js';

afterAll(cleanupTempDirs);

const MTIME = 1_700_000_123_456;

function fileEntry(text: string, mode = 0o644): FileEntry {
  return { type: 'file', size: Buffer.byteLength(text), mtime: MTIME, mode, hash: crypto.createHash('sha256').update(text).digest('hex') };
}

/** A temp file holding `text` in the folder's .systemsync/tmp, as a verified download leaves it. */
function downloaded(root: string, text: string): string {
  fs.mkdirSync(tmpDirOf(root), { recursive: true });
  const tmp = path.join(tmpDirOf(root), newTempName('down'));
  fs.writeFileSync(tmp, text);
  return tmp;
}

/** A beforeReplace that records each call with the content the file had at that moment. */
function recorder(): { calls: Array<{ rel: string; content: string }>; beforeReplace: BeforeReplace } {
  const calls: Array<{ rel: string; content: string }> = [];
  return { calls, beforeReplace: async (abs, rel) => void calls.push({ rel, content: fs.readFileSync(abs, 'utf8') }) };
}

const read = (root: string, rel: string): string => fs.readFileSync(path.join(root, rel), 'utf8');
const modeOf = (root: string, rel: string): number => fs.lstatSync(path.join(root, rel)).mode & 0o7777;
const exists = (root: string, rel: string): boolean => fs.existsSync(path.join(root, rel)) || isLink(root, rel);
const isLink = (root: string, rel: string): boolean => {
  try {
    return fs.lstatSync(path.join(root, rel)).isSymbolicLink();
  } catch {
    return false;
  }
};
const tmpLeftovers = (root: string): string[] => (fs.existsSync(tmpDirOf(root)) ? fs.readdirSync(tmpDirOf(root)) : []);

describe('placeFile', () => {
  it('puts a downloaded file at a new path, parents created, with the mode and mtime of its entry', async () => {
    const root = await makeTree({ 'other.txt': 'x' });
    const tmp = downloaded(root, 'pulled');
    const fp = await placeFile(root, tmp, 'a/b/new.txt', fileEntry('pulled', 0o600));
    expect(read(root, 'a/b/new.txt')).toBe('pulled');
    expect(modeOf(root, 'a/b/new.txt')).toBe(0o600);
    expect(modeOf(root, 'a')).toBe(0o755);
    const st = fs.lstatSync(path.join(root, 'a/b/new.txt'));
    expect(mtimeOf(st)).toBe(MTIME);
    expect(fp).toEqual({ ino: st.ino, size: 6, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });
    expect(fs.existsSync(tmp)).toBe(false);
  });

  it('replaces a file, handing the old one to beforeReplace first', async () => {
    const root = await makeTree({ 'f.txt': 'old' });
    const { calls, beforeReplace } = recorder();
    await placeFile(root, downloaded(root, 'new'), 'f.txt', fileEntry('new'), beforeReplace);
    expect(read(root, 'f.txt')).toBe('new');
    expect(calls).toEqual([{ rel: 'f.txt', content: 'old' }]);
    expect(tmpLeftovers(root)).toEqual([]);
  });

  it('replaces a symlink itself, never the file it points to', async () => {
    const outside = await makeTree({ 'victim.txt': 'untouched' });
    const root = await makeTree({ l: { symlink: path.join(outside, 'victim.txt') } });
    await placeFile(root, downloaded(root, 'pulled'), 'l', fileEntry('pulled'));
    expect(isLink(root, 'l')).toBe(false);
    expect(read(root, 'l')).toBe('pulled');
    expect(read(outside, 'victim.txt')).toBe('untouched');
  });

  it('replaces an empty directory, and refuses a directory that still has children', async () => {
    const root = await makeTree({ empty: { dir: true }, 'full/child.txt': 'kept' });
    await placeFile(root, downloaded(root, 'was a dir'), 'empty', fileEntry('was a dir'));
    expect(read(root, 'empty')).toBe('was a dir');
    await expect(placeFile(root, downloaded(root, 'nope'), 'full', fileEntry('nope'))).rejects.toMatchObject({ code: 'ENOTEMPTY' });
    expect(read(root, 'full/child.txt')).toBe('kept');
  });

  it('never writes through a parent that is a symlink to outside the folder', async () => {
    const outside = await tempDir();
    const root = await makeTree({ sub: { symlink: outside } });
    await expect(placeFile(root, downloaded(root, 'escaped'), 'sub/f.txt', fileEntry('escaped'))).rejects.toThrow();
    expect(fs.readdirSync(outside)).toEqual([]);
  });
});

describe('restampFile', () => {
  it('sets the mode and mtime of a file whose content already matches, and leaves the content', async () => {
    const root = await makeTree({ 'f.txt': { content: 'same', mode: 0o644 } });
    const fp = await restampFile(root, 'f.txt', fileEntry('same', 0o755));
    const st = fs.lstatSync(path.join(root, 'f.txt'));
    expect(read(root, 'f.txt')).toBe('same');
    expect(st.mode & 0o7777).toBe(0o755);
    expect(mtimeOf(st)).toBe(MTIME);
    expect(fp.ino).toBe(st.ino);
  });

  it('refuses when the file on disk no longer has the entry size, and changes nothing', async () => {
    const root = await makeTree({ 'f.txt': { content: 'grown since', mode: 0o644 } });
    await expect(restampFile(root, 'f.txt', fileEntry('short', 0o600))).rejects.toThrow(/changed on disk/);
    expect(modeOf(root, 'f.txt')).toBe(0o644);
  });
});

describe('placeDir', () => {
  it('makes a directory with its mode, parents created', async () => {
    const root = await tempDir();
    await placeDir(root, 'x/y', { type: 'dir', mode: 0o700 });
    expect(fs.lstatSync(path.join(root, 'x/y')).isDirectory()).toBe(true);
    expect(modeOf(root, 'x/y')).toBe(0o700);
  });

  it('changes the mode of an existing directory and keeps what is in it', async () => {
    const root = await makeTree({ 'd/inside.txt': 'kept' });
    fs.chmodSync(path.join(root, 'd'), 0o755);
    await placeDir(root, 'd', { type: 'dir', mode: 0o750 });
    expect(modeOf(root, 'd')).toBe(0o750);
    expect(read(root, 'd/inside.txt')).toBe('kept');
  });

  it('replaces a file at the path, handing it to beforeReplace first', async () => {
    const root = await makeTree({ d: 'a file was here' });
    const { calls, beforeReplace } = recorder();
    await placeDir(root, 'd', { type: 'dir', mode: 0o755 }, beforeReplace);
    expect(fs.lstatSync(path.join(root, 'd')).isDirectory()).toBe(true);
    expect(calls).toEqual([{ rel: 'd', content: 'a file was here' }]);
  });
});

describe('placeSymlink', () => {
  it('makes a link with its target as given, never followed, and leaves nothing in tmp', async () => {
    const root = await tempDir();
    await placeSymlink(root, 'sub/l', '../missing/target');
    expect(fs.readlinkSync(path.join(root, 'sub/l'))).toBe('../missing/target');
    expect(tmpLeftovers(root)).toEqual([]);
  });

  it('replaces a file (handed to beforeReplace first) and another link', async () => {
    const root = await makeTree({ f: 'was a file', l: { symlink: 'old-target' } });
    const { calls, beforeReplace } = recorder();
    await placeSymlink(root, 'f', 'new-target', beforeReplace);
    await placeSymlink(root, 'l', 'newer-target', beforeReplace);
    expect(fs.readlinkSync(path.join(root, 'f'))).toBe('new-target');
    expect(fs.readlinkSync(path.join(root, 'l'))).toBe('newer-target');
    expect(calls).toEqual([{ rel: 'f', content: 'was a file' }]);
  });
});

describe('removePath', () => {
  it('removes a file (handed to beforeReplace first), a link (not its target) and an empty directory', async () => {
    const root = await makeTree({ 'f.txt': 'bye', target: 'stays', l: { symlink: 'target' }, empty: { dir: true } });
    const { calls, beforeReplace } = recorder();
    expect(await removePath(root, 'f.txt', beforeReplace)).toBe(true);
    expect(await removePath(root, 'l', beforeReplace)).toBe(true);
    expect(await removePath(root, 'empty', beforeReplace)).toBe(true);
    expect(['f.txt', 'l', 'empty'].filter((rel) => exists(root, rel))).toEqual([]);
    expect(read(root, 'target')).toBe('stays');
    expect(calls).toEqual([{ rel: 'f.txt', content: 'bye' }]);
  });

  it('keeps a directory that still has children and says so; an absent path is already removed', async () => {
    const root = await makeTree({ 'd/unknown.txt': 'the remover did not know of me' });
    expect(await removePath(root, 'd')).toBe(false);
    expect(read(root, 'd/unknown.txt')).toBe('the remover did not know of me');
    expect(await removePath(root, 'never-there')).toBe(true);
  });

  it('never removes through a symlinked parent', async () => {
    const outside = await makeTree({ 'victim.txt': 'untouched' });
    const root = await makeTree({ sub: { symlink: outside } });
    await expect(removePath(root, 'sub/victim.txt')).rejects.toThrow();
    expect(read(outside, 'victim.txt')).toBe('untouched');
  });
});

describe('movePath', () => {
  it('renames a file and a directory with its children, keeping inodes, parents of the target created', async () => {
    const root = await makeTree({ 'a.txt': 'A', 'dir/sub/x.txt': 'X' });
    const ino = fs.lstatSync(path.join(root, 'a.txt')).ino;
    await movePath(root, 'a.txt', 'new/place/b.txt');
    await movePath(root, 'dir', 'dir2');
    expect(read(root, 'new/place/b.txt')).toBe('A');
    expect(fs.lstatSync(path.join(root, 'new/place/b.txt')).ino).toBe(ino);
    expect(read(root, 'dir2/sub/x.txt')).toBe('X');
    expect(exists(root, 'a.txt') || exists(root, 'dir')).toBe(false);
  });

  it('replaces a file at the target, handing it to beforeReplace first', async () => {
    const root = await makeTree({ 'from.txt': 'moving', 'to.txt': 'replaced' });
    const { calls, beforeReplace } = recorder();
    await movePath(root, 'from.txt', 'to.txt', beforeReplace);
    expect(read(root, 'to.txt')).toBe('moving');
    expect(exists(root, 'from.txt')).toBe(false);
    expect(calls).toEqual([{ rel: 'to.txt', content: 'replaced' }]);
  });

  it('moves a name over another name of the same inode (hard links): the source name is gone, nothing set aside (seed 9375)', async () => {
    const root = await makeTree({ 'a.txt': 'same' });
    fs.linkSync(path.join(root, 'a.txt'), path.join(root, 'n.txt'));
    const { calls, beforeReplace } = recorder();
    await movePath(root, 'a.txt', 'n.txt', beforeReplace);
    expect(exists(root, 'a.txt')).toBe(false);
    expect(read(root, 'n.txt')).toBe('same');
    expect(fs.lstatSync(path.join(root, 'n.txt')).nlink).toBe(1);
    expect(calls).toEqual([]);
  });

  it('never moves into or out of a symlinked parent', async () => {
    const outside = await makeTree({ 'victim.txt': 'untouched' });
    const root = await makeTree({ 'a.txt': 'A', out: { symlink: outside } });
    await expect(movePath(root, 'a.txt', 'out/a.txt')).rejects.toThrow();
    await expect(movePath(root, 'out/victim.txt', 'stolen.txt')).rejects.toThrow();
    expect(fs.readdirSync(outside)).toEqual(['victim.txt']);
    expect(read(root, 'a.txt')).toBe('A');
    expect(exists(root, 'stolen.txt')).toBe(false);
  });
});

describe('cleanTempDir', () => {
  it('removes every leftover, or with olderThan only those last modified before it', async () => {
    const root = await tempDir();
    expect(await cleanTempDir(root)).toBe(0); // no tmp dir yet
    const old = downloaded(root, 'old part');
    fs.mkdirSync(path.join(tmpDirOf(root), 'old-bundle'));
    fs.writeFileSync(path.join(tmpDirOf(root), 'old-bundle', 'part'), 'x');
    const longAgo = new Date(Date.now() - 3_600_000);
    fs.utimesSync(old, longAgo, longAgo);
    fs.utimesSync(path.join(tmpDirOf(root), 'old-bundle'), longAgo, longAgo);
    const fresh = downloaded(root, 'in flight');
    expect(await cleanTempDir(root, new Date(Date.now() - 60_000))).toBe(2);
    expect(tmpLeftovers(root)).toEqual([path.basename(fresh)]);
    expect(await cleanTempDir(root)).toBe(1);
    expect(tmpLeftovers(root)).toEqual([]);
  });

  it('follows no symlink planted in tmp: the link goes, its target stays', async () => {
    const outside = await makeTree({ 'victim.txt': 'untouched' });
    const root = await tempDir();
    fs.mkdirSync(tmpDirOf(root), { recursive: true });
    fs.symlinkSync(outside, path.join(tmpDirOf(root), 'planted'));
    expect(await cleanTempDir(root)).toBe(1);
    expect(tmpLeftovers(root)).toEqual([]);
    expect(read(outside, 'victim.txt')).toBe('untouched');
  });
});

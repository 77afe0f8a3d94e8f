// placePulledFile (src/fs/place.ts) on real temp dirs, with the races injected through its test
// seams: a local write between the pull's check and its replace must never lose a byte.
import { afterAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { placePulledFile, type PlaceExpectation } from '../src/fs/place.js';
import { readLocal } from '../src/fs/scan.js';
import { newTempName, placeSymlinkIfAbsent, tmpDirOf } from '../src/fs/apply.js';
import type { FileEntry } from '../src/core/types.js';
import { cleanupTempDirs, makeTree } from './helpers/tree.js';

afterAll(cleanupTempDirs);

const sha = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');
const pulled = (text: string): FileEntry => ({ type: 'file', size: Buffer.byteLength(text), mtime: 1_700_000_000_000, mode: 0o644, hash: sha(text) });

async function setup(local: string | null): Promise<{ root: string; tmp: string; expected: PlaceExpectation }> {
  const root = await makeTree(local === null ? { 'other.txt': 'x' } : { 'f.txt': local });
  fs.mkdirSync(tmpDirOf(root), { recursive: true });
  const tmp = path.join(tmpDirOf(root), newTempName('down'));
  fs.writeFileSync(tmp, 'pulled version');
  const read = await readLocal(root, 'f.txt');
  if (read === 'unsupported') throw new Error('unexpected');
  return { root, tmp, expected: { entry: read?.entry ?? null, stat: read?.stat ?? null } };
}

const read = (root: string, rel = 'f.txt'): string | null => (fs.existsSync(path.join(root, rel)) ? fs.readFileSync(path.join(root, rel), 'utf8') : null);
const leftovers = (root: string): string[] => fs.readdirSync(tmpDirOf(root));
const copies = (root: string): string[] => fs.readdirSync(root).filter((n) => n.includes('.sync-conflict-'));
const conflictName = (rel: string): string => rel.replace(/\.txt$/, '.sync-conflict-20260101-000000-me.txt');

describe('placePulledFile', () => {
  it.each([
    { description: 'nothing there: placed', local: null },
    { description: 'the local file is what the pull decided to replace: placed', local: 'base version' },
  ])('$description', async ({ local }) => {
    const { root, tmp, expected } = await setup(local);
    const result = await placePulledFile(root, tmp, 'f.txt', pulled('pulled version'), expected, { conflictName });
    expect(result.placed).toBe(true);
    expect(read(root)).toBe('pulled version');
    expect(result.placed && result.stat?.ino).toBe(fs.lstatSync(path.join(root, 'f.txt')).ino);
    expect(leftovers(root)).toEqual([]);
  });

  it('local write racing a pull of the same path (no byte lost): written between check and replace, it stays', async () => {
    const { root, tmp, expected } = await setup('base version');
    const result = await placePulledFile(root, tmp, 'f.txt', pulled('pulled version'), expected, {
      conflictName,
      beforeReplace: () => fs.writeFileSync(path.join(root, 'f.txt'), 'local edit, never pushed'),
    });
    expect(result).toEqual({ placed: false, reason: 'changed', copy: null });
    expect(read(root)).toBe('local edit, never pushed');
    expect(leftovers(root)).toEqual([]);
  });

  it('a chmod racing the pull is a local change too: it stays', async () => {
    const { root, tmp, expected } = await setup('base version');
    const result = await placePulledFile(root, tmp, 'f.txt', pulled('pulled version'), expected, {
      conflictName,
      beforeReplace: () => fs.chmodSync(path.join(root, 'f.txt'), 0o600),
    });
    expect(result.placed).toBe(false);
    expect(read(root)).toBe('base version');
    expect(fs.statSync(path.join(root, 'f.txt')).mode & 0o777).toBe(0o600);
  });

  it('a file created where there was none, between check and replace, is not overwritten', async () => {
    const { root, tmp, expected } = await setup(null);
    const result = await placePulledFile(root, tmp, 'f.txt', pulled('pulled version'), expected, {
      conflictName,
      beforeReplace: () => fs.writeFileSync(path.join(root, 'f.txt'), 'new local file'),
    });
    expect(result).toEqual({ placed: false, reason: 'appeared' });
    expect(read(root)).toBe('new local file');
    expect(leftovers(root)).toEqual([]);
  });

  it('a file created after the move aside (link fails with EEXIST) is not overwritten', async () => {
    const { root, tmp, expected } = await setup('base version');
    const result = await placePulledFile(root, tmp, 'f.txt', pulled('pulled version'), expected, {
      conflictName,
      afterAside: () => fs.writeFileSync(path.join(root, 'f.txt'), 'written after the move aside'),
    });
    expect(result).toEqual({ placed: false, reason: 'appeared' });
    expect(read(root)).toBe('written after the move aside');
    expect(leftovers(root)).toEqual([]);
  });

  it('an edit, then a new file at the path after the move aside: both kept (the edit as a conflict copy)', async () => {
    const { root, tmp, expected } = await setup('base version');
    const result = await placePulledFile(root, tmp, 'f.txt', pulled('pulled version'), expected, {
      conflictName,
      beforeReplace: () => fs.appendFileSync(path.join(root, 'f.txt'), ' + local append'),
      afterAside: () => fs.writeFileSync(path.join(root, 'f.txt'), 'another new file'),
    });
    expect(result).toEqual({ placed: false, reason: 'changed', copy: 'f.sync-conflict-20260101-000000-me.txt' });
    expect(read(root)).toBe('another new file');
    expect(copies(root).map((c) => read(root, c))).toEqual(['base version + local append']);
    expect(leftovers(root)).toEqual([]);
  });

  it('a local delete racing the pull is left alone (the delete goes to the server)', async () => {
    const { root, tmp, expected } = await setup('base version');
    const result = await placePulledFile(root, tmp, 'f.txt', pulled('pulled version'), expected, {
      conflictName,
      beforeReplace: () => fs.unlinkSync(path.join(root, 'f.txt')),
    });
    expect(result.placed).toBe(false);
    expect(read(root)).toBe(null);
    expect(leftovers(root)).toEqual([]);
  });
});

describe('placeSymlinkIfAbsent (a pulled link where the path was empty)', () => {
  it('places the link when the path is still empty, through new parents, and leaves no temp name', async () => {
    const root = await makeTree({ 'other.txt': 'x' });
    expect(await placeSymlinkIfAbsent(root, 'sub/l', '../other.txt')).toBe(true);
    expect(fs.readlinkSync(path.join(root, 'sub/l'))).toBe('../other.txt');
    expect(leftovers(root)).toEqual([]);
  });

  it('never replaces a file written at the path since the decision: it stays, byte for byte', async () => {
    const root = await makeTree({ 'f.txt': 'local edit, never pushed' });
    expect(await placeSymlinkIfAbsent(root, 'f.txt', 'elsewhere')).toBe(false);
    expect(fs.lstatSync(path.join(root, 'f.txt')).isFile()).toBe(true);
    expect(read(root)).toBe('local edit, never pushed');
    expect(leftovers(root)).toEqual([]);
  });

  it('does not follow a link already at the path (link() makes no file at its target)', async () => {
    const root = await makeTree({ 'other.txt': 'x' });
    fs.symlinkSync('missing-target', path.join(root, 'l'));
    expect(await placeSymlinkIfAbsent(root, 'l', 'other.txt')).toBe(false);
    expect(fs.readlinkSync(path.join(root, 'l'))).toBe('missing-target');
    expect(fs.existsSync(path.join(root, 'missing-target'))).toBe(false);
  });
});

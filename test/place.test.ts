// placePulledFile and placePulledSymlink (src/fs/place.ts) on real temp dirs, with the races injected through its test
// seams: a local write between the pull's check and its replace must never lose a byte.
import { afterAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { movePulledPath, placePulledFile, placePulledSymlink, recoverAsides, type PlaceExpectation, type PlaceOptions } from '../src/fs/place.js';
import { readLocal } from '../src/fs/scan.js';
import { cleanTempDir, newTempName, tmpDirOf } from '../src/fs/apply.js';
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
type PlaceRace = Pick<PlaceOptions, 'beforeReplace' | 'afterAside'>;
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

describe('placePulledFile over a link', () => {
  it('replaces the link the pull decided on; a file written in its place since stays', async () => {
    const root = await makeTree({ 'other.txt': 'x' });
    fs.mkdirSync(tmpDirOf(root), { recursive: true });
    const freshTemp = (): string => {
      const tmp = path.join(tmpDirOf(root), newTempName('down'));
      fs.writeFileSync(tmp, 'pulled version');
      return tmp;
    };
    const link: PlaceExpectation = { entry: { type: 'symlink', target: 'other.txt' }, stat: null };
    fs.symlinkSync('other.txt', path.join(root, 'f.txt'));
    const raced = await placePulledFile(root, freshTemp(), 'f.txt', pulled('pulled version'), link, {
      conflictName,
      beforeReplace: () => {
        fs.unlinkSync(path.join(root, 'f.txt'));
        fs.writeFileSync(path.join(root, 'f.txt'), 'local file where the link was');
      },
    });
    expect(raced).toEqual({ placed: false, reason: 'changed', copy: null });
    expect(read(root)).toBe('local file where the link was');
    fs.unlinkSync(path.join(root, 'f.txt'));
    fs.symlinkSync('other.txt', path.join(root, 'f.txt'));
    const result = await placePulledFile(root, freshTemp(), 'f.txt', pulled('pulled version'), link, { conflictName });
    expect(result.placed).toBe(true);
    expect(read(root)).toBe('pulled version');
    expect(leftovers(root)).toEqual([]);
  });
});

describe('placePulledSymlink (a pulled link, by the same steps as a pulled file)', () => {
  const linkAt = (root: string, rel = 'f.txt'): string | null => {
    const st = fs.lstatSync(path.join(root, rel), { throwIfNoEntry: false });
    return st?.isSymbolicLink() === true ? fs.readlinkSync(path.join(root, rel)) : null;
  };

  it('places the link when the path is still empty, through new parents, and leaves no temp name', async () => {
    const root = await makeTree({ 'other.txt': 'x' });
    expect(await placePulledSymlink(root, 'sub/l', '../other.txt', { entry: null, stat: null }, { conflictName })).toEqual({ placed: true, stat: null });
    expect(linkAt(root, 'sub/l')).toBe('../other.txt');
    expect(leftovers(root)).toEqual([]);
  });

  it('never replaces a file written at the empty path since the decision: it stays, byte for byte', async () => {
    const root = await makeTree({ 'other.txt': 'x' });
    const result = await placePulledSymlink(root, 'f.txt', 'elsewhere', { entry: null, stat: null }, {
      conflictName,
      beforeReplace: () => fs.writeFileSync(path.join(root, 'f.txt'), 'local edit, never pushed'),
    });
    expect(result).toEqual({ placed: false, reason: 'appeared' });
    expect(read(root)).toBe('local edit, never pushed');
    expect(leftovers(root)).toEqual([]);
  });

  it('does not follow a link already at an empty-decided path (link() makes no file at its target)', async () => {
    const root = await makeTree({ 'other.txt': 'x' });
    fs.symlinkSync('missing-target', path.join(root, 'l'));
    expect((await placePulledSymlink(root, 'l', 'other.txt', { entry: null, stat: null }, { conflictName })).placed).toBe(false);
    expect(linkAt(root, 'l')).toBe('missing-target');
    expect(fs.existsSync(path.join(root, 'missing-target'))).toBe(false);
  });

  it('replaces the file the pull decided on', async () => {
    const { root, expected } = await setup('base version');
    expect(await placePulledSymlink(root, 'f.txt', 'other.txt', expected, { conflictName })).toEqual({ placed: true, stat: null });
    expect(linkAt(root)).toBe('other.txt');
    expect(leftovers(root).filter((n) => !n.endsWith('.down'))).toEqual([]);
  });

  it.each([
    {
      description: 'local write racing a pulled link over a file (no byte lost): written between check and replace, it stays',
      race: (at: string): PlaceRace => ({ beforeReplace: () => fs.writeFileSync(at, 'local edit, never pushed') }),
      result: { placed: false, reason: 'changed', copy: null },
      atPath: 'local edit, never pushed',
      kept: [],
    },
    {
      description: 'an edit, then a new file at the path after the move aside: both kept (the edit as a conflict copy)',
      race: (at: string): PlaceRace => ({ beforeReplace: () => fs.appendFileSync(at, ' + local append'), afterAside: () => fs.writeFileSync(at, 'another new file') }),
      result: { placed: false, reason: 'changed', copy: 'f.sync-conflict-20260101-000000-me.txt' },
      atPath: 'another new file',
      kept: ['base version + local append'],
    },
  ])('$description', async ({ race, result, atPath, kept }) => {
    const { root, expected } = await setup('base version');
    expect(await placePulledSymlink(root, 'f.txt', 'other.txt', expected, { conflictName, ...race(path.join(root, 'f.txt')) })).toEqual(result);
    expect(read(root)).toBe(atPath);
    expect(copies(root).map((c) => read(root, c))).toEqual(kept);
    expect(leftovers(root).filter((n) => !n.endsWith('.down'))).toEqual([]);
  });

  it('replaces the link the pull decided on; a link replaced by a file, or retargeted, since the decision stays', async () => {
    const root = await makeTree({ 'other.txt': 'x' });
    const decided: PlaceExpectation = { entry: { type: 'symlink', target: 'old-target' }, stat: null };
    const at = path.join(root, 'f.txt');
    fs.symlinkSync('old-target', at);
    const byFile = await placePulledSymlink(root, 'f.txt', 'new-target', decided, {
      conflictName,
      beforeReplace: () => {
        fs.unlinkSync(at);
        fs.writeFileSync(at, 'a file where the link was');
      },
    });
    expect(byFile).toEqual({ placed: false, reason: 'changed', copy: null });
    expect(read(root)).toBe('a file where the link was');
    fs.unlinkSync(at);
    fs.symlinkSync('old-target', at);
    const retargeted = await placePulledSymlink(root, 'f.txt', 'new-target', decided, {
      conflictName,
      beforeReplace: () => {
        fs.unlinkSync(at);
        fs.symlinkSync('local-target', at);
      },
    });
    expect(retargeted.placed).toBe(false);
    expect(linkAt(root)).toBe('local-target');
    fs.unlinkSync(at);
    fs.symlinkSync('old-target', at);
    expect((await placePulledSymlink(root, 'f.txt', 'new-target', decided, { conflictName })).placed).toBe(true);
    expect(linkAt(root)).toBe('new-target');
    expect(leftovers(root)).toEqual([]);
  });
});

describe('movePulledPath', () => {
  const linkAt = (root: string, rel: string): string | null => (fs.lstatSync(path.join(root, rel), { throwIfNoEntry: false })?.isSymbolicLink() ? fs.readlinkSync(path.join(root, rel)) : null);
  async function renameSetup(spec: Parameters<typeof makeTree>[0]): Promise<string> {
    const root = await makeTree(spec);
    fs.mkdirSync(tmpDirOf(root), { recursive: true });
    return root;
  }

  it('moves a file, a link (as itself) and a directory to a free path, leaving nothing in the temp dir', async () => {
    const root = await renameSetup({ 'a.txt': 'moved', d: { symlink: 'a.txt' }, 'D/x.txt': 'inside' });
    expect(await movePulledPath(root, 'a.txt', 'sub/b.txt', { conflictName })).toEqual({ moved: true, kept: null });
    expect(await movePulledPath(root, 'd', 'e', { conflictName })).toEqual({ moved: true, kept: null });
    expect(await movePulledPath(root, 'D', 'E', { conflictName })).toEqual({ moved: true, kept: null });
    expect([read(root, 'a.txt'), read(root, 'sub/b.txt'), linkAt(root, 'e'), read(root, 'E/x.txt')]).toEqual([null, 'moved', 'a.txt', 'inside']);
    expect(fs.existsSync(path.join(root, 'D'))).toBe(false);
    expect(leftovers(root)).toEqual([]);
  });

  it('a file written at the target between the decision and the move is never replaced (simulation seeds 23730, 28359)', async () => {
    const root = await renameSetup({ 'a.txt': 'moved', 'D/x.txt': 'inside' });
    const write = (rel: string) => (): void => fs.writeFileSync(path.join(root, rel), 'local file, never pushed');
    expect(await movePulledPath(root, 'a.txt', 'b.txt', { conflictName, beforeMove: write('b.txt') })).toEqual({ moved: false, reason: 'appeared' });
    expect(await movePulledPath(root, 'D', 'E', { conflictName, beforeMove: write('E') })).toEqual({ moved: false, reason: 'appeared' });
    expect([read(root, 'a.txt'), read(root, 'b.txt'), read(root, 'D/x.txt'), read(root, 'E')]).toEqual(['moved', 'local file, never pushed', 'inside', 'local file, never pushed']);
    expect(leftovers(root)).toEqual([]);
  });

  it('a new file that takes the old name after the link stays there; the moved file is at the new name', async () => {
    const root = await renameSetup({ 'a.txt': 'moved' });
    const result = await movePulledPath(root, 'a.txt', 'b.txt', {
      conflictName,
      afterLink: () => {
        fs.unlinkSync(path.join(root, 'a.txt'));
        fs.writeFileSync(path.join(root, 'a.txt'), 'new local file');
      },
    });
    expect(result).toEqual({ moved: true, kept: 'a.txt' });
    expect([read(root, 'a.txt'), read(root, 'b.txt')]).toEqual(['new local file', 'moved']);
    expect(leftovers(root)).toEqual([]);
  });

  it('a source deleted before the move is reported gone, and nothing is made at the target', async () => {
    const root = await renameSetup({ 'a.txt': 'moved' });
    const result = await movePulledPath(root, 'a.txt', 'b.txt', { conflictName, beforeMove: () => fs.unlinkSync(path.join(root, 'a.txt')) });
    expect(result).toEqual({ moved: false, reason: 'gone' });
    expect(read(root, 'b.txt')).toBeNull();
  });
});

describe('recoverAsides (a kill while a pull had a local file moved aside)', () => {
  const killed = (): never => {
    throw new Error('killed');
  };
  const asides = (root: string): string[] => leftovers(root).filter((n) => n.endsWith('.aside'));

  it('a local edit moved aside, not yet compared, goes back to its path at start-up', async () => {
    const { root, tmp, expected } = await setup('base version');
    const at = path.join(root, 'f.txt');
    const placing = placePulledFile(root, tmp, 'f.txt', pulled('pulled version'), expected, { conflictName, beforeReplace: () => fs.writeFileSync(at, 'local edit, never pushed'), afterAside: killed });
    await expect(placing).rejects.toThrow('killed');
    expect(read(root)).toBeNull();
    expect(asides(root)).toHaveLength(1);
    expect(await recoverAsides(root, conflictName)).toEqual(['f.txt']);
    expect(read(root)).toBe('local edit, never pushed');
    expect(asides(root)).toEqual([]);
    await cleanTempDir(root);
    expect(leftovers(root)).toEqual([]);
  });

  it('kept as a conflict copy when its path was taken before the start', async () => {
    const { root, tmp, expected } = await setup('base version');
    const at = path.join(root, 'f.txt');
    await expect(placePulledFile(root, tmp, 'f.txt', pulled('pulled version'), expected, { conflictName, beforeReplace: () => fs.writeFileSync(at, 'local edit, never pushed'), afterAside: killed })).rejects.toThrow('killed');
    fs.writeFileSync(at, 'written while the daemon was down');
    expect(await recoverAsides(root, conflictName)).toEqual([conflictName('f.txt')]);
    expect([read(root), read(root, conflictName('f.txt'))]).toEqual(['written while the daemon was down', 'local edit, never pushed']);
    expect(asides(root)).toEqual([]);
  });

  it('what the pull decided to replace (the server has it) is dropped, not brought back', async () => {
    const { root, tmp, expected } = await setup('base version');
    await expect(placePulledFile(root, tmp, 'f.txt', pulled('pulled version'), expected, { conflictName, afterAside: killed })).rejects.toThrow('killed');
    expect(await recoverAsides(root, conflictName)).toEqual([]);
    expect(read(root)).toBeNull();
    expect(asides(root)).toEqual([]);
  });

  it('an aside without its note is kept under a name of its own, never cleaned away', async () => {
    const root = await makeTree({ 'other.txt': 'x' });
    fs.mkdirSync(tmpDirOf(root), { recursive: true });
    fs.writeFileSync(path.join(tmpDirOf(root), newTempName('aside')), 'bytes of unknown origin');
    expect(await recoverAsides(root, conflictName)).toEqual(['recovered']);
    expect(read(root, 'recovered')).toBe('bytes of unknown origin');
  });
});

/**
 * fs/unplace.ts on real temp dirs: a pulled delete never unlinks bytes the decision did not see.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { Entry } from '../src/core/types.js';
import { removePulledPath } from '../src/fs/unplace.js';

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
});

function folder(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'unplace-'));
  fs.mkdirSync(path.join(root, '.systemsync', 'tmp'), { recursive: true });
  roots.push(root);
  return root;
}

function entryOf(abs: string): Entry {
  const data = fs.readFileSync(abs);
  const st = fs.lstatSync(abs);
  return { type: 'file', size: data.length, mtime: Math.trunc(st.mtimeMs), mode: st.mode & 0o777, hash: createHash('sha256').update(data).digest('hex') };
}

const copyName = (rel: string): string => `${rel}.sync-conflict-20261204-180000-me`;

describe('removePulledPath', () => {
  it('removes a file that is still what the delete decided on, and leaves no temp file', async () => {
    const root = folder();
    const abs = path.join(root, 'a.txt');
    fs.writeFileSync(abs, 'old');
    const result = await removePulledPath(root, 'a.txt', { entry: entryOf(abs), stat: null }, { conflictName: copyName });
    expect(result).toEqual({ removed: true });
    expect(fs.existsSync(abs)).toBe(false);
    expect(fs.readdirSync(path.join(root, '.systemsync', 'tmp'))).toEqual([]);
  });

  it('keeps a local write that landed after the decision, at its path', async () => {
    const root = folder();
    const abs = path.join(root, 'a.txt');
    fs.writeFileSync(abs, 'old');
    const decided = entryOf(abs);
    const result = await removePulledPath(root, 'a.txt', { entry: decided, stat: null }, {
      conflictName: copyName,
      beforeRemove: () => fs.writeFileSync(abs, 'new local edit'),
    });
    expect(result).toEqual({ removed: false, copy: null });
    expect(fs.readFileSync(abs, 'utf8')).toBe('new local edit');
    expect(fs.readdirSync(path.join(root, '.systemsync', 'tmp'))).toEqual([]);
  });

  it('is fine when the file is already gone, and removes only an empty directory', async () => {
    const root = folder();
    const dir: Entry = { type: 'dir', mode: 0o755 };
    expect(await removePulledPath(root, 'gone.txt', { entry: { type: 'file', size: 1, mtime: 0, mode: 0o644, hash: 'x' }, stat: null }, { conflictName: copyName })).toEqual({ removed: true });
    fs.mkdirSync(path.join(root, 'd'));
    fs.writeFileSync(path.join(root, 'd', 'new.txt'), 'never pushed');
    expect(await removePulledPath(root, 'd', { entry: dir, stat: null }, { conflictName: copyName })).toEqual({ removed: false, copy: null });
    expect(fs.readFileSync(path.join(root, 'd', 'new.txt'), 'utf8')).toBe('never pushed');
    fs.rmSync(path.join(root, 'd', 'new.txt'));
    expect(await removePulledPath(root, 'd', { entry: dir, stat: null }, { conflictName: copyName })).toEqual({ removed: true });
    expect(fs.existsSync(path.join(root, 'd'))).toBe(false);
  });

  it('removes a link that is still what the delete decided on; a retargeted one stays', async () => {
    const root = folder();
    const abs = path.join(root, 'l');
    fs.symlinkSync('old-target', abs);
    const decided: Entry = { type: 'symlink', target: 'old-target' };
    const retargeted = await removePulledPath(root, 'l', { entry: decided, stat: null }, {
      conflictName: copyName,
      beforeRemove: () => {
        fs.unlinkSync(abs);
        fs.symlinkSync('local-target', abs);
      },
    });
    expect(retargeted).toEqual({ removed: false, copy: null });
    expect(fs.readlinkSync(abs)).toBe('local-target');
    fs.unlinkSync(abs);
    fs.symlinkSync('old-target', abs);
    expect(await removePulledPath(root, 'l', { entry: decided, stat: null }, { conflictName: copyName })).toEqual({ removed: true });
    expect(fs.existsSync(abs)).toBe(false);
    expect(fs.readdirSync(path.join(root, '.systemsync', 'tmp'))).toEqual([]);
  });

  it('never unlinks a file written where the decided link was', async () => {
    const root = folder();
    const abs = path.join(root, 'l');
    fs.symlinkSync('old-target', abs);
    const result = await removePulledPath(root, 'l', { entry: { type: 'symlink', target: 'old-target' }, stat: null }, {
      conflictName: copyName,
      beforeRemove: () => {
        fs.unlinkSync(abs);
        fs.writeFileSync(abs, 'local file, never pushed');
      },
    });
    expect(result).toEqual({ removed: false, copy: null });
    expect(fs.readFileSync(abs, 'utf8')).toBe('local file, never pushed');
  });
});

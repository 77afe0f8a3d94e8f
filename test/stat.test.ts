import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fsTimeOf, lstatOrNull } from '../src/fs/stat.js';
import { cleanupTempDirs, makeTree } from './helpers/tree.js';

afterEach(cleanupTempDirs);

describe('lstatOrNull', () => {
  it('is null when nothing can be there (missing, or under a file), never follows a final link, and throws the rest', async () => {
    const root = await makeTree({ 'file.txt': 'x', dir: { dir: true }, link: { symlink: 'dir' }, loop: { symlink: 'loop' } });
    expect(lstatOrNull(path.join(root, 'missing'))).toBeNull();
    expect(lstatOrNull(path.join(root, 'missing/below'))).toBeNull();
    expect(lstatOrNull(path.join(root, 'file.txt/below'))).toBeNull();
    expect(lstatOrNull(path.join(root, 'file.txt'))?.isFile()).toBe(true);
    expect(lstatOrNull(path.join(root, 'link'))?.isSymbolicLink()).toBe(true);
    expect(() => lstatOrNull(path.join(root, 'loop/below'))).toThrow(expect.objectContaining({ code: 'ELOOP' }));
  });
});

describe('fsTimeOf', () => {
  it('is a numeric string of seconds nudged by 0.1 ms, and refuses what is not integer milliseconds', () => {
    expect(fsTimeOf(1_700_000_000_123)).toBe(String((1_700_000_000_123 + 0.1) / 1000));
    expect(fsTimeOf(-1_500)).toBe('-1.4999');
    for (const bad of [1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      expect(() => fsTimeOf(bad)).toThrow(expect.objectContaining({ code: 'BAD_MTIME' }));
    }
  });
});

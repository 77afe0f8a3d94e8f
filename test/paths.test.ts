import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  PathError,
  baseNameOf,
  checkRelativePath,
  deepestFirst,
  isSafeRelativePath,
  isSameOrInside,
  joinRelative,
  movedPath,
  outermostPaths,
  parentOf,
  pathsInsideAny,
  segments,
  shallowestFirst,
} from '../src/core/paths.js';

const nfc = 'caf\u00e9';
const nfd = 'cafe\u0301';

describe('checkRelativePath', () => {
  it.each([
    { description: 'simple name', p: 'a' },
    { description: 'nested', p: 'a/b/c.txt' },
    { description: 'percent-encoded dots are a literal name', p: '%2e%2e/x' },
    { description: 'dots inside a name', p: '..a/b..' },
    { description: 'three dots', p: '...' },
    { description: 'newline in a name', p: 'line\nbreak' },
    { description: 'tab and control characters', p: 'a\tb\u0001c' },
    { description: 'unicode NFC', p: nfc },
    { description: 'unicode NFD', p: nfd },
    { description: 'emoji', p: 'dir/\u{1F600}.txt' },
    { description: '255-byte segment', p: 'x'.repeat(255) },
    { description: '255-byte segment of 2-byte chars (127 é + 1)', p: '\u00e9'.repeat(127) + 'x' },
    { description: 'name starting with .systemsync but longer', p: '.systemsyncx/a' },
    { description: '.systemsync below the root', p: 'a/.systemsync' },
    { description: 'spaces', p: ' a /  b ' },
    { description: 'path of exactly 4096 bytes', p: 'y'.repeat(255).concat('/').repeat(15) + 'w'.repeat(254) + '/v' },
  ])('accepts $description', ({ p }) => {
    expect(checkRelativePath(p)).toBe(p);
    expect(isSafeRelativePath(p)).toBe(true);
  });

  it.each([
    { description: 'a number', p: 42 as unknown, reason: 'not a string' },
    { description: 'null', p: null as unknown, reason: 'not a string' },
    { description: 'empty', p: '', reason: 'empty' },
    { description: 'absolute', p: '/etc/passwd', reason: 'absolute' },
    { description: 'root alone', p: '/', reason: 'absolute' },
    { description: 'dot-dot', p: '..', reason: 'dot-dot segment' },
    { description: 'dot-dot in the middle', p: 'a/../..', reason: 'dot-dot segment' },
    { description: 'dot-dot at the end', p: 'a/b/..', reason: 'dot-dot segment' },
    { description: 'dot', p: '.', reason: 'dot segment' },
    { description: 'dot segment', p: 'a/./b', reason: 'dot segment' },
    { description: 'double slash', p: 'a//b', reason: 'empty segment' },
    { description: 'trailing slash', p: 'a/', reason: 'empty segment' },
    { description: 'NUL', p: 'a\0b', reason: 'NUL byte' },
    { description: 'backslash', p: 'a\\b', reason: 'backslash' },
    { description: 'backslash dot-dot', p: '..\\..\\etc', reason: 'backslash' },
    { description: 'lone surrogate', p: 'a\ud800b', reason: 'invalid unicode' },
    { description: '256-byte segment', p: 'x'.repeat(256), reason: 'segment too long' },
    { description: '256-byte segment of 2-byte chars', p: '\u00e9'.repeat(128), reason: 'segment too long' },
    { description: 'path of 4097 bytes', p: 'y'.repeat(255).concat('/').repeat(15) + 'w'.repeat(254) + '/vv', reason: 'path too long' },
    { description: 'reserved dir', p: '.systemsync', reason: 'reserved' },
    { description: 'inside reserved dir', p: '.systemsync/tmp/x', reason: 'reserved' },
    { description: 'reserved dir in another case', p: '.SystemSync/x', reason: 'reserved' },
  ])('refuses $description: $reason', ({ p, reason }) => {
    expect(isSafeRelativePath(p)).toBe(false);
    let caught: unknown;
    try {
      checkRelativePath(p);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(PathError);
    expect((caught as PathError).code).toBe('BAD_PATH');
    expect((caught as PathError).reason).toBe(reason);
    expect((caught as PathError).message).toContain(reason);
  });

  it('accepts the reserved dir only when asked', () => {
    expect(checkRelativePath('.systemsync/tmp/x', { allowReserved: true })).toBe('.systemsync/tmp/x');
    expect(() => checkRelativePath('.systemsync/../x', { allowReserved: true })).toThrow(/dot-dot/);
  });

  it('shortens huge values in the message', () => {
    const huge = 'a/'.repeat(10_000) + '..';
    expect(() => checkRelativePath(huge)).toThrow(PathError);
    try {
      checkRelativePath(huge);
    } catch (err) {
      expect((err as Error).message.length).toBeLessThan(200);
    }
  });
});

/** Strings biased toward the dangerous alphabet: dots, slashes, backslashes, NUL, unicode. */
const nastyString = fc
  .array(fc.constantFrom('.', '..', '/', '\\', '\0', 'a', 'b', '.systemsync', 'é', 'e\u0301', '\n', ' ', '%2e'), { maxLength: 12 })
  .map((parts) => parts.join(''));

function isAcceptedSafely(p: string): boolean {
  const resolved = path.posix.resolve('/root', p);
  const inside = resolved.startsWith('/root/') && resolved.length > '/root/'.length;
  const reserved = resolved === '/root/.systemsync' || resolved.startsWith('/root/.systemsync/');
  // Accepted paths are already normal: resolving adds nothing and removes nothing.
  return inside && !reserved && resolved === `/root/${p}`;
}

describe('checkRelativePath properties', () => {
  it('an accepted path resolves strictly inside the root, outside .systemsync, unchanged', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), nastyString), (p) => {
        if (isSafeRelativePath(p)) expect(isAcceptedSafely(p)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it('paths joined from safe segments are accepted', () => {
    const segment = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).filter((s) => isSafeRelativePath(s) && !s.includes('/'));
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 8 }), (parts) => {
        const p = parts.join('/');
        expect(checkRelativePath(p)).toBe(p);
        expect(segments(p)).toEqual(parts);
      }),
    );
  });

  it('inserting a dot-dot segment anywhere is refused', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', 'b', 'c d', 'é'), { minLength: 1, maxLength: 5 }), fc.nat(), (parts, at) => {
        const copy: string[] = [...parts];
        copy.splice(at % (parts.length + 1), 0, '..');
        expect(isSafeRelativePath(copy.join('/'))).toBe(false);
      }),
    );
  });
});

describe('helpers', () => {
  it.each([
    { p: 'a', parent: null, base: 'a' },
    { p: 'a/b', parent: 'a', base: 'b' },
    { p: 'a/b/c.txt', parent: 'a/b', base: 'c.txt' },
  ])('parentOf/baseNameOf($p)', ({ p, parent, base }) => {
    expect(parentOf(p)).toBe(parent);
    expect(baseNameOf(p)).toBe(base);
  });

  it.each([
    { dir: null, name: 'x', expected: 'x' },
    { dir: '', name: 'x', expected: 'x' },
    { dir: 'a/b', name: 'x', expected: 'a/b/x' },
    { dir: 'a', name: 'b/c', expected: 'a/b/c' },
  ])('joinRelative($dir, $name)', ({ dir, name, expected }) => {
    expect(joinRelative(dir, name)).toBe(expected);
  });

  it('joinRelative refuses a bad result', () => {
    expect(() => joinRelative('a', '..')).toThrow(PathError);
    expect(() => joinRelative(null, '.systemsync')).toThrow(/reserved/);
  });

  it.each([
    { p: 'a', dir: 'a', expected: true },
    { p: 'a/b', dir: 'a', expected: true },
    { p: 'a/b/c', dir: 'a/b', expected: true },
    { p: 'ab', dir: 'a', expected: false },
    { p: 'a', dir: 'a/b', expected: false },
    { p: 'b/a', dir: 'a', expected: false },
    { p: 'anything', dir: null, expected: true },
    { p: 'anything', dir: '', expected: true },
  ])('isSameOrInside($p, $dir) = $expected', ({ p, dir, expected }) => {
    expect(isSameOrInside(p, dir)).toBe(expected);
  });
});

describe('movedPath', () => {
  it('puts the directory itself and what lies under it under the new name', () => {
    expect(movedPath('a/b', 'a/b', 'x')).toBe('x');
    expect(movedPath('a/b/c/d.txt', 'a/b', 'x/y')).toBe('x/y/c/d.txt');
  });
});

describe('outermostPaths', () => {
  it.each([
    { description: 'nothing', paths: [], expected: [] },
    { description: 'nested ones folded into their outermost, order kept', paths: ['a/b', 'c', 'a', 'a/b/c'], expected: ['c', 'a'] },
    { description: 'a look-alike prefix is not inside', paths: ['ab', 'a', 'a/x'], expected: ['ab', 'a'] },
  ])('$description', ({ paths, expected }) => {
    expect(outermostPaths(paths)).toEqual(expected);
  });
});

describe('shallowestFirst and deepestFirst', () => {
  // The order they replace: depth by segment count, then code-unit order.
  const byDepthThenName = (a: string, b: string): number => a.split('/').length - b.split('/').length || (a < b ? -1 : a > b ? 1 : 0);
  const relPath = fc.array(fc.constantFrom('a', 'b', 'ab', 'a b', 'Z', '\u00e9', 'x.txt'), { minLength: 1, maxLength: 4 }).map((s) => s.join('/'));

  it('orders a parent before its children, and by name within a depth', () => {
    expect(shallowestFirst(['a/b/c', 'b', 'a/b', 'ab/x', 'a'])).toEqual(['a', 'b', 'a/b', 'ab/x', 'a/b/c']);
    expect(deepestFirst(['a/b/c', 'b', 'a/b', 'ab/x', 'a'])).toEqual(['a/b/c', 'ab/x', 'a/b', 'b', 'a']);
  });

  it('matches the comparator sort on any paths', () => {
    fc.assert(
      fc.property(fc.uniqueArray(relPath), (paths) => {
        const expected = [...paths].sort(byDepthThenName);
        expect(shallowestFirst(paths)).toEqual(expected);
        expect(deepestFirst(new Set(paths))).toEqual(expected.reverse());
      }),
    );
  });
});

describe('pathsInsideAny', () => {
  it('keeps the paths strictly inside one of the directories, in their order', () => {
    const paths = ['a', 'a/x', 'ab/y', 'b/c/d', 'c/a/z', 'b', 'a/q/r'];
    expect(pathsInsideAny(paths, ['a', 'b/c'])).toEqual(['a/x', 'b/c/d', 'a/q/r']);
    expect(pathsInsideAny(paths, [])).toEqual([]);
  });

  it('agrees with isSameOrInside on any paths', () => {
    const relPath = fc.array(fc.constantFrom('a', 'b', 'ab', 'c'), { minLength: 1, maxLength: 4 }).map((s) => s.join('/'));
    fc.assert(
      fc.property(fc.array(relPath), fc.array(relPath, { maxLength: 3 }), (paths, dirs) => {
        const expected = paths.filter((p) => dirs.some((d) => p !== d && isSameOrInside(p, d)));
        expect(pathsInsideAny(paths, dirs)).toEqual(expected);
      }),
    );
  });
});

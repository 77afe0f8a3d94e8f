import { describe, expect, it } from 'vitest';
import { createIgnoreMatcher, isReservedPath } from '../src/core/ignore.js';

interface Case {
  description: string;
  patterns: string[];
  syncignore: string | null;
  path: string;
  isDir: boolean;
  expected: boolean;
}

const cases: Case[] = [
  { description: 'no rules: a file syncs', patterns: [], syncignore: null, path: 'a.txt', isDir: false, expected: false },
  { description: '.systemsync is always ignored', patterns: [], syncignore: null, path: '.systemsync', isDir: true, expected: true },
  { description: 'anything under .systemsync is ignored', patterns: [], syncignore: null, path: '.systemsync/tmp/x', isDir: false, expected: true },
  { description: '.systemsync stays ignored despite a negation', patterns: ['!.systemsync'], syncignore: '!.systemsync/', path: '.systemsync/x', isDir: false, expected: true },
  { description: '.systemsync in a subfolder is an ordinary name', patterns: [], syncignore: null, path: 'sub/.systemsync', isDir: true, expected: false },
  { description: 'case variants of .systemsync at the root are reserved too', patterns: [], syncignore: null, path: '.SystemSync/x', isDir: false, expected: true },
  { description: '.syncignore itself syncs', patterns: ['*.tmp'], syncignore: '*.log\n', path: '.syncignore', isDir: false, expected: false },
  { description: '.syncignore is ignored when a pattern names it', patterns: [], syncignore: '.syncignore\n', path: '.syncignore', isDir: false, expected: true },
  { description: 'glob from config', patterns: ['*.tmp'], syncignore: null, path: 'deep/x.tmp', isDir: false, expected: true },
  { description: 'glob does not match another extension', patterns: ['*.tmp'], syncignore: null, path: 'x.tmpl', isDir: false, expected: false },
  { description: 'dir pattern ignores the dir', patterns: ['node_modules/'], syncignore: null, path: 'node_modules', isDir: true, expected: true },
  { description: 'dir pattern ignores everything below', patterns: ['node_modules/'], syncignore: null, path: 'node_modules/pkg/index.js', isDir: false, expected: true },
  { description: 'dir pattern ignores a nested dir of that name', patterns: ['node_modules/'], syncignore: null, path: 'app/node_modules/x', isDir: false, expected: true },
  { description: 'dir pattern does not ignore a file of that name', patterns: ['node_modules/'], syncignore: null, path: 'node_modules', isDir: false, expected: false },
  { description: 'patterns from .syncignore apply', patterns: [], syncignore: '# comment\n\nbuild/\n*.o\n', path: 'src/main.o', isDir: false, expected: true },
  { description: 'comments in .syncignore are not patterns', patterns: [], syncignore: '# comment\n', path: '# comment', isDir: false, expected: false },
  { description: 'CRLF line ends in .syncignore', patterns: [], syncignore: 'a.txt\r\nb.txt\r\n', path: 'a.txt', isDir: false, expected: true },
  { description: '.syncignore can re-include what config excludes', patterns: ['*.log'], syncignore: '!keep.log\n', path: 'keep.log', isDir: false, expected: false },
  { description: 'anchored pattern matches at the root only', patterns: ['/out'], syncignore: null, path: 'out', isDir: true, expected: true },
  { description: 'anchored pattern does not match deeper', patterns: ['/out'], syncignore: null, path: 'a/out', isDir: true, expected: false },
  { description: 'path pattern with a slash', patterns: ['docs/*.pdf'], syncignore: null, path: 'docs/a.pdf', isDir: false, expected: true },
  { description: 'double star', patterns: ['**/cache/**'], syncignore: null, path: 'x/y/cache/z', isDir: false, expected: true },
  { description: 'matching is case-sensitive', patterns: ['*.TMP'], syncignore: null, path: 'a.tmp', isDir: false, expected: false },
  { description: 'config patterns are trimmed, blanks skipped', patterns: ['  .DS_Store ', ''], syncignore: null, path: 'd/.DS_Store', isDir: false, expected: true },
  { description: 'the root is never ignored', patterns: ['*'], syncignore: null, path: '', isDir: true, expected: false },
];

describe('createIgnoreMatcher', () => {
  it.each(cases)('$description', ({ patterns, syncignore, path, isDir, expected }) => {
    expect(createIgnoreMatcher(patterns, syncignore).isIgnored(path, isDir)).toBe(expected);
  });

  it('answers the same over many lookups (its cache is dropped now and then), with and without rules', () => {
    const m = createIgnoreMatcher(['build/', '*.tmp'], '!keep.tmp\n# comment\n');
    const none = createIgnoreMatcher([], '# only a comment\n\n');
    for (let i = 0; i < 30_000; i++) {
      const dir = `d${i % 7}`;
      expect(m.isIgnored(`${dir}/f${i}.txt`, false)).toBe(false);
      expect(m.isIgnored(`${dir}/f${i}.tmp`, false)).toBe(true);
      expect(m.isIgnored(`${dir}/build/f${i}.txt`, false)).toBe(true);
      expect(m.isIgnored(`${dir}/keep.tmp`, false)).toBe(false);
      expect(none.isIgnored(`${dir}/f${i}.tmp`, false)).toBe(false);
    }
    expect(none.isIgnored('.systemsync/x', false)).toBe(true);
    expect(() => none.isIgnored('a//b', false)).toThrow(expect.objectContaining({ code: 'BAD_PATH' }));
  });

  it.each(['/abs', './a', 'a/../b', 'a//b'])('refuses the non-relative path %j with BAD_PATH', (bad) => {
    const m = createIgnoreMatcher([], null);
    expect(() => m.isIgnored(bad, false)).toThrow(expect.objectContaining({ code: 'BAD_PATH' }));
  });
});

describe('isReservedPath', () => {
  it.each([
    ['.systemsync', true],
    ['.systemsync/a/b', true],
    ['.systemsyncx', false],
    ['a/.systemsync', false],
  ] as const)('%s → %s', (p, expected) => {
    expect(isReservedPath(p)).toBe(expected);
  });
});

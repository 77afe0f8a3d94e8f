import { describe, expect, it } from 'vitest';
import { foldName, isReservedName, RESERVED_NAMES } from '../src/core/reserved.js';
import { checkRelativePath, pathProblem } from '../src/core/paths.js';
import { isReservedPath } from '../src/core/ignore.js';

// Aliases of `.systemsync` on case-folding, normalizing file systems (HFS+, APFS with folding,
// NTFS, ext4 casefold), in the manner of git's CVE-2014-9390.
describe('isReservedName', () => {
  it.each([
    { description: 'the name itself', name: '.systemsync', expected: true },
    { description: 'ASCII case', name: '.SystemSync', expected: true },
    { description: 'ASCII upper case', name: '.SYSTEMSYNC', expected: true },
    { description: 'long s U+017F', name: '.\u017Fystemsync', expected: true },
    { description: 'long s twice', name: '.\u017Fy\u017Ftem\u017Fync', expected: true },
    { description: 'zero-width joiner U+200D', name: '.system\u200Dsync', expected: true },
    { description: 'zero-width non-joiner U+200C', name: '.\u200Csystemsync', expected: true },
    { description: 'zero-width space U+200B', name: '.systemsync\u200B', expected: true },
    { description: 'left-to-right mark U+200E', name: '.sys\u200Etemsync', expected: true },
    { description: 'right-to-left override U+202E', name: '.systemsy\u202Enc', expected: true },
    { description: 'byte order mark U+FEFF', name: '\uFEFF.systemsync', expected: true },
    { description: 'soft hyphen U+00AD', name: '.system\u00ADsync', expected: true },
    { description: 'combining grapheme joiner U+034F', name: '.systems\u034Fync', expected: true },
    { description: 'variation selector U+FE0F', name: '.systemsync\uFE0F', expected: true },
    { description: 'tag character U+E0041', name: '.system\u{E0041}sync', expected: true },
    { description: 'fullwidth letters', name: '.\uFF53\uFF59\uFF53\uFF54\uFF45\uFF4D\uFF53\uFF59\uFF4E\uFF43', expected: true },
    { description: 'fullwidth full stop', name: '\uFF0Esystemsync', expected: true },
    { description: 'one dot leader U+2024', name: '\u2024systemsync', expected: true },
    { description: 'mathematical bold letters', name: '.\u{1D42C}\u{1D432}\u{1D42C}\u{1D42D}\u{1D41E}\u{1D426}\u{1D42C}\u{1D432}\u{1D427}\u{1D41C}', expected: true },
    { description: 'ligature long s + t U+FB05', name: '.sy\uFB05emsync', expected: true },
    { description: 'ligature s + t U+FB06', name: '.sy\uFB06emsync', expected: true },
    { description: 'trailing dot (NTFS strips it)', name: '.systemsync.', expected: true },
    { description: 'trailing spaces and dots (NTFS)', name: '.systemsync . ', expected: true },
    { description: 'upper case with ZWJ and long s', name: '.SY\u017FTEM\u200DSYNC', expected: true },
    { description: 'a longer name', name: '.systemsyncx', expected: false },
    { description: 'no dot', name: 'systemsync', expected: false },
    { description: 'a dot inside', name: '.system.sync', expected: false },
    { description: 'a space inside', name: '.system sync', expected: false },
    { description: 'a trailing letter after a dot', name: '.systemsync.d', expected: false },
    { description: 'leading space', name: ' .systemsync', expected: false },
    { description: 'sharp s is "ss", not "s"', name: '.\u00DFystemsync', expected: false },
    { description: 'a lookalike that does not fold: Cyrillic es', name: '.\u0441ystemsync', expected: false },
    { description: 'another word', name: '.syncignore', expected: false },
    { description: 'empty', name: '', expected: false },
  ])('$description: $expected', ({ name, expected }) => {
    expect(isReservedName(name)).toBe(expected);
  });

  it.each([
    { description: 'sharp s', name: 'Stra\u00DFe', expected: 'strasse' },
    { description: 'capital sharp s', name: '\u1E9E', expected: 'ss' },
    { description: 'Kelvin sign', name: '\u212A', expected: 'k' },
    { description: 'long s', name: '\u017F', expected: 's' },
    { description: 'decomposed e acute composes', name: 'e\u0301', expected: '\u00E9' },
    { description: 'ignorables removed', name: 'a\u200Db\u00ADc', expected: 'abc' },
    { description: 'ASCII lower-cased, trailing dots and spaces dropped', name: 'ABC. .', expected: 'abc' },
  ])('foldName: $description', ({ name, expected }) => {
    expect(foldName(name)).toBe(expected);
  });

  it('every reserved name is refused on the wire and ignored locally under each alias', () => {
    expect(RESERVED_NAMES).toContain('.systemsync');
    for (const alias of ['.\u017Fystemsync', '.system\u200Dsync', '.SYSTEMSYNC.', '\uFF0Esystemsync']) {
      expect(pathProblem(`${alias}/tmp/x`)).toBe('reserved');
      expect(() => checkRelativePath(alias)).toThrow(/reserved/);
      expect(checkRelativePath(`${alias}/x`, { allowReserved: true })).toBe(`${alias}/x`);
      expect(isReservedPath(`${alias}/trash/f`)).toBe(true);
      // Only the first segment is reserved.
      expect(pathProblem(`a/${alias}`)).toBe(null);
      expect(isReservedPath(`a/${alias}`)).toBe(false);
    }
  });
});

// Conflict copy names (src/core/conflict.ts) against the SPEC's "What lands on disk":
// `<name>.sync-conflict-<YYYYMMDD>-<HHMMSS>-<node>.<ext>` beside the file, time in UTC.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { conflictCopyPath, conflictTargetCandidates, formatStamp, isConflictCopy, parseConflictCopy } from '../src/core/conflict.js';
import { isSafeRelativePath } from '../src/core/paths.js';

/** 2026-11-23 14:05:01 UTC, the SPEC's example. */
const AT = new Date(Date.UTC(2026, 10, 23, 14, 5, 1));

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');
const baseName = (p: string): string => p.slice(p.lastIndexOf('/') + 1);
const dirName = (p: string): string => p.slice(0, p.lastIndexOf('/') + 1);
/** True when `s` has no lone surrogate, so its UTF-8 encoding round-trips. */
const isWellFormed = (s: string): boolean => Buffer.from(s, 'utf8').toString('utf8') === s;

describe('formatStamp', () => {
  it.each([
    { description: 'the SPEC example', at: AT, expected: '20261123-140501' },
    { description: 'the epoch', at: new Date(0), expected: '19700101-000000' },
    { description: 'new year at midnight', at: new Date('2027-01-01T00:00:00Z'), expected: '20270101-000000' },
    { description: 'milliseconds are truncated, not rounded', at: new Date('2026-12-31T23:59:59.999Z'), expected: '20261231-235959' },
    { description: 'single digits are zero-padded', at: new Date('2030-02-03T04:05:06Z'), expected: '20300203-040506' },
    { description: 'a leap day', at: new Date('2028-02-29T12:00:00Z'), expected: '20280229-120000' },
  ])('$description → $expected', ({ at, expected }) => {
    expect(formatStamp(at)).toBe(expected);
  });

  describe('is UTC whatever the process time zone', () => {
    const originalTz = process.env.TZ;
    afterEach(() => {
      if (originalTz === undefined) delete process.env.TZ;
      else process.env.TZ = originalTz;
    });

    it.each([
      { tz: 'UTC', offsetHours: 0 },
      { tz: 'America/Los_Angeles', offsetHours: -8 },
      { tz: 'Asia/Kolkata', offsetHours: 5.5 },
      { tz: 'Pacific/Kiritimati', offsetHours: 14 },
    ])('TZ=$tz', ({ tz, offsetHours }) => {
      process.env.TZ = tz;
      // The zone really took effect in this process (otherwise the test would prove nothing).
      expect(AT.getTimezoneOffset() + offsetHours * 60).toBe(0);
      expect(formatStamp(AT)).toBe('20261123-140501');
      expect(conflictCopyPath('notes.txt', AT, 'laptop')).toBe('notes.sync-conflict-20261123-140501-laptop.txt');
    });
  });
});

describe('conflictCopyPath', () => {
  it.each([
    { description: 'the SPEC example', local: 'notes.txt', expected: 'notes.sync-conflict-20261123-140501-laptop.txt' },
    { description: 'no extension: no trailing dot', local: 'README', expected: 'README.sync-conflict-20261123-140501-laptop' },
    { description: 'the extension is after the last dot', local: 'a.tar.gz', expected: 'a.tar.sync-conflict-20261123-140501-laptop.gz' },
    { description: 'a dotfile has no extension', local: '.bashrc', expected: '.bashrc.sync-conflict-20261123-140501-laptop' },
    { description: 'a dotfile with an extension', local: '.config.json', expected: '.config.sync-conflict-20261123-140501-laptop.json' },
    { description: 'nested directories are kept', local: 'docs/2026/notes.txt', expected: 'docs/2026/notes.sync-conflict-20261123-140501-laptop.txt' },
    { description: 'a dot in a directory is not an extension', local: 'v1.2/README', expected: 'v1.2/README.sync-conflict-20261123-140501-laptop' },
    { description: 'a nested dotfile', local: 'home/.profile', expected: 'home/.profile.sync-conflict-20261123-140501-laptop' },
    { description: 'spaces and unicode', local: 'Büro/mein Plan.odt', expected: 'Büro/mein Plan.sync-conflict-20261123-140501-laptop.odt' },
  ])('$description: $local → $expected', ({ local, expected }) => {
    expect(conflictCopyPath(local, AT, 'laptop')).toBe(expected);
  });

  it.each([
    { description: 'the first name is free', taken: [] as string[], expected: 'notes.sync-conflict-20261123-140501-laptop.txt' },
    {
      description: 'first name taken → -2 after the node',
      taken: ['notes.sync-conflict-20261123-140501-laptop.txt'],
      expected: 'notes.sync-conflict-20261123-140501-laptop-2.txt',
    },
    {
      description: 'first two taken → -3',
      taken: ['notes.sync-conflict-20261123-140501-laptop.txt', 'notes.sync-conflict-20261123-140501-laptop-2.txt'],
      expected: 'notes.sync-conflict-20261123-140501-laptop-3.txt',
    },
    {
      description: 'an unrelated taken name changes nothing',
      taken: ['notes.sync-conflict-20261123-140501-desk.txt'],
      expected: 'notes.sync-conflict-20261123-140501-laptop.txt',
    },
  ])('isTaken: $description', ({ taken, expected }) => {
    const asked: string[] = [];
    const result = conflictCopyPath('notes.txt', AT, 'laptop', (candidate) => {
      asked.push(candidate);
      return taken.includes(candidate);
    });
    expect(result).toBe(expected);
    expect(asked.at(-1)).toBe(expected); // the returned name was checked
  });

  it('isTaken counter in a nested dir without extension', () => {
    const taken = new Set(['a/b/Makefile.sync-conflict-20261123-140501-desk']);
    expect(conflictCopyPath('a/b/Makefile', AT, 'desk', (c) => taken.has(c))).toBe('a/b/Makefile.sync-conflict-20261123-140501-desk-2');
  });

  it.each([
    { description: '250 ASCII bytes', name: 'x'.repeat(246) + '.txt' },
    { description: '255 ASCII bytes', name: 'y'.repeat(251) + '.txt' },
    { description: '250 bytes of 2-byte characters', name: 'é'.repeat(123) + '.txt' },
    { description: '250 bytes of 3-byte characters', name: '€'.repeat(82) + '.txt' },
    { description: '248 bytes of 4-byte characters (surrogate pairs)', name: '😀'.repeat(61) + '.txt' },
    { description: 'mixed widths, no extension', name: ('a😀é€').repeat(25) },
  ])('a long name stays ≤ 255 bytes and valid UTF-8: $description', ({ name }) => {
    expect(bytes(name)).toBeGreaterThanOrEqual(240);
    const dir = 'some/dir/';
    const result = conflictCopyPath(dir + name, AT, 'laptop');
    expect(dirName(result)).toBe(dir);
    expect(bytes(baseName(result))).toBeLessThanOrEqual(255);
    expect(isWellFormed(result)).toBe(true);
    expect(result).not.toContain('\uFFFD');
    expect(baseName(result)).toContain('.sync-conflict-20261123-140501-laptop');
    expect(isConflictCopy(result)).toBe(true);
    // The extension survives the truncation; the stem is what gets shortened.
    if (name.endsWith('.txt')) expect(result.endsWith('-laptop.txt')).toBe(true);
    expect(isSafeRelativePath(result)).toBe(true);
  });

  it('a long name with the isTaken counter stays ≤ 255 bytes', () => {
    const name = 'é'.repeat(123) + '.txt';
    const first = conflictCopyPath(name, AT, 'laptop');
    const second = conflictCopyPath(name, AT, 'laptop', (c) => c === first);
    expect(second).not.toBe(first);
    expect(second.endsWith('-laptop-2.txt')).toBe(true);
    expect(bytes(second)).toBeLessThanOrEqual(255);
    expect(isWellFormed(second)).toBe(true);
  });

  it('a name whose extension alone is long still gives a name ≤ 255 bytes', () => {
    // `a.` + 250 bytes: the tag plus the extension do not fit in 255 bytes.
    const name = 'a.' + 'x'.repeat(250);
    const result = conflictCopyPath(name, AT, 'laptop');
    expect(bytes(baseName(result))).toBeLessThanOrEqual(255);
    expect(isConflictCopy(result)).toBe(true);
    expect(isSafeRelativePath(result)).toBe(true);
  });

  const segmentArb = fc.constantFrom('a', 'dir', 'Büro', '.hidden', 'x.y');
  const nameArb = fc
    .string({ unit: 'grapheme', minLength: 1, maxLength: 40 })
    .filter((s) => !s.includes('/') && !s.includes('\0') && s !== '.' && s !== '..');
  const nodeArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);
  const dateArb = fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true });

  it('property: same directory, never the input, recognised as a copy', () => {
    fc.assert(
      fc.property(fc.array(segmentArb, { maxLength: 3 }), nameArb, dateArb, nodeArb, (dirs, name, at, node) => {
        const dir = dirs.length === 0 ? '' : dirs.join('/') + '/';
        const input = dir + name;
        const result = conflictCopyPath(input, at, node);
        expect(dirName(result)).toBe(dir);
        expect(result).not.toBe(input);
        expect(isConflictCopy(result)).toBe(true);
        expect(baseName(result)).toContain(`.sync-conflict-${formatStamp(at)}-${node}`);
      }),
    );
  });

  it('property: any name of ≤ 255 bytes gives a copy name of ≤ 255 bytes, valid UTF-8', () => {
    // The extension first (often long), then a stem that fits beside it in 255 bytes.
    const textArb = (maxLength: number): fc.Arbitrary<string> =>
      fc
        .oneof(
          fc.string({ unit: 'grapheme-ascii', maxLength, size: 'max' }),
          fc.string({ unit: 'grapheme', maxLength: Math.ceil(maxLength / 2), size: 'max' }),
        )
        .filter((s) => !s.includes('/') && !s.includes('\0') && bytes(s) <= maxLength);
    const longNameArb = fc
      .option(textArb(253), { nil: null })
      .chain((ext) =>
        textArb(ext === null ? 255 : 254 - bytes(ext))
          .filter((stem) => stem.length > 0)
          .map((stem) => (ext === null ? stem : `${stem}.${ext}`)),
      )
      .filter((s) => s !== '.' && s !== '..');
    fc.assert(
      fc.property(longNameArb, nodeArb, (name, node) => {
        const result = conflictCopyPath(`d/${name}`, AT, node);
        expect(dirName(result)).toBe('d/');
        expect(bytes(baseName(result))).toBeLessThanOrEqual(255);
        expect(isWellFormed(result)).toBe(true);
      }),
      // Shrinking 250-byte strings is slow; the fixed case above is the readable counterexample.
      { endOnFailure: true },
    );
  });
});

describe('isConflictCopy', () => {
  it.each([
    { description: 'the SPEC example', local: 'notes.sync-conflict-20261123-140501-laptop.txt', expected: true },
    { description: 'nested, no extension', local: 'a/b/README.sync-conflict-20261123-140501-desk', expected: true },
    { description: 'with a counter', local: '.bashrc.sync-conflict-20261123-140501-laptop-2', expected: true },
    { description: 'an ordinary file', local: 'notes.txt', expected: false },
    { description: 'only a directory is a copy', local: 'x.sync-conflict-20261123-140501-laptop/notes.txt', expected: false },
    { description: 'date too short', local: 'notes.sync-conflict-2026112-140501-laptop.txt', expected: false },
    { description: 'time missing', local: 'notes.sync-conflict-20261123-laptop.txt', expected: false },
    { description: 'no leading dot before the tag', local: 'sync-conflict-20261123-140501-laptop', expected: false },
    { description: 'a similar word', local: 'notes.sync-conflicts.txt', expected: false },
  ])('$description: $local → $expected', ({ local, expected }) => {
    expect(isConflictCopy(local)).toBe(expected);
  });
});

describe('parseConflictCopy', () => {
  it.each([
    { description: 'the SPEC example', copy: 'notes.sync-conflict-20261123-140501-desk.txt', exists: [], original: 'notes.txt', node: 'desk' },
    { description: 'no extension', copy: 'README.sync-conflict-20261123-140501-desk', exists: ['README'], original: 'README', node: 'desk' },
    { description: 'a nested a.tar.gz', copy: 'x/a.tar.sync-conflict-20261123-140501-laptop.gz', exists: [], original: 'x/a.tar.gz', node: 'laptop' },
    { description: 'a dotted node name and an extension', copy: 'a.sync-conflict-20261123-140501-my.host.txt', exists: ['a.txt'], original: 'a.txt', node: 'my.host' },
    { description: 'a dotted node name and no extension: the existing original decides', copy: 'a.sync-conflict-20261123-140501-my.host', exists: ['a'], original: 'a', node: 'my.host' },
  ])('$description', ({ copy, exists, original, node }) => {
    const parsed = parseConflictCopy(copy, (p) => exists.includes(p));
    expect(parsed).toEqual({ original, node, time: AT });
  });

  it('is null for names that are not conflict copies', () => {
    expect(parseConflictCopy('notes.txt')).toBeNull();
    expect(parseConflictCopy('notes.sync-conflict-2026-desk.txt')).toBeNull();
  });

  it('reads back every name conflictCopyPath makes', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z]{1,8}(\.[a-z]{1,3})?$/),
        fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/),
        (name, node) => {
          const copy = conflictCopyPath(`d/${name}`, AT, node);
          expect(parseConflictCopy(copy, (p) => p === `d/${name}`)).toEqual({ original: `d/${name}`, node, time: AT });
        },
      ),
    );
  });
});

describe('conflictTargetCandidates: where a client puts its own version of a conflict', () => {
  const first = (to: string, n: number): string[] => {
    const out: string[] = [];
    for (const c of conflictTargetCandidates(to)) {
      out.push(c);
      if (out.length === n) break;
    }
    return out;
  };
  it.each([
    ['d/f.sync-conflict-20261123-140501-a.txt', ['d/f.sync-conflict-20261123-140501-a.txt', 'd/f.sync-conflict-20261123-140501-a (local 1).txt', 'd/f.sync-conflict-20261123-140501-a (local 2).txt']],
    ['noext', ['noext', 'noext (local 1)', 'noext (local 2)']],
    ['d/.hidden', ['d/.hidden', 'd/.hidden (local 1)', 'd/.hidden (local 2)']],
  ])('%s', (to, expected) => {
    expect(first(to, 3)).toEqual(expected);
  });
  it('ends after its tries', () => {
    expect([...conflictTargetCandidates('x.txt', 3)]).toEqual(['x.txt', 'x (local 1).txt', 'x (local 2).txt']);
  });
});

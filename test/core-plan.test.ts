// Table-driven tests of push planning (src/core/plan.ts): local observations + base index ->
// ops, bases to re-stamp, and paths to look at again. Mutagen's reconcile_test.go is the model.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { baseViewOf, bringsBaseChildren, planPush, pushPhases, type Observed } from '../src/core/plan.js';
import type { BaseRecord, Entry, FileEntry, PushOp } from '../src/core/types.js';

const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);
const file = (hash: string, mode = 0o644): FileEntry => ({ type: 'file', size: 10, mtime: 1_700_000_000_000, mode, hash });
const dir = (mode = 0o755): Entry => ({ type: 'dir', mode });
const stat = (ino: number, ctimeMs = 1) => ({ ino, size: 10, mtimeMs: 1_700_000_000_000, ctimeMs });
const base = (seq: number, entry: Entry, ino: number): BaseRecord => ({ seq, entry, stat: stat(ino) });
const seen = (entry: Entry, ino: number, ctimeMs = 1): Observed => ({ entry, stat: stat(ino, ctimeMs) });

interface Case {
  description: string;
  bases: Record<string, BaseRecord>;
  observed: Record<string, Observed | null>;
  noRename?: string[];
  expected: { ops: PushOp[]; recheck?: string[]; restat?: string[] };
}

const cases: Case[] = [
  { description: 'nothing changed', bases: { 'a.txt': base(1, file(HASH_A), 10) }, observed: { 'a.txt': seen(file(HASH_A), 10) }, expected: { ops: [] } },
  {
    description: 'only the fingerprint moved: base re-stamped, nothing pushed',
    bases: { 'a.txt': base(1, file(HASH_A), 10) },
    observed: { 'a.txt': seen(file(HASH_A), 10, 99) },
    expected: { ops: [], restat: ['a.txt'] },
  },
  {
    description: 'new file: put with an upload',
    bases: {},
    observed: { 'n.txt': seen(file(HASH_A), 11) },
    expected: { ops: [{ op: 'put', path: 'n.txt', base: null, entry: file(HASH_A), upload: '' }] },
  },
  {
    description: 'chmod only: metadata put, no upload',
    bases: { 'a.txt': base(1, file(HASH_A), 10) },
    observed: { 'a.txt': seen(file(HASH_A, 0o755), 10, 2) },
    expected: { ops: [{ op: 'put', path: 'a.txt', base: 1, entry: file(HASH_A, 0o755), upload: null }] },
  },
  {
    description: 'deleted file',
    bases: { 'a.txt': base(1, file(HASH_A), 10) },
    observed: { 'a.txt': null },
    expected: { ops: [{ op: 'delete', path: 'a.txt', base: 1 }] },
  },
  {
    description: 'file renamed (same inode, same content)',
    bases: { 'a.txt': base(4, file(HASH_A), 10) },
    observed: { 'a.txt': null, 'b.txt': seen(file(HASH_A), 10) },
    expected: { ops: [{ op: 'rename', from: 'a.txt', to: 'b.txt', base: 4, toBase: null, entry: file(HASH_A) }] },
  },
  {
    description: 'chmod after rename: the rename carries the new mode (the server restamps)',
    bases: { 'a.txt': base(4, file(HASH_A), 10) },
    observed: { 'a.txt': null, 'b.txt': seen(file(HASH_A, 0o755), 10) },
    expected: { ops: [{ op: 'rename', from: 'a.txt', to: 'b.txt', base: 4, toBase: null, entry: file(HASH_A, 0o755) }] },
  },
  {
    description: 'renamed and edited: put + delete',
    bases: { 'a.txt': base(4, file(HASH_A), 10) },
    observed: { 'a.txt': null, 'b.txt': seen(file(HASH_B), 10) },
    expected: {
      ops: [
        { op: 'put', path: 'b.txt', base: null, entry: file(HASH_B), upload: '' },
        { op: 'delete', path: 'a.txt', base: 4 },
      ],
    },
  },
  {
    description: 'a stale rename is retried as put + delete',
    bases: { 'a.txt': base(4, file(HASH_A), 10) },
    observed: { 'a.txt': null, 'b.txt': seen(file(HASH_A), 10) },
    noRename: ['b.txt'],
    expected: {
      ops: [
        { op: 'put', path: 'b.txt', base: null, entry: file(HASH_A), upload: '' },
        { op: 'delete', path: 'a.txt', base: 4 },
      ],
    },
  },
  {
    description: 'a hard link (the old name still there) is a new file, not a rename',
    bases: { 'one.txt': base(4, file(HASH_A), 10) },
    observed: { 'one.txt': seen(file(HASH_A), 10), 'two.txt': seen(file(HASH_A), 10) },
    expected: { ops: [{ op: 'put', path: 'two.txt', base: null, entry: file(HASH_A), upload: '' }] },
  },
  {
    description: 'directory renamed: children the server has are folded into it',
    bases: { d: base(1, dir(), 20), 'd/x.txt': base(2, file(HASH_A), 21) },
    observed: { d: null, 'd/x.txt': null, e: seen(dir(), 20), 'e/x.txt': seen(file(HASH_A), 21) },
    expected: { ops: [{ op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir() }], recheck: [] },
  },
  {
    description: 'ENOENT under a renamed parent: a file new in the renamed directory is looked at again, never dropped',
    bases: { d: base(1, dir(), 20) },
    observed: { d: null, 'd/new.txt': null, e: seen(dir(), 20), 'e/new.txt': seen(file(HASH_B), 22) },
    expected: { ops: [{ op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir() }], recheck: ['e/new.txt'] },
  },
  {
    description: 'a child chmodded inside a renamed directory is folded, then looked at again',
    bases: { d: base(1, dir(), 20), 'd/x.txt': base(2, file(HASH_A), 21) },
    observed: { d: null, 'd/x.txt': null, e: seen(dir(), 20), 'e/x.txt': seen(file(HASH_A, 0o700), 21) },
    expected: { ops: [{ op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir() }], recheck: ['e/x.txt'] },
  },
  {
    description: 'a child edited inside a renamed directory (new inode) is looked at again after the rename',
    bases: { d: base(1, dir(), 20), 'd/x.txt': base(2, file(HASH_A), 21) },
    observed: { d: null, 'd/x.txt': null, e: seen(dir(), 20), 'e/x.txt': seen(file(HASH_B), 23) },
    expected: { ops: [{ op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir() }], recheck: ['e/x.txt'] },
  },
  {
    description: 'a child renamed inside a renamed directory waits for the directory',
    bases: { d: base(1, dir(), 20), 'd/x.txt': base(2, file(HASH_A), 21) },
    observed: { d: null, 'd/x.txt': null, e: seen(dir(), 20), 'e/y.txt': seen(file(HASH_A), 21) },
    expected: { ops: [{ op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir() }], recheck: ['d/x.txt', 'e/y.txt'] },
  },
  {
    description: 'something new at the old name of a renamed directory is not folded',
    bases: { d: base(1, dir(), 20) },
    observed: { d: null, e: seen(dir(), 20), 'd/again.txt': seen(file(HASH_A), 30) },
    expected: { ops: [{ op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir() }], recheck: ['d/again.txt'] },
  },
  {
    description: 'a directory whose child moves out of a renamed directory is not deleted before that move',
    bases: {
      old: base(1, dir(), 20),
      'old/keep': base(2, dir(), 21),
      gone: base(3, dir(), 30),
      'gone/child': base(4, dir(), 31),
    },
    observed: { old: null, 'old/keep': null, new: seen(dir(), 20), 'new/keep': seen(dir(), 21), gone: null, 'gone/child': null, 'new/keep/child': seen(dir(), 31) },
    expected: {
      ops: [{ op: 'rename', from: 'old', to: 'new', base: 1, toBase: null, entry: dir() }],
      recheck: ['gone/child', 'new/keep/child', 'gone'],
    },
  },
  {
    description: 'a deleted directory waits for a child that moved into a renamed directory; the rename and the other deletes go',
    bases: {
      top: base(1, dir(), 1),
      'top/gone': base(2, dir(), 2),
      'top/gone/sub': base(3, dir(), 3),
      'top/gone/sub/moved': base(4, dir(), 4),
      'top/gone/child': base(5, dir(), 5),
      'top/dst': base(6, dir(), 6),
    },
    observed: {
      'top/gone': null,
      'top/gone/sub': null,
      'top/gone/sub/moved': null,
      'top/gone/child': null,
      'top/dst/new': seen(dir(), 4),
      'top/dst/new/child': seen(dir(), 5),
    },
    expected: {
      ops: [
        { op: 'rename', from: 'top/gone/sub/moved', to: 'top/dst/new', base: 4, toBase: null, entry: dir() },
        { op: 'delete', path: 'top/gone/sub', base: 3 },
      ],
      recheck: ['top/gone/child', 'top/dst/new/child', 'top/gone'],
    },
  },
  {
    description: 'a directory moved one level down is a rename',
    bases: { d: base(1, dir(), 20) },
    observed: { d: null, 'd2/d': seen(dir(), 20) },
    expected: { ops: [{ op: 'rename', from: 'd', to: 'd2/d', base: 1, toBase: null, entry: dir() }] },
  },
  {
    description: 'type change: file replaced by a directory',
    bases: { p: base(1, file(HASH_A), 10) },
    observed: { p: seen(dir(), 40) },
    expected: { ops: [{ op: 'put', path: 'p', base: 1, entry: dir(), upload: null }] },
  },
];

describe('planPush', () => {
  it.each(cases)('$description', ({ bases, observed, noRename, expected }) => {
    const plan = planPush(new Map(Object.entries(observed)), baseViewOf(new Map(Object.entries(bases))), new Set(noRename ?? []));
    expect(plan.ops).toEqual(expected.ops);
    if (expected.recheck !== undefined) expect(plan.recheck).toEqual(expected.recheck);
    expect(plan.restat.map(([p]) => p)).toEqual(expected.restat ?? []);
  });

  const pathArb = fc.constantFrom('a', 'b', 'a/x', 'a/y', 'b/x', 'c/z');
  const entryArb: fc.Arbitrary<Entry> = fc.oneof(fc.constantFrom(HASH_A, HASH_B).map((h) => file(h)), fc.constant(dir()));
  const worldArb = fc.record({
    bases: fc.dictionary(pathArb, fc.tuple(entryArb, fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 9 }))),
    observed: fc.dictionary(pathArb, fc.option(fc.tuple(entryArb, fc.integer({ min: 1, max: 8 })), { nil: null })),
  });

  it('never loses a looked-at path: each is in an op, folded into a rename, clean, or looked at again', () => {
    fc.assert(
      fc.property(worldArb, ({ bases, observed }) => {
        const baseMap = new Map(Object.entries(bases).map(([p, [e, ino, seq]]) => [p, base(seq, e, ino)] as const));
        const obs = new Map(Object.entries(observed).map(([p, o]) => [p, o === null ? null : seen(o[0], o[1])] as const));
        const plan = planPush(obs, baseViewOf(baseMap));
        const touched = new Set(plan.ops.flatMap((op) => (op.op === 'rename' ? [op.from, op.to] : [op.path])));
        const renames = plan.ops.filter((op) => op.op === 'rename');
        for (const [p, o] of obs) {
          const b = baseMap.get(p) ?? null;
          const isClean = (o === null && b === null) || (o !== null && b !== null && JSON.stringify(o.entry) === JSON.stringify(b.entry));
          const isFolded = renames.some((r) => r.op === 'rename' && (p.startsWith(`${r.from}/`) || p.startsWith(`${r.to}/`)));
          expect(touched.has(p) || isClean || isFolded || plan.recheck.includes(p), p).toBe(true);
        }
        // Nothing new under a renamed directory is ever folded away silently.
        for (const r of renames) {
          if (r.op !== 'rename' || r.entry.type !== 'dir') continue;
          for (const [p, o] of obs) {
            if (o === null || !p.startsWith(`${r.to}/`)) continue;
            const counterpart = baseMap.get(r.from + p.slice(r.to.length)) ?? null;
            const carried = counterpart !== null && JSON.stringify(counterpart.entry) === JSON.stringify(o.entry);
            expect(carried || plan.recheck.includes(p) || touched.has(p), p).toBe(true);
          }
        }
      }),
    );
  });

  it('planning what the base already says plans nothing', () => {
    fc.assert(
      fc.property(worldArb, ({ bases }) => {
        const baseMap = new Map(Object.entries(bases).map(([p, [e, ino, seq]]) => [p, base(seq, e, ino)] as const));
        const obs = new Map([...baseMap].map(([p, b]) => [p, { entry: b.entry, stat: b.stat }] as const));
        const plan = planPush(obs, baseViewOf(baseMap));
        expect(plan.ops).toEqual([]);
        expect(plan.recheck).toEqual([]);
      }),
    );
  });
});

describe('pushPhases', () => {
  const upload = (path: string, baseSeq: number | null = null): PushOp => ({ op: 'put', path, base: baseSeq, entry: file(HASH_A), upload: '' });
  const meta = (path: string): PushOp => ({ op: 'put', path, base: 1, entry: file(HASH_A, 0o755), upload: null });
  const link = (path: string): PushOp => ({ op: 'put', path, base: 3, entry: { type: 'symlink', target: 't' }, upload: null });
  const mkdir = (path: string): PushOp => ({ op: 'put', path, base: null, entry: dir(), upload: null });
  const del = (path: string): PushOp => ({ op: 'delete', path, base: 2 });
  const mv = (from: string, to: string): PushOp => ({ op: 'rename', from, to, base: 1, toBase: 3, entry: file(HASH_A) });
  const label = (op: PushOp): string => (op.op === 'rename' ? `mv ${op.from}>${op.to}` : op.op === 'delete' ? `rm ${op.path}` : `${op.entry.type} ${op.path}`);
  it.each<{ description: string; ops: PushOp[]; first: string[]; uploads: string[]; last: string[] }>([
    { description: 'empty', ops: [], first: [], uploads: [], last: [] },
    {
      description: 'dirs, renames, links and metadata first; uploads; deletes last',
      ops: [mkdir('d'), mv('m', 'n'), link('l'), meta('c'), upload('u'), del('x')],
      first: ['dir d', 'mv m>n', 'symlink l', 'file c'],
      uploads: ['file u'],
      last: ['rm x'],
    },
    {
      description: 'a dir replaced by an uploaded file: its children are deleted in the first phase (seed 3122)',
      ops: [del('a/b/c'), del('a/b'), upload('a', 3), del('z')],
      first: ['rm a/b/c', 'rm a/b'],
      uploads: ['file a'],
      last: ['rm z'],
    },
    {
      description: 'a dir replaced by a link: its children are deleted before it, in order',
      ops: [del('a/b'), link('a')],
      first: ['rm a/b', 'symlink a'],
      uploads: [],
      last: [],
    },
    {
      description: 'a dir replaced by a renamed file: its children are deleted before the rename',
      ops: [del('a/b'), mv('f', 'a')],
      first: ['rm a/b', 'mv f>a'],
      uploads: [],
      last: [],
    },
  ])('$description', ({ ops, first, uploads, last }) => {
    const phases = pushPhases(ops);
    expect(phases.first.map(label)).toEqual(first);
    expect(phases.uploads.map(label)).toEqual(uploads);
    expect(phases.last.map(label)).toEqual(last);
  });

  it('a planned file over a directory: the plan and its phases delete the children before the put', () => {
    const plan = planPush(
      new Map<string, Observed | null>([
        ['a', seen(file(HASH_B), 20)],
        ['a/b', null],
      ]),
      baseViewOf(new Map([['a', base(3, dir(), 10)], ['a/b', base(4, file(HASH_A), 11)]])),
    );
    const phases = pushPhases(plan.ops);
    expect(phases.first.map(label)).toEqual(['rm a/b']);
    expect(phases.uploads.map(label)).toEqual(['file a']);
    expect(phases.last).toEqual([]);
  });
});

describe('bringsBaseChildren', () => {
  const symlink: Entry = { type: 'symlink', target: 't' };
  it.each<{ description: string; base: Entry | null; local: Entry | null; expected: boolean }>([
    { description: 'a directory deleted', base: dir(), local: null, expected: true },
    { description: 'a directory replaced by a file', base: dir(), local: file(HASH_A), expected: true },
    { description: 'a directory replaced by a link (seed 3956)', base: dir(), local: symlink, expected: true },
    { description: 'a directory still a directory (even chmodded)', base: dir(), local: dir(0o700), expected: false },
    { description: 'a file replaced by a directory', base: file(HASH_A), local: dir(), expected: false },
    { description: 'a file deleted', base: file(HASH_A), local: null, expected: false },
    { description: 'a new directory', base: null, local: dir(), expected: false },
    { description: 'nothing either side', base: null, local: null, expected: false },
  ])('$description', ({ base: b, local, expected }) => {
    expect(bringsBaseChildren(b, local)).toBe(expected);
  });
});

// Table-driven tests of push planning (src/core/plan.ts): local observations + base index ->
// ops, bases to re-stamp, and paths to look at again. Mutagen's reconcile_test.go is the model.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { baseViewOf, planPush, type Observed } from '../src/core/plan.js';
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

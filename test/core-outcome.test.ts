// Table-driven tests of outcome handling (src/core/outcome.ts): the server's answer to one
// pushed op -> base-index edits and follow-up work.
import { describe, expect, it } from 'vitest';
import { decidePushOutcome, type PushOutcome } from '../src/core/outcome.js';
import { baseViewOf, type Observed } from '../src/core/plan.js';
import type { BaseRecord, Entry, FileEntry, PushOp, PushResult } from '../src/core/types.js';

const HASH_A = 'a'.repeat(64);
const HASH_B = 'b'.repeat(64);
const file = (hash: string, mode = 0o644): FileEntry => ({ type: 'file', size: 10, mtime: 1_700_000_000_000, mode, hash });
const dir: Entry = { type: 'dir', mode: 0o755 };
const stat = (ino: number, ctimeMs = 1) => ({ ino, size: 10, mtimeMs: 1_700_000_000_000, ctimeMs });
const planned = (entry: Entry, ino: number): Observed => ({ entry, stat: stat(ino) });

interface Case {
  description: string;
  bases: Record<string, BaseRecord>;
  op: PushOp;
  result: PushResult;
  observed: Observed | null;
  expected: Partial<PushOutcome>;
}

const cases: Case[] = [
  {
    description: 'put ok: the base is what was sent, with the fingerprint planned from (never a later stat)',
    bases: {},
    op: { op: 'put', path: 'a.txt', base: null, entry: file(HASH_A), upload: 'u' },
    result: { status: 'ok', seq: 5 },
    observed: planned(file(HASH_A), 10),
    expected: { setBases: [['a.txt', { seq: 5, entry: file(HASH_A), stat: stat(10) }]], recheck: ['a.txt'], pull: null, failure: null },
  },
  {
    description: 'delete ok: the base goes',
    bases: { 'a.txt': { seq: 3, entry: file(HASH_A), stat: stat(10) } },
    op: { op: 'delete', path: 'a.txt', base: 3 },
    result: { status: 'ok', seq: 6 },
    observed: null,
    expected: { deleteBases: ['a.txt'], setBases: [], recheck: ['a.txt'] },
  },
  {
    description: 'directory rename ok: children move with their new seqs, are verified, and the new subtree is rescanned from disk',
    bases: { d: { seq: 1, entry: dir, stat: stat(20) }, 'd/x': { seq: 2, entry: file(HASH_A), stat: stat(21) } },
    op: { op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir },
    result: { status: 'ok', seq: 7, moved: [['e/x', 8, 2]] },
    observed: planned(dir, 20),
    expected: {
      deleteBases: ['d', 'd/x'],
      setBases: [
        ['e/x', { seq: 8, entry: file(HASH_A), stat: stat(21) }],
        ['e', { seq: 7, entry: dir, stat: stat(20) }],
      ],
      recheck: ['e/x', 'e', 'd'],
      rescanTrees: ['e'],
    },
  },
  {
    // Seeds 390, 870: the client missed an edit of d/x (seq 5, made elsewhere while it was away);
    // adopting seq 8 with its old entry made the feed's version of e/x look already had.
    description: 'directory rename ok: a child the server moved in another version than our base keeps its old seq (the feed brings the server\'s)',
    bases: { d: { seq: 1, entry: dir, stat: stat(20) }, 'd/x': { seq: 2, entry: file(HASH_A), stat: stat(21) } },
    op: { op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir },
    result: { status: 'ok', seq: 7, moved: [['e/x', 8, 5]] },
    observed: planned(dir, 20),
    expected: {
      deleteBases: ['d', 'd/x'],
      setBases: [
        ['e/x', { seq: 2, entry: file(HASH_A), stat: stat(21) }],
        ['e', { seq: 7, entry: dir, stat: stat(20) }],
      ],
      recheck: ['e/x', 'e', 'd'],
    },
  },
  {
    description: 'directory rename ok: a child the server did not move (deleted there meanwhile) loses its base and is looked at again',
    bases: { d: { seq: 1, entry: dir, stat: stat(20) }, 'd/x': { seq: 2, entry: file(HASH_A), stat: stat(21) }, 'd/y': { seq: 3, entry: file(HASH_B), stat: stat(22) } },
    op: { op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir },
    result: { status: 'ok', seq: 7, moved: [['e/y', 8, 3]] },
    observed: planned(dir, 20),
    expected: {
      deleteBases: ['d', 'd/x', 'd/y'],
      setBases: [
        ['e/y', { seq: 8, entry: file(HASH_B), stat: stat(22) }],
        ['e', { seq: 7, entry: dir, stat: stat(20) }],
      ],
      recheck: ['e/x', 'e/y', 'e', 'd'],
    },
  },
  {
    description: 'directory rename ok: an empty moved list means the server held no child (each based child is pushed as new)',
    bases: { d: { seq: 1, entry: dir, stat: stat(20) }, 'd/x': { seq: 2, entry: file(HASH_A), stat: stat(21) } },
    op: { op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir },
    result: { status: 'ok', seq: 7, moved: [] },
    observed: planned(dir, 20),
    expected: { deleteBases: ['d', 'd/x'], setBases: [['e', { seq: 7, entry: dir, stat: stat(20) }]], recheck: ['e/x', 'e', 'd'] },
  },
  {
    description: 'directory rename ok: without a moved list (left out for its size) children keep their old seqs, the feed verifies them',
    bases: { d: { seq: 1, entry: dir, stat: stat(20) }, 'd/x': { seq: 2, entry: file(HASH_A), stat: stat(21) } },
    op: { op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir },
    result: { status: 'ok', seq: 7 },
    observed: planned(dir, 20),
    expected: {
      setBases: [
        ['e/x', { seq: 2, entry: file(HASH_A), stat: stat(21) }],
        ['e', { seq: 7, entry: dir, stat: stat(20) }],
      ],
    },
  },
  {
    description: 'directory rename ok: an old server\'s moved list without the seq before the move adopts nothing',
    bases: { d: { seq: 1, entry: dir, stat: stat(20) }, 'd/x': { seq: 2, entry: file(HASH_A), stat: stat(21) } },
    op: { op: 'rename', from: 'd', to: 'e', base: 1, toBase: null, entry: dir },
    result: { status: 'ok', seq: 7, moved: [['e/x', 8]] },
    observed: planned(dir, 20),
    expected: {
      setBases: [
        ['e/x', { seq: 2, entry: file(HASH_A), stat: stat(21) }],
        ['e', { seq: 7, entry: dir, stat: stat(20) }],
      ],
    },
  },
  {
    description: 'file rename ok (chmod after rename): the base keeps the planned fingerprint',
    bases: { 'a.txt': { seq: 1, entry: file(HASH_A), stat: stat(10) } },
    op: { op: 'rename', from: 'a.txt', to: 'b.txt', base: 1, toBase: null, entry: file(HASH_A, 0o755) },
    result: { status: 'ok', seq: 9 },
    observed: planned(file(HASH_A, 0o755), 10),
    expected: { deleteBases: ['a.txt'], setBases: [['b.txt', { seq: 9, entry: file(HASH_A, 0o755), stat: stat(10) }]], rescanTrees: [] },
  },
  {
    // churn seed 659307139: m140/f86.txt -> m31/r139.txt was pushed, but while it was in flight
    // r139.txt was renamed on and deleted; nothing looked at m31/r139.txt again, so the hub kept it.
    description: 'file rename ok: both ends are looked at again from disk (the new name may be gone by now)',
    bases: { 'a.txt': { seq: 1, entry: file(HASH_A), stat: stat(10) } },
    op: { op: 'rename', from: 'a.txt', to: 'b.txt', base: 1, toBase: null, entry: file(HASH_A) },
    result: { status: 'ok', seq: 9 },
    observed: planned(file(HASH_A), 10),
    expected: { deleteBases: ['a.txt'], setBases: [['b.txt', { seq: 9, entry: file(HASH_A), stat: stat(10) }]], recheck: ['b.txt', 'a.txt'] },
  },
  {
    // churn seed 1965237925: d81/r117.txt, found by the walk of a new directory, was pushed; it
    // was deleted while the push was in flight and the watcher dropped its create + delete.
    description: 'put ok: the path is looked at again from disk (it may be gone or edited by now)',
    bases: {},
    op: { op: 'put', path: 'd/r.txt', base: null, entry: file(HASH_B), upload: 'u' },
    result: { status: 'ok', seq: 12 },
    observed: planned(file(HASH_B), 30),
    expected: { setBases: [['d/r.txt', { seq: 12, entry: file(HASH_B), stat: stat(30) }]], recheck: ['d/r.txt'] },
  },
  {
    description: 'same with other metadata: record the server entry and push the metadata again',
    bases: {},
    op: { op: 'put', path: 'a.txt', base: null, entry: file(HASH_A, 0o700), upload: 'u' },
    result: { status: 'same', seq: 4, entry: file(HASH_A) },
    observed: planned(file(HASH_A, 0o700), 10),
    expected: { setBases: [['a.txt', { seq: 4, entry: file(HASH_A), stat: stat(10) }]], recheck: ['a.txt'] },
  },
  {
    description: 'edit during a conflict rename: the copy gets the sent entry and the planned fingerprint, and is looked at again',
    bases: { 'f.txt': { seq: 2, entry: file(HASH_A), stat: stat(10) } },
    op: { op: 'put', path: 'f.txt', base: 2, entry: file(HASH_B), upload: 'u' },
    result: { status: 'conflict', copy: 'f.sync-conflict-20260101-000000-b.txt', copySeq: 12, current: { seq: 11, entry: file(HASH_A, 0o600), origin: 'a' } },
    observed: planned(file(HASH_B), 10),
    expected: {
      moveAside: { from: 'f.txt', to: 'f.sync-conflict-20260101-000000-b.txt' },
      deleteBases: ['f.txt'],
      setBases: [['f.sync-conflict-20260101-000000-b.txt', { seq: 12, entry: file(HASH_B), stat: stat(10) }]],
      pull: { path: 'f.txt', seq: 11, entry: file(HASH_A, 0o600), origin: 'a' },
      recheck: ['f.sync-conflict-20260101-000000-b.txt'],
    },
  },
  {
    description: 'stale rename: put + delete next time, both ends looked at again',
    bases: { 'a.txt': { seq: 1, entry: file(HASH_A), stat: stat(10) } },
    op: { op: 'rename', from: 'a.txt', to: 'b.txt', base: 1, toBase: null, entry: file(HASH_A) },
    result: { status: 'stale', current: { seq: 3, entry: file(HASH_B), origin: 'x' } },
    observed: planned(file(HASH_A), 10),
    expected: { noRename: ['b.txt'], recheck: ['b.txt', 'a.txt'], setBases: [], deleteBases: [] },
  },
  {
    description: 'stale put: forget the base and take the server version',
    bases: { 'a.txt': { seq: 1, entry: file(HASH_A), stat: stat(10) } },
    op: { op: 'put', path: 'a.txt', base: 1, entry: file(HASH_A, 0o700), upload: null },
    result: { status: 'stale', current: { seq: 3, entry: file(HASH_B), origin: 'x' } },
    observed: planned(file(HASH_A, 0o700), 10),
    expected: { deleteBases: ['a.txt'], pull: { path: 'a.txt', seq: 3, entry: file(HASH_B), origin: 'x' } },
  },
  {
    description: 'stale with nothing on the server: looked at again (never dropped)',
    bases: { 'a.txt': { seq: 1, entry: file(HASH_A), stat: stat(10) } },
    op: { op: 'put', path: 'a.txt', base: 1, entry: file(HASH_A, 0o700), upload: null },
    result: { status: 'stale', current: null },
    observed: planned(file(HASH_A, 0o700), 10),
    expected: { deleteBases: ['a.txt'], pull: null, recheck: ['a.txt'] },
  },
  {
    description: 'error: a failure task, no base edit',
    bases: {},
    op: { op: 'put', path: 'a.txt', base: null, entry: file(HASH_A), upload: 'u' },
    result: { status: 'error', code: 'ENOSPC', message: 'disk full', permanent: false },
    observed: planned(file(HASH_A), 10),
    expected: { failure: { path: 'a.txt', code: 'ENOSPC', message: 'disk full', permanent: false }, setBases: [], deleteBases: [] },
  },
];

describe('decidePushOutcome', () => {
  it.each(cases)('$description', ({ bases, op, result, observed, expected }) => {
    const out = decidePushOutcome(op, result, observed, baseViewOf(new Map(Object.entries(bases))));
    for (const [key, value] of Object.entries(expected)) expect(out[key as keyof PushOutcome], key).toEqual(value);
  });
});

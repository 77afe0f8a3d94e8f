// What a client sent in pushes whose answer never came (src/core/unanswered.ts): which pulled
// versions hold it (whoever the server names as origin), and when that is settled.
import { describe, expect, it } from 'vitest';
import { sentEntries, UnansweredPushes } from '../src/core/unanswered.js';
import type { Change, Entry, FileEntry, PushOp } from '../src/core/types.js';

const file = (hash: string, mode = 0o644): FileEntry => ({ type: 'file', size: 10, mtime: 1_700_000_000_000, mode, hash });
const A = file('a'.repeat(64));
const B = file('b'.repeat(64));
const dir: Entry = { type: 'dir', mode: 0o755 };
const change = (path: string, seq: number, entry: Entry | null, origin = 'hub'): Change => ({ path, seq, entry, origin });

const putA: PushOp = { op: 'put', path: 'f', base: null, entry: A, upload: 'u1' };
const del: PushOp = { op: 'delete', path: 'gone', base: 3 };
const rename: PushOp = { op: 'rename', from: 'old', to: 'new', base: 4, toBase: null, entry: dir };

describe('sentEntries', () => {
  it('names what each op leaves at each path it touches', () => {
    expect(sentEntries([putA, del, rename])).toEqual([
      ['f', A],
      ['gone', null],
      ['old', null],
      ['new', dir],
    ]);
  });
});

describe('UnansweredPushes', () => {
  it.each<{ description: string; sent: PushOp[]; pulled: Change; expected: boolean }>([
    { description: 'the file we put, recorded by a restarted server as its own edit (seed 659)', sent: [putA], pulled: change('f', 9, A), expected: true },
    { description: 'another content at that path', sent: [putA], pulled: change('f', 9, B), expected: false },
    { description: 'the content we put with another mode', sent: [putA], pulled: change('f', 9, file('a'.repeat(64), 0o600)), expected: false },
    { description: 'a path we sent nothing to', sent: [putA], pulled: change('g', 9, A), expected: false },
    { description: 'a tombstone where we deleted', sent: [del], pulled: change('gone', 9, null), expected: true },
    { description: 'a live version where we deleted', sent: [del], pulled: change('gone', 9, A), expected: false },
    { description: "a rename's target with what we moved there", sent: [rename], pulled: change('new', 9, dir), expected: true },
    { description: "a rename's source, gone", sent: [rename], pulled: change('old', 9, null), expected: true },
  ])('$description → $expected', ({ sent, pulled, expected }) => {
    const pushes = new UnansweredPushes<string>();
    pushes.sending(sent, 'conn1');
    expect(pushes.isWhatWasSent(pulled)).toBe(expected);
  });

  it('an answer settles what its push sent, and only that', () => {
    const pushes = new UnansweredPushes<string>();
    pushes.sending([putA], 'conn1');
    pushes.sending([del], 'conn1');
    pushes.answered([putA]);
    expect(pushes.isWhatWasSent(change('f', 9, A))).toBe(false);
    expect(pushes.isWhatWasSent(change('gone', 9, null))).toBe(true);
  });

  it('a pulled version of a path settles it: a later version with the same content is not ours', () => {
    const pushes = new UnansweredPushes<string>();
    pushes.sending([putA], 'conn1');
    pushes.settle('f');
    expect(pushes.isWhatWasSent(change('f', 12, A))).toBe(false);
  });

  it('a pull past the head of a later connection settles what earlier connections sent, not what this one sent', () => {
    const pushes = new UnansweredPushes<string>();
    pushes.sending([putA], 'conn1');
    pushes.sending([del], 'conn2');
    pushes.settleBefore('conn2');
    expect(pushes.isWhatWasSent(change('f', 9, A))).toBe(false);
    expect(pushes.isWhatWasSent(change('gone', 9, null))).toBe(true);
    expect(pushes.size).toBe(1);
  });
});

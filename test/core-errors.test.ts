// Which failed pushes and pulls a client retries, and which failed commits the hub answers as
// permanent (src/core/errors.ts isPermanentFailure): one table for both roles.
import { describe, expect, it } from 'vitest';
import { isPermanentFailure, type FailedStep } from '../src/core/errors.js';

describe('isPermanentFailure', () => {
  it.each<{ code: unknown; op: FailedStep; expected: boolean }>([
    { code: 'EACCES', op: 'push', expected: true },
    { code: 'EACCES', op: 'pull', expected: true },
    { code: 'BAD_PATH', op: 'pull', expected: true },
    // A parent that is a file or link now, here or on the hub: a state in flight, retried.
    { code: 'UNSAFE_PATH', op: 'push', expected: false },
    { code: 'UNSAFE_PATH', op: 'pull', expected: false },
    { code: 'ENOENT', op: 'push', expected: false },
    { code: 'ENOTEMPTY', op: 'pull', expected: false },
    { code: 'LOCAL_CHANGE', op: 'pull', expected: false },
    { code: undefined, op: 'push', expected: false },
    { code: 13, op: 'pull', expected: false },
    // The hub's commit: the same codes, and a read-only folder or a type in the way of the op.
    { code: 'EACCES', op: 'commit', expected: true },
    { code: 'ENAMETOOLONG', op: 'commit', expected: true },
    { code: 'UNSAFE_PATH', op: 'commit', expected: false },
    { code: 'EROFS', op: 'commit', expected: true },
    { code: 'EISDIR', op: 'commit', expected: true },
    { code: 'ENOTDIR', op: 'commit', expected: false },
    { code: 'ENOENT', op: 'commit', expected: false },
    { code: 'UPLOAD_MISSING', op: 'commit', expected: false },
    // On a client those are a local change in flight (or a mount that may come back): retried.
    { code: 'EISDIR', op: 'pull', expected: false },
    { code: 'ENOTDIR', op: 'push', expected: false },
    { code: 'EROFS', op: 'pull', expected: false },
    { code: 'PERMISSION_DENIED', op: 'push', expected: true },
    // Not a code of the table, even though it is a property of every object.
    { code: 'toString', op: 'push', expected: false },
  ])('$code on $op: permanent $expected', ({ code, op, expected }) => {
    expect(isPermanentFailure(code, op)).toBe(expected);
  });
});

// Which failed pushes and pulls a client retries (src/core/errors.ts isPermanentFailure).
import { describe, expect, it } from 'vitest';
import { isPermanentFailure } from '../src/core/errors.js';

describe('isPermanentFailure', () => {
  it.each<{ code: unknown; op: 'push' | 'pull'; expected: boolean }>([
    { code: 'EACCES', op: 'push', expected: true },
    { code: 'EACCES', op: 'pull', expected: true },
    { code: 'BAD_PATH', op: 'pull', expected: true },
    { code: 'UNSAFE_PATH', op: 'push', expected: true },
    // A local parent that is a file or link now: a local change in flight, retried.
    { code: 'UNSAFE_PATH', op: 'pull', expected: false },
    { code: 'ENOENT', op: 'push', expected: false },
    { code: 'ENOTEMPTY', op: 'pull', expected: false },
    { code: 'LOCAL_CHANGE', op: 'pull', expected: false },
    { code: undefined, op: 'push', expected: false },
    { code: 13, op: 'pull', expected: false },
  ])('$code on $op: permanent $expected', ({ code, op, expected }) => {
    expect(isPermanentFailure(code, op)).toBe(expected);
  });
});

/**
 * File metadata, read and written the one way the program does it: `lstatOrNull` (null when
 * nothing is there), and the modification time as it travels (integer milliseconds) read from a
 * stat and turned into the argument that stores it exactly.
 */
import fs from 'node:fs';
import { SyncError } from '../core/errors.js';

/**
 * The lstat of `abs` (a final symlink is not followed), or null when nothing is there: missing,
 * or a parent is not a directory. Other errors (EACCES, ELOOP, ...) are thrown. Synchronous: one
 * metadata syscall costs microseconds, an async one a thread-pool round trip.
 */
export function lstatOrNull(abs: string): fs.Stats | null {
  try {
    return fs.lstatSync(abs, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | null)?.code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/** Modification time as it travels: integer milliseconds, rounded down. */
export function mtimeOf(st: fs.Stats): number {
  return Math.floor(st.mtimeMs);
}

/**
 * The time argument for utimes/futimes that stores exactly `ms` (integer milliseconds), so that
 * `mtimeOf` (and `Math.round`) read back `ms`: seconds of `ms + 0.1 ms`, because a plain
 * `ms / 1000` is truncated to the nanosecond by libuv and often reads back as `ms - 0.001`; and a
 * numeric string, because Node replaces a negative *number* by "now" (a string it takes as is).
 * @throws SyncError 'BAD_MTIME' when `ms` is not a safe integer.
 */
export function fsTimeOf(ms: number): string {
  if (!Number.isSafeInteger(ms)) throw new SyncError('BAD_MTIME', `setMtime: expected integer milliseconds, got ${String(ms)}`);
  return String((ms + 0.1) / 1000);
}

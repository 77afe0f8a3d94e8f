/**
 * A lock between processes on one file: `<file>.lock`, created with O_CREAT|O_EXCL and removed
 * when done. Used for the read-check-append of known_hosts under accept-new, so two connections
 * (two daemons, or `check` and `monitor`) that both meet a new host pin at most one key.
 */
import fsp from 'node:fs/promises';
import { SystemsyncError } from '../core/errors.js';

/** The lock stayed taken past the timeout. code 'LOCK_TIMEOUT'. */
export class FileLockError extends SystemsyncError {
  constructor(message: string) {
    super('LOCK_TIMEOUT', message);
  }
}

export interface FileLockOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** A lock file older than this is left over from a crash and is taken over (default 30 s). */
  staleMs?: number;
}

/** Runs `fn` while holding `<file>.lock`. @throws FileLockError when the lock stays taken past the timeout. */
export async function withFileLock<T>(file: string, fn: () => Promise<T>, options: FileLockOptions = {}): Promise<T> {
  const lockPath = `${file}.lock`;
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  const staleMs = options.staleMs ?? 30_000;
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    try {
      const handle = await fsp.open(lockPath, 'wx', 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await fsp.lstat(lockPath).catch(() => null);
      if (st !== null && Date.now() - st.mtimeMs > staleMs) {
        await fsp.rm(lockPath, { force: true });
        continue;
      }
      if (Date.now() >= deadline) throw new FileLockError(`${lockPath} stays locked (another systemsync process is adding a host key?); remove it if no such process runs`);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
  try {
    return await fn();
  } finally {
    await fsp.rm(lockPath, { force: true });
  }
}

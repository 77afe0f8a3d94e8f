/** Helpers of SshSession: local file writes, small-file reads, abort checks and the request flow control (chunk pool, semaphore, request window). */
import { createHash } from 'node:crypto';
import fs, { constants as fsConstants } from 'node:fs';
import fsp from 'node:fs/promises';
import type { Stats } from 'ssh2';
import { HashMismatchError, TransferAbortedError, LocalFileError } from './errors.js';
import type { DownloadOptions, RemoteStat, TransferResult } from './transfertypes.js';

/**
 * Files up to this size go in one piece: read or written locally with one synchronous call (a few
 * microseconds from the page cache, where each async call is a threadpool round trip) and their
 * SFTP requests pipelined with the close. Memory: at most MAX_OPEN_FILES such files at once.
 */
export const SMALL_FILE_MAX = 256 * 1024;

export function toRemoteStat(stats: Stats): RemoteStat {
  const type = stats.isFile() ? 'file' : stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'symlink' : 'other';
  return { type, size: stats.size, mode: stats.mode & 0o7777, mtimeMs: stats.mtime * 1000 };
}

export async function writeLocal(local: fsp.FileHandle, localPath: string, data: Buffer, position: number): Promise<void> {
  try {
    let offset = 0;
    while (offset < data.length) {
      const { bytesWritten } = await local.write(data, offset, data.length - offset, position + offset);
      offset += bytesWritten;
    }
  } catch (err) {
    throw new LocalFileError(`cannot write ${localPath}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Consecutive pieces of a download, written to the local file together (one writev) once they
 * reach `maxBytes`, instead of one write per request. `flush` writes what is held; each piece's
 * `recycle` callback runs once its bytes are written (its buffer may then be reused).
 */
export class LocalWriteBatch {
  private pieces: Buffer[] = [];
  private recycled: Array<() => void> = [];
  private start = 0;
  private bytes = 0;

  constructor(
    private readonly local: fsp.FileHandle,
    private readonly localPath: string,
    private readonly maxBytes: number,
  ) {}

  /** Holds `data`, meant for `position`; writes what is held first if it does not end there. */
  async add(data: Buffer, position: number, recycle?: () => void): Promise<void> {
    if (this.bytes > 0 && this.start + this.bytes !== position) await this.flush();
    if (this.bytes === 0) this.start = position;
    this.pieces.push(data);
    if (recycle !== undefined) this.recycled.push(recycle);
    this.bytes += data.length;
    if (this.bytes >= this.maxBytes) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.bytes === 0) return;
    const [pieces, recycled, start, bytes] = [this.pieces, this.recycled, this.start, this.bytes];
    this.pieces = [];
    this.recycled = [];
    this.bytes = 0;
    let done: number;
    try {
      ({ bytesWritten: done } = await this.local.writev(pieces, start));
    } catch (err) {
      throw new LocalFileError(`cannot write ${this.localPath}: ${(err as Error).message}`, { cause: err });
    }
    if (done < bytes) await writeLocal(this.local, this.localPath, Buffer.concat(pieces, bytes).subarray(done), start + done);
    for (const recycle of recycled) recycle();
  }
}

/**
 * The whole content of `localPath` if it is a regular file of up to SMALL_FILE_MAX bytes, read
 * synchronously (open, fstat, one read, close); null for anything else, and for a file that grew
 * while it was read (the streaming path then reads it to wherever its end is). The read asks for
 * one byte more than the size fstat gave, so growth shows without a second read. O_NONBLOCK: a
 * FIFO put there does not block the open (it is not a regular file, so the streaming path gets it).
 */
export function readSmallFile(localPath: string): Buffer | null {
  let fd: number;
  try {
    fd = fs.openSync(localPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (err) {
    throw new LocalFileError(`cannot read ${localPath}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const stats = fs.fstatSync(fd);
    if (!stats.isFile() || stats.size > SMALL_FILE_MAX) return null;
    const buffer = Buffer.allocUnsafe(stats.size + 1);
    let length = 0;
    while (length < buffer.length) {
      const bytesRead = fs.readSync(fd, buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      // Asked for one byte past the size and got the size: the end, without a read that returns 0.
      if (length === stats.size) break;
    }
    return length > stats.size ? null : buffer.subarray(0, length);
  } catch (err) {
    throw new LocalFileError(`cannot read ${localPath}: ${(err as Error).message}`, { cause: err });
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // read-only descriptor: nothing can be lost
    }
  }
}

/**
 * The end of a small download: checks the hash, then writes `localPath` synchronously (mode 0600,
 * O_NOFOLLOW, replacing a file there). On a hash mismatch or a failed write `localPath` is removed,
 * as on the streaming path.
 */
export function finishSmallDownload(content: Buffer, remotePath: string, localPath: string, expectedSize: number, opts: DownloadOptions): TransferResult {
  throwIfAborted(opts.signal, `download ${remotePath}`);
  const hash = createHash('sha256').update(content).digest('hex');
  if (opts.expectedHash !== undefined && opts.expectedHash.toLowerCase() !== hash) {
    removeQuietly(localPath);
    throw new HashMismatchError(remotePath, opts.expectedHash, hash);
  }
  let fd: number | null;
  try {
    fd = fs.openSync(localPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new LocalFileError(`cannot write ${localPath}: ${(err as Error).message}`, { cause: err });
  }
  try {
    let offset = 0;
    while (offset < content.length) offset += fs.writeSync(fd, content, offset, content.length - offset, offset);
    if (opts.fsync) fs.fsyncSync(fd);
    const open = fd;
    fd = null;
    fs.closeSync(open);
  } catch (err) {
    if (fd !== null) {
      try {
        fs.closeSync(fd);
      } catch {
        // the file is removed next anyway
      }
    }
    removeQuietly(localPath);
    throw new LocalFileError(`cannot write ${localPath}: ${(err as Error).message}`, { cause: err });
  }
  opts.onProgress?.(content.length, Math.max(expectedSize, content.length));
  return { hash, size: content.length };
}

export function removeQuietly(localPath: string): void {
  try {
    fs.unlinkSync(localPath);
  } catch {
    // nothing there (or not ours to remove: a directory)
  }
}

export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new TransferAbortedError(what, { cause: signal.reason });
}

/**
 * Full-size chunk buffers of finished requests, kept for the next ones: a large transfer would
 * otherwise allocate thousands of buffers that the GC reclaims late, and memory grows meanwhile.
 * Holds at most `max` idle buffers per size.
 */
export class ChunkPool {
  private readonly idle = new Map<number, Buffer[]>();
  constructor(private readonly max: number) {}

  take(size: number): Buffer {
    return this.idle.get(size)?.pop() ?? Buffer.allocUnsafe(size);
  }

  give(buffer: Buffer): void {
    const list = this.idle.get(buffer.length) ?? [];
    if (list.length >= this.max) return;
    list.push(buffer);
    this.idle.set(buffer.length, list);
  }
}

/** A counting semaphore: acquire() resolves with a release function. */
export class Semaphore {
  private available: number;
  private readonly waiters: Array<() => void> = [];
  constructor(count: number) {
    this.available = count;
  }
  async acquire(): Promise<() => void> {
    if (this.available > 0) this.available--;
    else await new Promise<void>((resolve) => this.waiters.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.available++;
    };
  }
}

/** Tracks the requests in flight for one transfer and remembers the first failure. */
export class RequestWindow {
  private readonly pending = new Set<Promise<void>>();
  private failure: { error: unknown } | null = null;

  /** True once a request (or fail()) has failed. */
  get failed(): boolean {
    return this.failure !== null;
  }

  /** Records a failure that is not a request's (it counts as the first one if none came before). */
  fail(error: unknown): void {
    this.failure ??= { error };
  }

  add(request: Promise<void>): void {
    const tracked: Promise<void> = request.then(
      () => {
        this.pending.delete(tracked);
      },
      (error: unknown) => {
        this.pending.delete(tracked);
        this.failure ??= { error };
      },
    );
    this.pending.add(tracked);
  }

  /** Waits until fewer than `limit` requests are in flight; throws the first failure seen. */
  async waitForRoom(limit: number): Promise<void> {
    this.throwIfFailed();
    while (this.pending.size >= limit) {
      await Promise.race(this.pending);
      this.throwIfFailed();
    }
  }

  /** Waits for every request; throws the first failure seen. */
  async drain(): Promise<void> {
    await Promise.all(this.pending);
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }
}

/**
 * Downloads over one session's SFTP channel: a small file of known size read with its reads and
 * close pipelined, any file streamed with reads ahead of the local writes while it is hashed, and
 * ranged reads of an open remote file (delta transfer). The caller holds the session's open-file
 * slot.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fsp from 'node:fs/promises';
import type { Stats } from 'ssh2';
import { HashMismatchError, LocalFileError, SftpError, SizeExceededError } from './errors.js';
import { LocalWriteBatch, RequestWindow, throwIfAborted } from './sessionhelpers.js';
import { CHUNK_SIZE, LOCAL_IO_SIZE, MAX_REQUESTS_PER_FILE, type SftpChannel } from './sftpchannel.js';
import type { DownloadOptions, TransferResult } from './transfertypes.js';

/**
 * Reads a remote file expected to hold `expectedSize` bytes: open, then reads covering one byte
 * past that size (so a longer file shows without another request) and the close, pipelined.
 * Null when the reads did not end exactly at `expectedSize`, or a read failed for a reason the
 * general path can name better (a directory, say); rejects if the open fails or the session is lost.
 */
export async function readSmallRemote(channel: SftpChannel, remotePath: string, expectedSize: number, signal: AbortSignal | undefined): Promise<Buffer | null> {
  const handle = await channel.open(remotePath, 'r');
  const reads: Array<{ length: number; data: Promise<Buffer> }> = [];
  const send = async (requests: RequestWindow): Promise<void> => {
    throwIfAborted(signal, `download ${remotePath}`);
    // Never more than ssh2 asks for in one request: a longer read would ask for its rest only
    // after the first reply, behind the close.
    const step = Math.min(CHUNK_SIZE, channel.sftpLimit('_maxReadLen'));
    const want = expectedSize + 1;
    for (let offset = 0; offset < want && !requests.failed; offset += step) {
      const length = Math.min(step, want - offset);
      // As for uploads: a slot is taken just before its request is sent, given back with the reply.
      const releaseRequest = await channel.requestSlots.acquire();
      const data = channel.readChunk(handle, remotePath, offset, length).finally(releaseRequest);
      reads.push({ length, data });
      requests.add(data.then(() => {}));
    }
  };
  try {
    await channel.sendThenClose(handle, remotePath, send);
  } catch (err) {
    if (err instanceof SftpError && err.operation === 'read' && err.code !== 'CONNECTION_LOST' && err.code !== 'NO_CONNECTION') {
      return null;
    }
    throw err;
  }
  const pieces: Buffer[] = [];
  let size = 0;
  for (const [index, read] of reads.entries()) {
    const data = await read.data;
    pieces.push(data);
    size += data.length;
    // A short read before the last one: the server reads short, so where the file ends is unknown.
    if (data.length < read.length && index < reads.length - 1) return null;
  }
  return size === expectedSize ? Buffer.concat(pieces, size) : null;
}

/** downloadFile without a usable expectedSize, or when the fast path found a different file. */
export async function downloadStreaming(channel: SftpChannel, remotePath: string, localPath: string, opts: DownloadOptions): Promise<TransferResult> {
  let local: fsp.FileHandle | null = null;
  let remote: Buffer | null = null;
  let createdLocal = false;
  let reads: ReadAhead | null = null;
  try {
    const handle = await channel.open(remotePath, 'r');
    remote = handle;
    const attrs = await channel.call<Stats>('fstat', remotePath, (cb) => channel.sftp.fstat(handle, cb));
    if (typeof attrs.mode === 'number' && !attrs.isFile()) {
      throw new SftpError('FAILURE', true, 'open', remotePath, `sftp open ${remotePath}: not a regular file`);
    }
    // The most bytes accepted (the server's fstat may claim anything): null, unbounded.
    const limit = opts.expectedSize ?? opts.maxSize ?? null;
    const knownSize = typeof attrs.size === 'number' ? (limit === null ? attrs.size : Math.min(attrs.size, limit + 1)) : limit === null ? null : limit + 1;
    local = await createLocalFile(localPath);
    createdLocal = true;
    reads = new ReadAhead(channel, handle, remotePath, knownSize);
    const { hash, written } = await writeReads(reads, local, localPath, limit, opts);
    remote = null;
    await channel.closeHandle(handle, remotePath);
    if (opts.fsync) await local.sync();
    await local.close();
    local = null;
    if (opts.expectedHash !== undefined && opts.expectedHash.toLowerCase() !== hash) {
      throw new HashMismatchError(remotePath, opts.expectedHash, hash);
    }
    return { hash, size: written };
  } catch (err) {
    if (remote !== null) await channel.closeHandle(remote, remotePath).catch(() => {});
    await local?.close().catch(() => {});
    local = null;
    if (createdLocal) await fsp.rm(localPath, { force: true }).catch(() => {});
    throw err;
  } finally {
    reads?.abandon();
    await local?.close().catch(() => {});
  }
}

/** Creates (or truncates) `localPath` with mode 0600, never through a symlink at that name. */
async function createLocalFile(localPath: string): Promise<fsp.FileHandle> {
  try {
    return await fsp.open(localPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_NOFOLLOW, 0o600);
  } catch (err) {
    throw new LocalFileError(`cannot write ${localPath}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Writes what `reads` brings, in file order, to `local` while hashing it; rejects with
 * SizeExceededError past `limit` (null: unbounded).
 */
async function writeReads(
  reads: ReadAhead,
  local: fsp.FileHandle,
  localPath: string,
  limit: number | null,
  opts: DownloadOptions,
): Promise<{ hash: string; written: number }> {
  const { remotePath, knownSize, chunkSize } = reads;
  const hash = createHash('sha256');
  let written = 0;
  const batch = new LocalWriteBatch(local, localPath, LOCAL_IO_SIZE);
  let reachedEnd = knownSize === 0;
  while (!reachedEnd) {
    throwIfAborted(opts.signal, `download ${remotePath}`);
    const head = reads.next();
    if (head === undefined) break;
    // SFTP allows short reads: fetch the rest of this chunk unless the file ends there.
    const chunkEnd = head.offset + chunkSize;
    let position = head.offset;
    let data: Buffer;
    try {
      data = await head.data;
    } finally {
      head.release();
    }
    // The head's buffer serves a later read once written (abandoned reads never give theirs back).
    const buffer = head.buffer;
    let recycle = buffer === null ? undefined : (): void => reads.channel.chunks.give(buffer);
    for (;;) {
      if (data.length === 0) {
        reachedEnd = true;
        break;
      }
      if (limit !== null && position + data.length > limit) throw new SizeExceededError(remotePath, opts.expectedHash ?? '(any)', limit);
      hash.update(data);
      await batch.add(data, position, recycle);
      recycle = undefined; // a short read's rest came in a buffer of its own
      position += data.length;
      written += data.length;
      if (position >= chunkEnd) break;
      if (knownSize !== null && position >= knownSize) break;
      data = await reads.readRest(position, chunkEnd - position);
    }
    opts.onProgress?.(written, Math.max(knownSize ?? 0, written));
    if (knownSize !== null && written >= knownSize) reachedEnd = true;
  }
  await batch.flush();
  return { hash: hash.digest('hex'), written };
}

interface PendingRead {
  offset: number;
  data: Promise<Buffer>;
  /** The buffer the read fills (known once a request slot is granted). */
  buffer: Buffer | null;
  /** Gives the request slot back once the read has settled. Idempotent. */
  release(): void;
}

/**
 * The reads of one remote file, up to MAX_REQUESTS_PER_FILE ahead of the writer, in file order.
 * Each queued read holds a session request slot until its data is written locally (or the
 * transfer ends), so buffered data stays bounded. Slots are granted in FIFO order, so a file's
 * head read always holds one before its later reads do, and every holder can make progress.
 */
class ReadAhead {
  readonly chunkSize: number;
  private readonly queue: PendingRead[] = [];
  private nextOffset = 0;

  constructor(
    readonly channel: SftpChannel,
    private readonly handle: Buffer,
    readonly remotePath: string,
    /** Bytes to read at most (null: until a read finds the end). */
    readonly knownSize: number | null,
  ) {
    this.chunkSize = channel.chunkSize('_maxReadLen');
  }

  /** The next read in file order, with more issued to keep the window full; undefined past knownSize. */
  next(): PendingRead | undefined {
    while (this.queue.length < MAX_REQUESTS_PER_FILE && (this.knownSize === null || this.nextOffset < this.knownSize)) {
      this.queue.push(this.issue(this.nextOffset));
      this.nextOffset += this.chunkSize;
    }
    return this.queue.shift();
  }

  /** The rest of a chunk the server read short. */
  readRest(offset: number, length: number): Promise<Buffer> {
    return this.channel.readChunk(this.handle, this.remotePath, offset, length);
  }

  /** Gives back the slots of the reads still queued. */
  abandon(): void {
    this.queue.splice(0).forEach((pending) => pending.release());
  }

  private issue(offset: number): PendingRead {
    const { channel, knownSize, chunkSize } = this;
    let releaseSlot: () => void = () => {};
    const pending: PendingRead = { offset, data: null as unknown as Promise<Buffer>, buffer: null, release: () => {} };
    pending.data = channel.requestSlots.acquire().then((release) => {
      releaseSlot = release;
      // The last chunk of a file of known size asks for what is left, not a whole chunk.
      const length = knownSize !== null && knownSize > offset ? Math.min(chunkSize, knownSize - offset) : chunkSize;
      pending.buffer = length === chunkSize ? channel.chunks.take(chunkSize) : Buffer.allocUnsafe(length);
      return channel.readChunk(this.handle, this.remotePath, offset, length, pending.buffer);
    });
    const data = pending.data;
    data.catch(() => {}); // observed when dequeued; never unhandled if abandoned
    pending.release = (): void => {
      data.then(
        () => releaseSlot(),
        () => releaseSlot(),
      );
    };
    return pending;
  }
}

/** Ranged reads of one open remote file (see SshSession.openReader). */
export interface RemoteReader {
  /** `length` bytes at `offset` (fewer only where the file ends). */
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * Ranged reads of the open remote file `handle`: each read is split into requests sent together;
 * a short read is continued until the range is whole or the file ends. `close()` closes the handle
 * and calls `releaseFile` (it is idempotent).
 */
export function rangedReader(channel: SftpChannel, remotePath: string, handle: Buffer, releaseFile: () => void): RemoteReader {
  const chunkSize = channel.chunkSize('_maxReadLen');
  let closed = false;
  const readPiece = async (offset: number, length: number): Promise<Buffer> => {
    const buffer = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const releaseRequest = await channel.requestSlots.acquire();
      let got: Buffer;
      try {
        got = await channel.readChunk(handle, remotePath, offset + done, length - done, buffer.subarray(done));
      } catch (err) {
        if (err instanceof SftpError && err.code === 'EOF') break;
        throw err;
      } finally {
        releaseRequest();
      }
      if (got.length === 0) break;
      done += got.length;
    }
    return buffer.subarray(0, done);
  };
  return {
    read: async (offset: number, length: number): Promise<Buffer> => {
      if (closed) throw new SftpError('FAILURE', true, 'read', remotePath, `sftp read ${remotePath}: reader closed`);
      const pieces: Array<Promise<Buffer>> = [];
      for (let start = 0; start < length; start += chunkSize) pieces.push(readPiece(offset + start, Math.min(chunkSize, length - start)));
      const settled = await Promise.allSettled(pieces);
      const failed = settled.find((r) => r.status === 'rejected');
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
      const buffers = settled.map((r) => (r as PromiseFulfilledResult<Buffer>).value);
      // A piece cut short by the end of the file ends the range there.
      const end = buffers.findIndex((b, i) => b.length < Math.min(chunkSize, length - i * chunkSize));
      return Buffer.concat(end === -1 ? buffers : buffers.slice(0, end + 1));
    },
    close: async (): Promise<void> => {
      if (closed) return;
      closed = true;
      try {
        await channel.closeHandle(handle, remotePath);
      } finally {
        releaseFile();
      }
    },
  };
}

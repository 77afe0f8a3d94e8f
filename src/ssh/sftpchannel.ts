/**
 * The SFTP side of one session as its transfers use it: each ssh2 call as a promise whose errors
 * are `SftpError`s, the request budget shared by every transfer, a pool of chunk buffers, and the
 * request sizes the server allows.
 */
import type { SFTPWrapper } from 'ssh2';
import { SftpError, toSftpError, type TransferError } from './errors.js';
import { ChunkPool, RequestWindow, Semaphore } from './sessionhelpers.js';

/** Size of one SFTP read or write request. */
export const CHUNK_SIZE = 64 * 1024;
/** Streamed transfers use requests this large when the server allows them (OpenSSH: 255 KiB). */
const MAX_CHUNK = 256 * 1024;
/**
 * Requests in flight for one file: 64 of 255 KiB (16 MiB), as ssh2's fastPut/fastGet keep, so a
 * hop is not held to one window per round trip when the other end is slow to be scheduled.
 */
export const MAX_REQUESTS_PER_FILE = 64;
/**
 * Bytes read from (uploads) or written to (downloads) the local file in one call, held per
 * transfer (32 transfers at once hold 32 MiB).
 */
export const LOCAL_IO_SIZE = 1024 * 1024;
/** Requests in flight for the whole session (bounds memory: this many chunks at most). */
const MAX_REQUESTS_PER_SESSION = 128;

export class SftpChannel {
  /** One slot per request in flight, over every transfer of the session. */
  readonly requestSlots = new Semaphore(MAX_REQUESTS_PER_SESSION);
  readonly chunks = new ChunkPool(MAX_REQUESTS_PER_FILE);
  private isClosed = false;

  /** `endError` names why the session ended, for the requests refused after it. */
  constructor(
    readonly sftp: SFTPWrapper,
    private readonly endError: () => TransferError | null,
  ) {}

  /** Requests sent on a closed channel would never be answered: refuse them from now on. */
  markClosed(): void {
    this.isClosed = true;
  }

  /** Runs one ssh2 SFTP call; sync throws and callback errors both become SftpError. */
  call<T>(operation: string, remotePath: string, start: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.isClosed) {
        reject(this.lostError(operation, remotePath));
        return;
      }
      try {
        start((err, value) => (err ? reject(toSftpError(err, operation, remotePath)) : resolve(value as T)));
      } catch (err) {
        reject(toSftpError(err, operation, remotePath));
      }
    });
  }

  /** Opens `remotePath`: 'r' to read, 'w' to write (created with mode 0600, truncated if it exists). */
  open(remotePath: string, flags: 'r' | 'w'): Promise<Buffer> {
    return flags === 'r'
      ? this.call<Buffer>('open', remotePath, (cb) => this.sftp.open(remotePath, 'r', cb))
      : this.call<Buffer>('open', remotePath, (cb) => this.sftp.open(remotePath, 'w', { mode: 0o600 }, cb));
  }

  /**
   * Runs `send` (which adds requests on `handle` to the window), then sends the close right behind
   * them without waiting for their replies, and waits for every reply. A throw of `send` fails the
   * window (what it sent is still answered, and the handle still closed) and rejects.
   */
  async sendThenClose(handle: Buffer, remotePath: string, send: (requests: RequestWindow) => Promise<void>): Promise<void> {
    const requests = new RequestWindow();
    try {
      await send(requests);
    } catch (err) {
      requests.fail(err);
    }
    requests.add(this.closeHandle(handle, remotePath));
    await requests.drain();
  }

  closeHandle(handle: Buffer, remotePath: string): Promise<void> {
    return this.call<void>('close', remotePath, (cb) => this.sftp.close(handle, cb));
  }

  unlink(remotePath: string): Promise<void> {
    return this.call<void>('unlink', remotePath, (cb) => this.sftp.unlink(remotePath, cb));
  }

  readChunk(handle: Buffer, remotePath: string, offset: number, length: number, buffer: Buffer = Buffer.allocUnsafe(length)): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      if (this.isClosed) {
        reject(this.lostError('read', remotePath));
        return;
      }
      try {
        this.sftp.read(handle, buffer, 0, length, offset, (err, bytesRead) =>
          err ? reject(toSftpError(err, 'read', remotePath)) : resolve(buffer.subarray(0, bytesRead)),
        );
      } catch (err) {
        reject(toSftpError(err, 'read', remotePath));
      }
    });
  }

  /**
   * Bytes per request that ssh2 sends as one request, copied into its packet at once: at most what
   * the server takes (OpenSSH: 255 KiB), and never more than MAX_CHUNK.
   */
  requestSize(limit: '_maxReadLen' | '_maxWriteLen'): number {
    return Math.min(MAX_CHUNK, this.sftpLimit(limit));
  }

  /**
   * Bytes per request of a streamed transfer: as much as the server takes in one request, up to
   * MAX_CHUNK (larger reads cost less CPU per byte).
   */
  chunkSize(limit: '_maxReadLen' | '_maxWriteLen'): number {
    return Math.max(CHUNK_SIZE, Math.min(MAX_CHUNK, this.sftpLimit(limit)));
  }

  /** A per-request size limit of ssh2's SFTP client (from the server's limits@openssh.com reply). */
  sftpLimit(name: '_maxReadLen' | '_maxWriteLen'): number {
    const value = (this.sftp as unknown as Record<string, unknown>)[name];
    // ssh2's own default for servers that state no limits is 34000 bytes less 2 KiB of overhead.
    return typeof value === 'number' && value > 0 ? value : 31_000;
  }

  private lostError(operation: string, remotePath: string): SftpError {
    const endError = this.endError();
    const why = endError?.message ?? 'the sftp session is closed';
    return new SftpError('CONNECTION_LOST', false, operation, remotePath, `sftp ${operation} ${remotePath}: ${why}`, {
      cause: endError ?? undefined,
    });
  }
}

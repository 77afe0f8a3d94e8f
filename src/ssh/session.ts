/**
 * One SSH connection with its SFTP session: pipelined uploads and downloads that hash while
 * streaming, and `openssh_forwardOutStreamLocal` streams to a Unix socket on the server (the RPC channel).
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { constants as fsConstants } from 'node:fs';
import fsp from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import type { Client as SshClient, ClientChannel, SFTPWrapper, Stats } from 'ssh2';
import { TransferError, HashMismatchError, SizeExceededError, LocalFileError, StreamOpenError, SessionClosedError, SftpError, toSftpError } from './errors.js';
import { toRemoteStat, writeLocal, readSmallFile, finishSmallDownload, throwIfAborted, ChunkPool, Semaphore, RequestWindow, SMALL_FILE_MAX } from './sessionhelpers.js';
import type { DownloadOptions, RemoteStat, TransferResult, UploadOptions } from './transfertypes.js';

/** Size of one SFTP read or write request. */
const CHUNK_SIZE = 64 * 1024;
/** Streamed transfers use requests this large when the server allows them (OpenSSH: 255 KiB). */
const MAX_CHUNK = 256 * 1024;
/** Requests in flight for one file. */
const MAX_REQUESTS_PER_FILE = 16;
/** Requests in flight for the whole session (bounds memory: this many chunks at most). */
const MAX_REQUESTS_PER_SESSION = 128;
/** Remote files open at once (transfers beyond this wait their turn). */
const MAX_OPEN_FILES = 64;


/**
 * One authenticated SSH connection with one SFTP session. Many transfers may run at once on it;
 * they share bounded request and open-file budgets. Emits nothing itself: use `onClose`.
 */
export class SshSession {
  readonly sftp: SFTPWrapper;
  /** Resolves once the connection is closed, with the error that ended it (null: ended by close()). */
  readonly closed: Promise<TransferError | null>;
  private readonly client: SshClient;
  private readonly where: string;
  private readonly events = new EventEmitter();
  private readonly requestSlots = new Semaphore(MAX_REQUESTS_PER_SESSION);
  private readonly chunks = new ChunkPool(MAX_REQUESTS_PER_FILE);
  private readonly fileSlots: Semaphore;
  private endError: TransferError | null = null;
  private isClosedFlag = false;
  private isSftpClosed = false;
  private isCloseRequested = false;

  /** Use connectSsh(). */
  constructor(client: SshClient, sftp: SFTPWrapper, where: string) {
    this.client = client;
    this.sftp = sftp;
    this.where = where;
    const handleLimit = (sftp as unknown as { maxOpenHandles?: number }).maxOpenHandles;
    const openFiles = typeof handleLimit === 'number' && handleLimit > 8 ? Math.min(MAX_OPEN_FILES, handleLimit - 4) : MAX_OPEN_FILES;
    this.fileSlots = new Semaphore(openFiles);
    this.closed = new Promise((resolve) => this.events.once('close', resolve));
    client.on('error', (err: Error & { level?: string }) => {
      this.endError ??=
        err.level === 'client-timeout'
          ? new SessionClosedError(`ssh ${where}: the server stopped answering keepalives`, { cause: err })
          : new SessionClosedError(`ssh ${where}: connection lost: ${err.message}`, { cause: err });
    });
    client.on('close', () => {
      this.isClosedFlag = true;
      this.isSftpClosed = true;
      if (!this.isCloseRequested) this.endError ??= new SessionClosedError(`ssh ${where}: the server closed the connection`);
      this.events.emit('close', this.endError);
    });
    sftp.on('close', () => {
      // Requests sent on a closed channel would never be answered: refuse them from now on.
      this.isSftpClosed = true;
      // Without its SFTP session this connection is of no use: end it.
      if (!this.isClosedFlag) {
        this.endError ??= new SessionClosedError(`ssh ${where}: the sftp session closed`);
        client.end();
      }
    });
  }

  /** True once the connection has closed. */
  get isClosed(): boolean {
    return this.isClosedFlag;
  }

  /** Calls `callback` once when the connection closes, with the error that ended it (null: by close()). Returns an unsubscribe function. */
  onClose(callback: (error: TransferError | null) => void): () => void {
    if (this.isClosedFlag) {
      queueMicrotask(() => callback(this.endError));
      return () => {};
    }
    this.events.once('close', callback);
    return () => this.events.off('close', callback);
  }

  /** Ends the connection and waits until it has closed. Safe to call twice. */
  async close(): Promise<void> {
    this.isCloseRequested = true;
    if (!this.isClosedFlag) this.client.end();
    await this.closed;
  }

  /** The canonical absolute path on the server (resolves ".", "~"-less relative paths, symlinks). */
  async realpath(remotePath: string): Promise<string> {
    return this.call<string>('realpath', remotePath, (cb) => this.sftp.realpath(remotePath, cb));
  }

  /** Stat following symlinks; null if nothing is there. */
  async stat(remotePath: string): Promise<RemoteStat | null> {
    return this.statWith('stat', remotePath);
  }

  /** Stat of the path itself (a symlink is reported as one); null if nothing is there. */
  async lstat(remotePath: string): Promise<RemoteStat | null> {
    return this.statWith('lstat', remotePath);
  }

  /** Creates the directory and its missing parents (mode applies to the ones it creates). */
  async mkdirp(remotePath: string, mode = 0o700): Promise<void> {
    const absolute = remotePath.startsWith('/');
    const parts = remotePath.split('/').filter((part) => part !== '' && part !== '.');
    let current = absolute ? '' : '.';
    for (const part of parts) {
      current = `${current}/${part}`;
      const existing = await this.stat(current);
      if (existing?.type === 'dir') continue;
      if (existing !== null) {
        throw new SftpError('FAILURE', true, 'mkdir', current, `sftp mkdir ${current}: exists and is not a directory`);
      }
      try {
        await this.call<void>('mkdir', current, (cb) => this.sftp.mkdir(current, { mode }, cb));
      } catch (err) {
        // Lost a race with another creator: fine if it is a directory now.
        if ((await this.stat(current))?.type !== 'dir') throw err;
      }
    }
  }

  /** Removes a file (or symlink). */
  async unlink(remotePath: string): Promise<void> {
    await this.call<void>('unlink', remotePath, (cb) => this.sftp.unlink(remotePath, cb));
  }

  /** Removes an empty directory. */
  async rmdir(remotePath: string): Promise<void> {
    await this.call<void>('rmdir', remotePath, (cb) => this.sftp.rmdir(remotePath, cb));
  }

  /** Renames atomically, replacing `to` if it exists (posix-rename@openssh.com). */
  async posixRename(from: string, to: string): Promise<void> {
    await this.call<void>('posix-rename', from, (cb) => this.sftp.ext_openssh_rename(from, to, cb));
  }

  /** Sets permission bits and/or modification time (atime is set to the same value). */
  async setAttributes(remotePath: string, attrs: { mode?: number; mtimeMs?: number }): Promise<void> {
    const sftpAttrs: { mode?: number; atime?: number; mtime?: number } = {};
    if (attrs.mode !== undefined) sftpAttrs.mode = attrs.mode & 0o777; // never setuid, setgid or sticky
    if (attrs.mtimeMs !== undefined) {
      sftpAttrs.mtime = Math.floor(attrs.mtimeMs / 1000);
      sftpAttrs.atime = sftpAttrs.mtime;
    }
    await this.call<void>('setstat', remotePath, (cb) => this.sftp.setstat(remotePath, sftpAttrs, cb));
  }

  /** The server's identification line ("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"), or "" when unknown. */
  get serverIdent(): string {
    // ssh2 keeps it on its protocol object (its own SFTP client reads it there too).
    const raw = (this.client as unknown as { _protocol?: { _remoteIdentRaw?: Buffer } })._protocol?._remoteIdentRaw;
    return raw === undefined ? '' : raw.toString('latin1');
  }

  /** Opens a session channel running the subsystem `name` (as `ssh -s`). */
  async openSubsystem(name: string): Promise<Duplex> {
    this.throwIfClosed();
    return new Promise<Duplex>((resolve, reject) => {
      const fail = (err: unknown): void =>
        reject(new StreamOpenError(`ssh ${this.where}: cannot open the subsystem ${name}: ${(err as Error).message}`, { cause: err }));
      try {
        this.client.subsys(name, (err: Error | undefined, channel: ClientChannel) => (err ? fail(err) : resolve(channel)));
      } catch (err) {
        fail(err);
      }
    });
  }

  /** Opens a byte stream to the Unix socket `socketPath` on the server (direct-streamlocal@openssh.com). */
  async openUnixStream(socketPath: string): Promise<Duplex> {
    this.throwIfClosed();
    return new Promise<Duplex>((resolve, reject) => {
      const fail = (err: unknown): void =>
        reject(
          new StreamOpenError(`ssh ${this.where}: cannot open a stream to ${socketPath}: ${(err as Error).message}`, {
            cause: err,
          }),
        );
      try {
        this.client.openssh_forwardOutStreamLocal(socketPath, (err: Error | undefined, channel: ClientChannel) =>
          err ? fail(err) : resolve(channel),
        );
      } catch (err) {
        fail(err);
      }
    });
  }

  /**
   * Uploads a local file to `remotePath` (created with mode 0600, truncated if it exists) with many
   * writes in flight, hashing the bytes as they are read. Memory stays bounded whatever the size.
   * The hash and size are those of the bytes sent (a file that grows while being read is sent up to
   * where its end was found). On failure the remote file is removed (best effort).
   *
   * A regular file of up to SMALL_FILE_MAX bytes is read in one synchronous read and sent with its
   * writes and close pipelined: two round trips (open; writes + close) and no threadpool trips.
   */
  async uploadFile(localPath: string, remotePath: string, opts: UploadOptions = {}): Promise<TransferResult> {
    const releaseFile = await this.fileSlots.acquire();
    try {
      throwIfAborted(opts.signal, `upload ${localPath}`);
      this.throwIfClosed();
      const content = readSmallFile(localPath);
      if (content !== null) return await this.uploadSmall(content, remotePath, opts, `upload ${localPath}`);
      return await this.uploadStreaming(localPath, remotePath, opts);
    } finally {
      releaseFile();
    }
  }

  /**
   * Sends `content` to `remotePath`: open, then the writes (and fsync) and the close back to back
   * without waiting for replies in between; sftp-server handles requests in order, so the close
   * comes after the writes, and each write's reply is still checked.
   */
  private async uploadSmall(content: Buffer, remotePath: string, opts: UploadOptions, what: string): Promise<TransferResult> {
    const hash = createHash('sha256').update(content).digest('hex');
    const handle = await this.call<Buffer>('open', remotePath, (cb) => this.sftp.open(remotePath, 'w', { mode: 0o600 }, cb));
    const requests = new RequestWindow();
    try {
      throwIfAborted(opts.signal, what);
      // Never more than ssh2 sends in one request: a longer write would send its rest only after
      // the first reply, behind the close.
      const step = Math.min(CHUNK_SIZE, this.sftpLimit('_maxWriteLen'));
      let done = 0;
      for (let offset = 0; offset < content.length && !requests.failed; offset += step) {
        const length = Math.min(step, content.length - offset);
        const position = offset;
        // One session request slot per write, taken just before it is sent and given back with its
        // reply: every slot held is a request in flight, so waiting for the next one cannot deadlock.
        const releaseRequest = await this.requestSlots.acquire();
        requests.add(
          this.call<void>('write', remotePath, (cb) => this.sftp.write(handle, content, position, length, position, cb))
            .finally(releaseRequest)
            .then(() => {
              done += length;
              opts.onProgress?.(done, content.length);
            }),
        );
      }
      if (opts.fsync && !requests.failed) {
        requests.add(this.call<void>('fsync', remotePath, (cb) => this.sftp.ext_openssh_fsync(handle, cb)));
      }
    } catch (err) {
      requests.fail(err);
    }
    requests.add(this.call<void>('close', remotePath, (cb) => this.sftp.close(handle, cb)));
    try {
      await requests.drain();
    } catch (err) {
      await this.unlink(remotePath).catch(() => {});
      throw err;
    }
    return { hash, size: content.length };
  }

  /** uploadFile for a file that is large, not regular, or grew while it was read at once. */
  private async uploadStreaming(localPath: string, remotePath: string, opts: UploadOptions): Promise<TransferResult> {
    let local: fsp.FileHandle | null = null;
    let remote: Buffer | null = null;
    try {
      try {
        local = await fsp.open(localPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
      } catch (err) {
        throw new LocalFileError(`cannot read ${localPath}: ${(err as Error).message}`, { cause: err });
      }
      const total = (await local.stat()).size;
      const handle = await this.call<Buffer>('open', remotePath, (cb) => this.sftp.open(remotePath, 'w', { mode: 0o600 }, cb));
      remote = handle;
      const hash = createHash('sha256');
      const window = new RequestWindow();
      let position = 0;
      let done = 0;
      let grew = false;
      const chunkSize = this.chunkSize('_maxWriteLen');
      for (;;) {
        throwIfAborted(opts.signal, `upload ${localPath}`);
        await window.waitForRoom(MAX_REQUESTS_PER_FILE);
        const releaseRequest = await this.requestSlots.acquire();
        // Sized to what is left: a small file costs a small buffer, and the read that finds EOF
        // one byte (a file that grew past its size gets full chunks again).
        const want = position < total ? Math.min(chunkSize, total - position) : grew ? chunkSize : 1;
        const chunk = want === chunkSize ? this.chunks.take(chunkSize) : Buffer.allocUnsafe(want);
        let bytesRead: number;
        try {
          ({ bytesRead } = await local.read(chunk, 0, want, position));
        } catch (err) {
          releaseRequest();
          throw new LocalFileError(`cannot read ${localPath}: ${(err as Error).message}`, { cause: err });
        }
        if (bytesRead === 0) {
          releaseRequest();
          this.chunks.give(chunk);
          break;
        }
        if (position + bytesRead > total) grew = true;
        hash.update(chunk.subarray(0, bytesRead));
        const offset = position;
        position += bytesRead;
        window.add(
          this.call<void>('write', remotePath, (cb) => this.sftp.write(handle, chunk, 0, bytesRead, offset, cb))
            .finally(() => {
              releaseRequest();
              this.chunks.give(chunk); // ssh2 copied it into its packet when the write was sent
            })
            .then(() => {
              done += bytesRead;
              opts.onProgress?.(done, Math.max(total, position));
            }),
        );
      }
      await window.drain();
      remote = null;
      await this.closeUpload(handle, remotePath, opts.fsync === true);
      return { hash: hash.digest('hex'), size: position };
    } catch (err) {
      if (remote !== null) await this.discardUpload(remote, remotePath);
      throw err;
    } finally {
      await local?.close().catch(() => {});
    }
  }

  /**
   * Downloads `remotePath` to `localPath` (created with mode 0600, replacing a file there) with many
   * reads in flight, hashing the bytes as they are written. With `expectedHash`, a different hash
   * rejects with HashMismatchError. On any failure `localPath` is removed.
   *
   * With an `expectedSize` of up to SMALL_FILE_MAX the remote fstat is skipped: open, then the
   * reads and the close back to back, and the local file written in one synchronous write. When the
   * reads do not end exactly at `expectedSize` (the file is longer or shorter, or the server read
   * short) the download starts over on the general path, which finds out what is there.
   */
  async downloadFile(remotePath: string, localPath: string, opts: DownloadOptions = {}): Promise<TransferResult> {
    const releaseFile = await this.fileSlots.acquire();
    try {
      throwIfAborted(opts.signal, `download ${remotePath}`);
      this.throwIfClosed();
      const expectedSize = opts.expectedSize;
      if (expectedSize !== undefined && Number.isSafeInteger(expectedSize) && expectedSize >= 0 && expectedSize <= SMALL_FILE_MAX) {
        const content = await this.readSmallRemote(remotePath, expectedSize, opts.signal);
        if (content !== null) return finishSmallDownload(content, remotePath, localPath, expectedSize, opts);
      }
      return await this.downloadStreaming(remotePath, localPath, opts);
    } finally {
      releaseFile();
    }
  }

  /**
   * Reads a remote file expected to hold `expectedSize` bytes: open, then reads covering one byte
   * past that size (so a longer file shows without another request) and the close, pipelined.
   * Null when the reads did not end exactly at `expectedSize`, or a read failed for a reason the
   * general path can name better (a directory, say); rejects if the open fails or the session is lost.
   */
  private async readSmallRemote(remotePath: string, expectedSize: number, signal: AbortSignal | undefined): Promise<Buffer | null> {
    const handle = await this.call<Buffer>('open', remotePath, (cb) => this.sftp.open(remotePath, 'r', cb));
    const requests = new RequestWindow();
    const reads: Array<{ length: number; data: Promise<Buffer> }> = [];
    try {
      throwIfAborted(signal, `download ${remotePath}`);
      // Never more than ssh2 asks for in one request: a longer read would ask for its rest only
      // after the first reply, behind the close.
      const step = Math.min(CHUNK_SIZE, this.sftpLimit('_maxReadLen'));
      const want = expectedSize + 1;
      for (let offset = 0; offset < want && !requests.failed; offset += step) {
        const length = Math.min(step, want - offset);
        // As for uploads: a slot is taken just before its request is sent, given back with the reply.
        const releaseRequest = await this.requestSlots.acquire();
        const data = this.readChunk(handle, remotePath, offset, length).finally(releaseRequest);
        reads.push({ length, data });
        requests.add(data.then(() => {}));
      }
    } catch (err) {
      requests.fail(err);
    }
    requests.add(this.call<void>('close', remotePath, (cb) => this.sftp.close(handle, cb)));
    try {
      await requests.drain();
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
  private async downloadStreaming(remotePath: string, localPath: string, opts: DownloadOptions): Promise<TransferResult> {
    let local: fsp.FileHandle | null = null;
    let remote: Buffer | null = null;
    let createdLocal = false;
    let abandonReads = (): void => {};
    try {
      const handle = await this.call<Buffer>('open', remotePath, (cb) => this.sftp.open(remotePath, 'r', cb));
      remote = handle;
      const attrs = await this.call<Stats>('fstat', remotePath, (cb) => this.sftp.fstat(handle, cb));
      if (typeof attrs.mode === 'number' && !attrs.isFile()) {
        throw new SftpError('FAILURE', true, 'open', remotePath, `sftp open ${remotePath}: not a regular file`);
      }
      // The most bytes accepted (the server's fstat may claim anything): null, unbounded.
      const limit = opts.expectedSize ?? opts.maxSize ?? null;
      const knownSize = typeof attrs.size === 'number' ? (limit === null ? attrs.size : Math.min(attrs.size, limit + 1)) : limit === null ? null : limit + 1;
      try {
        local = await fsp.open(
          localPath,
          fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC | fsConstants.O_NOFOLLOW,
          0o600,
        );
        createdLocal = true;
      } catch (err) {
        throw new LocalFileError(`cannot write ${localPath}: ${(err as Error).message}`, { cause: err });
      }
      const hash = createHash('sha256');
      // Each queued read holds a session request slot until its data is written locally (or the
      // transfer ends), so buffered data stays bounded. Slots are granted in FIFO order, so a file's
      // head read always holds one before its later reads do, and every holder can make progress.
      const queue: PendingRead[] = [];
      let nextOffset = 0;
      let written = 0;
      const chunkSize = this.chunkSize('_maxReadLen');
      const issueRead = (offset: number): PendingRead => {
        let releaseSlot: () => void = () => {};
        const pending: PendingRead = { offset, data: null as unknown as Promise<Buffer>, buffer: null, release: () => {} };
        pending.data = this.requestSlots.acquire().then((release) => {
          releaseSlot = release;
          // The last chunk of a file of known size asks for what is left, not a whole chunk.
          const length = knownSize !== null && knownSize > offset ? Math.min(chunkSize, knownSize - offset) : chunkSize;
          pending.buffer = length === chunkSize ? this.chunks.take(chunkSize) : Buffer.allocUnsafe(length);
          return this.readChunk(handle, remotePath, offset, length, pending.buffer);
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
      };
      const fill = (): void => {
        while (queue.length < MAX_REQUESTS_PER_FILE && (knownSize === null || nextOffset < knownSize)) {
          queue.push(issueRead(nextOffset));
          nextOffset += chunkSize;
        }
      };
      abandonReads = () => queue.splice(0).forEach((pending) => pending.release());
      let reachedEnd = knownSize === 0;
      while (!reachedEnd) {
        throwIfAborted(opts.signal, `download ${remotePath}`);
        fill();
        const head = queue.shift();
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
        for (;;) {
          if (data.length === 0) {
            reachedEnd = true;
            break;
          }
          if (limit !== null && position + data.length > limit) throw new SizeExceededError(remotePath, opts.expectedHash ?? '(any)', limit);
          await writeLocal(local, localPath, data, position);
          hash.update(data);
          position += data.length;
          written += data.length;
          if (position >= chunkEnd) break;
          if (knownSize !== null && position >= knownSize) break;
          data = await this.readChunk(handle, remotePath, position, chunkEnd - position);
        }
        // Written and hashed: its buffer serves a later read (abandoned reads never give theirs back).
        if (head.buffer !== null) this.chunks.give(head.buffer);
        opts.onProgress?.(written, Math.max(knownSize ?? 0, written));
        if (knownSize !== null && written >= knownSize) reachedEnd = true;
      }
      remote = null;
      await this.call<void>('close', remotePath, (cb) => this.sftp.close(handle, cb));
      if (opts.fsync) await local.sync();
      await local.close();
      local = null;
      const actual = hash.digest('hex');
      if (opts.expectedHash !== undefined && opts.expectedHash.toLowerCase() !== actual) {
        throw new HashMismatchError(remotePath, opts.expectedHash, actual);
      }
      return { hash: actual, size: written };
    } catch (err) {
      if (remote !== null) {
        const handle = remote;
        await this.call<void>('close', remotePath, (cb) => this.sftp.close(handle, cb)).catch(() => {});
      }
      await local?.close().catch(() => {});
      local = null;
      if (createdLocal) await fsp.rm(localPath, { force: true }).catch(() => {});
      throw err;
    } finally {
      abandonReads();
      await local?.close().catch(() => {});
    }
  }

  /**
   * Writes the buffers `source` yields, back to back from offset 0, to `remotePath` (created with
   * mode 0600, truncated if it exists), with many writes in flight. Resolves with the bytes
   * written. On failure (of a write, or of `source`) the remote file is removed (best effort).
   */
  async uploadFrom(remotePath: string, source: AsyncIterable<Buffer>, opts: UploadOptions = {}): Promise<number> {
    const releaseFile = await this.fileSlots.acquire();
    let remote: Buffer | null = null;
    try {
      throwIfAborted(opts.signal, `upload ${remotePath}`);
      this.throwIfClosed();
      const handle = await this.call<Buffer>('open', remotePath, (cb) => this.sftp.open(remotePath, 'w', { mode: 0o600 }, cb));
      remote = handle;
      const window = new RequestWindow();
      const chunkSize = this.chunkSize('_maxWriteLen');
      let position = 0;
      let done = 0;
      for await (const buffer of source) {
        for (let start = 0; start < buffer.length; start += chunkSize) {
          throwIfAborted(opts.signal, `upload ${remotePath}`);
          await window.waitForRoom(MAX_REQUESTS_PER_FILE);
          const releaseRequest = await this.requestSlots.acquire();
          const length = Math.min(chunkSize, buffer.length - start);
          const at = position;
          position += length;
          window.add(
            this.call<void>('write', remotePath, (cb) => this.sftp.write(handle, buffer, start, length, at, cb))
              .finally(releaseRequest)
              .then(() => {
                done += length;
                opts.onProgress?.(done, position);
              }),
          );
        }
      }
      await window.drain();
      remote = null;
      await this.closeUpload(handle, remotePath, opts.fsync === true);
      return position;
    } catch (err) {
      if (remote !== null) await this.discardUpload(remote, remotePath);
      throw err;
    } finally {
      releaseFile();
    }
  }

  /**
   * Opens `remotePath` for reads of byte ranges (delta transfer fetches the blocks it lacks).
   * Each read is split into requests sent together; a short read is continued until the range is
   * whole or the file ends. close() must be called (it is idempotent).
   */
  async openReader(remotePath: string): Promise<RemoteReader> {
    const releaseFile = await this.fileSlots.acquire();
    let handle: Buffer;
    try {
      this.throwIfClosed();
      handle = await this.call<Buffer>('open', remotePath, (cb) => this.sftp.open(remotePath, 'r', cb));
    } catch (err) {
      releaseFile();
      throw err;
    }
    const chunkSize = this.chunkSize('_maxReadLen');
    let closed = false;
    const readPiece = async (offset: number, length: number): Promise<Buffer> => {
      const buffer = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const releaseRequest = await this.requestSlots.acquire();
        let got: Buffer;
        try {
          got = await this.readChunk(handle, remotePath, offset + done, length - done, buffer.subarray(done));
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
          await this.call<void>('close', remotePath, (cb) => this.sftp.close(handle, cb));
        } finally {
          releaseFile();
        }
      },
    };
  }

  /** The end of an upload whose writes all succeeded: fsync (if asked) and close. */
  private async closeUpload(handle: Buffer, remotePath: string, fsync: boolean): Promise<void> {
    if (fsync) await this.call<void>('fsync', remotePath, (cb) => this.sftp.ext_openssh_fsync(handle, cb));
    await this.call<void>('close', remotePath, (cb) => this.sftp.close(handle, cb));
  }

  /** The end of a failed upload: close and remove the remote file (best effort). */
  private async discardUpload(handle: Buffer, remotePath: string): Promise<void> {
    await this.call<void>('close', remotePath, (cb) => this.sftp.close(handle, cb)).catch(() => {});
    await this.unlink(remotePath).catch(() => {});
  }

  /**
   * Bytes per request of a streamed transfer: as much as the server takes in one request, up to
   * MAX_CHUNK (a 1 GiB download at 255 KiB per read used a third less CPU than at 64 KiB).
   */
  private chunkSize(limit: '_maxReadLen' | '_maxWriteLen'): number {
    return Math.max(CHUNK_SIZE, Math.min(MAX_CHUNK, this.sftpLimit(limit)));
  }

  /** A per-request size limit of ssh2's SFTP client (from the server's limits@openssh.com reply). */
  private sftpLimit(name: '_maxReadLen' | '_maxWriteLen'): number {
    const value = (this.sftp as unknown as Record<string, unknown>)[name];
    // ssh2's own default for servers that state no limits is 34000 bytes less 2 KiB of overhead.
    return typeof value === 'number' && value > 0 ? value : 31_000;
  }

  private readChunk(handle: Buffer, remotePath: string, offset: number, length: number, buffer: Buffer = Buffer.allocUnsafe(length)): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      if (this.isSftpClosed) {
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

  private async statWith(operation: 'stat' | 'lstat', remotePath: string): Promise<RemoteStat | null> {
    try {
      const stats = await this.call<Stats>(operation, remotePath, (cb) => this.sftp[operation](remotePath, cb));
      return toRemoteStat(stats);
    } catch (err) {
      if (err instanceof SftpError && err.code === 'NO_SUCH_FILE') return null;
      throw err;
    }
  }

  private lostError(operation: string, remotePath: string): SftpError {
    const why = this.endError?.message ?? 'the sftp session is closed';
    return new SftpError('CONNECTION_LOST', false, operation, remotePath, `sftp ${operation} ${remotePath}: ${why}`, {
      cause: this.endError ?? undefined,
    });
  }

  private throwIfClosed(): void {
    if (this.isClosedFlag) {
      throw new SessionClosedError(`ssh ${this.where}: the session is closed`, { cause: this.endError ?? undefined });
    }
  }

  /** Runs one ssh2 SFTP call; sync throws and callback errors both become SftpError. */
  private call<T>(operation: string, remotePath: string, start: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.isSftpClosed) {
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
}

/** Ranged reads of one open remote file (see SshSession.openReader). */
export interface RemoteReader {
  /** `length` bytes at `offset` (fewer only where the file ends). */
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

interface PendingRead {
  offset: number;
  data: Promise<Buffer>;
  /** The buffer the read fills (known once a request slot is granted). */
  buffer: Buffer | null;
  /** Gives the request slot back once the read has settled. Idempotent. */
  release(): void;
}

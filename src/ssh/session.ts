/**
 * One SSH connection with its SFTP session: its lifecycle, remote file operations, the transfers
 * (each holding one of the session's open-file slots; the work is in upload.ts and download.ts,
 * over the channel of sftpchannel.ts), and `openssh_forwardOutStreamLocal` streams to a Unix
 * socket on the server (the RPC channel).
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { Client as SshClient, ClientChannel, SFTPWrapper, Stats } from 'ssh2';
import { downloadStreaming, rangedReader, readSmallRemote, type RemoteReader } from './download.js';
import { TransferError, StreamOpenError, SessionClosedError, SftpError } from './errors.js';
import { toRemoteStat, readSmallFile, finishSmallDownload, throwIfAborted, Semaphore, SMALL_FILE_MAX } from './sessionhelpers.js';
import { SftpChannel } from './sftpchannel.js';
import type { DownloadOptions, RemoteStat, TransferResult, UploadOptions } from './transfertypes.js';
import { uploadBuffers, uploadSmall, uploadStreaming } from './upload.js';

export type { RemoteReader } from './download.js';

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
  /** The SFTP calls and the request budget every transfer of this session shares. */
  private readonly channel: SftpChannel;
  private readonly fileSlots: Semaphore;
  private endError: TransferError | null = null;
  private isClosedFlag = false;
  private isCloseRequested = false;

  /** Use connectSsh(). */
  constructor(client: SshClient, sftp: SFTPWrapper, where: string) {
    this.client = client;
    this.sftp = sftp;
    this.where = where;
    this.channel = new SftpChannel(sftp, () => this.endError);
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
      this.channel.markClosed();
      if (!this.isCloseRequested) this.endError ??= new SessionClosedError(`ssh ${where}: the server closed the connection`);
      this.events.emit('close', this.endError);
    });
    sftp.on('close', () => {
      // Requests sent on a closed channel would never be answered: refuse them from now on.
      this.channel.markClosed();
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
    return this.channel.call<string>('realpath', remotePath, (cb) => this.channel.sftp.realpath(remotePath, cb));
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
        await this.channel.call<void>('mkdir', current, (cb) => this.channel.sftp.mkdir(current, { mode }, cb));
      } catch (err) {
        // Lost a race with another creator: fine if it is a directory now.
        if ((await this.stat(current))?.type !== 'dir') throw err;
      }
    }
  }

  /** Removes a file (or symlink). */
  async unlink(remotePath: string): Promise<void> {
    await this.channel.unlink(remotePath);
  }

  /** Removes an empty directory. */
  async rmdir(remotePath: string): Promise<void> {
    await this.channel.call<void>('rmdir', remotePath, (cb) => this.channel.sftp.rmdir(remotePath, cb));
  }

  /** Renames atomically, replacing `to` if it exists (posix-rename@openssh.com). */
  async posixRename(from: string, to: string): Promise<void> {
    await this.channel.call<void>('posix-rename', from, (cb) => this.channel.sftp.ext_openssh_rename(from, to, cb));
  }

  /** Sets permission bits and/or modification time (atime is set to the same value). */
  async setAttributes(remotePath: string, attrs: { mode?: number; mtimeMs?: number }): Promise<void> {
    const sftpAttrs: { mode?: number; atime?: number; mtime?: number } = {};
    if (attrs.mode !== undefined) sftpAttrs.mode = attrs.mode & 0o777; // never setuid, setgid or sticky
    if (attrs.mtimeMs !== undefined) {
      sftpAttrs.mtime = Math.floor(attrs.mtimeMs / 1000);
      sftpAttrs.atime = sftpAttrs.mtime;
    }
    await this.channel.call<void>('setstat', remotePath, (cb) => this.channel.sftp.setstat(remotePath, sftpAttrs, cb));
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
      if (content !== null) return await uploadSmall(this.channel, content, remotePath, opts, `upload ${localPath}`);
      return await uploadStreaming(this.channel, localPath, remotePath, opts);
    } finally {
      releaseFile();
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
        const content = await readSmallRemote(this.channel, remotePath, expectedSize, opts.signal);
        if (content !== null) return finishSmallDownload(content, remotePath, localPath, expectedSize, opts);
      }
      return await downloadStreaming(this.channel, remotePath, localPath, opts);
    } finally {
      releaseFile();
    }
  }

  /**
   * Writes the buffers `source` yields, back to back from offset 0, to `remotePath` (created with
   * mode 0600, truncated if it exists), with many writes in flight. Resolves with the bytes
   * written. On failure (of a write, or of `source`) the remote file is removed (best effort).
   */
  async uploadFrom(remotePath: string, source: AsyncIterable<Buffer>, opts: UploadOptions = {}): Promise<number> {
    const releaseFile = await this.fileSlots.acquire();
    try {
      throwIfAborted(opts.signal, `upload ${remotePath}`);
      this.throwIfClosed();
      return await uploadBuffers(this.channel, remotePath, source, opts);
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
      handle = await this.channel.open(remotePath, 'r');
    } catch (err) {
      releaseFile();
      throw err;
    }
    return rangedReader(this.channel, remotePath, handle, releaseFile);
  }

  private async statWith(operation: 'stat' | 'lstat', remotePath: string): Promise<RemoteStat | null> {
    try {
      const stats = await this.channel.call<Stats>(operation, remotePath, (cb) => this.sftp[operation](remotePath, cb));
      return toRemoteStat(stats);
    } catch (err) {
      if (err instanceof SftpError && err.code === 'NO_SUCH_FILE') return null;
      throw err;
    }
  }

  private throwIfClosed(): void {
    if (this.isClosedFlag) {
      throw new SessionClosedError(`ssh ${this.where}: the session is closed`, { cause: this.endError ?? undefined });
    }
  }

}

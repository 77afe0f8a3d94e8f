/**
 * Uploads over one session's SFTP channel: a small file sent with its writes and close pipelined,
 * a large one streamed with many writes in flight while it is hashed, and a stream of buffers.
 * The caller holds the session's open-file slot.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fsp from 'node:fs/promises';
import { LocalFileError } from './errors.js';
import { RequestWindow, throwIfAborted } from './sessionhelpers.js';
import { CHUNK_SIZE, LOCAL_IO_SIZE, MAX_REQUESTS_PER_FILE, type SftpChannel } from './sftpchannel.js';
import type { TransferResult, UploadOptions } from './transfertypes.js';

/**
 * Sends `content` to `remotePath`: open, then the writes (and fsync) and the close back to back
 * without waiting for replies in between; sftp-server handles requests in order, so the close
 * comes after the writes, and each write's reply is still checked.
 */
export async function uploadSmall(channel: SftpChannel, content: Buffer, remotePath: string, opts: UploadOptions, what: string): Promise<TransferResult> {
  const hash = createHash('sha256').update(content).digest('hex');
  const handle = await channel.open(remotePath, 'w');
  const send = async (requests: RequestWindow): Promise<void> => {
    throwIfAborted(opts.signal, what);
    // Never more than ssh2 sends in one request: a longer write would send its rest only after
    // the first reply, behind the close.
    const step = Math.min(CHUNK_SIZE, channel.sftpLimit('_maxWriteLen'));
    let done = 0;
    for (let offset = 0; offset < content.length && !requests.failed; offset += step) {
      const length = Math.min(step, content.length - offset);
      const position = offset;
      // One session request slot per write, taken just before it is sent and given back with its
      // reply: every slot held is a request in flight, so waiting for the next one cannot deadlock.
      const releaseRequest = await channel.requestSlots.acquire();
      requests.add(
        channel.call<void>('write', remotePath, (cb) => channel.sftp.write(handle, content, position, length, position, cb))
          .finally(releaseRequest)
          .then(() => {
            done += length;
            opts.onProgress?.(done, content.length);
          }),
      );
    }
    if (opts.fsync && !requests.failed) {
      requests.add(channel.call<void>('fsync', remotePath, (cb) => channel.sftp.ext_openssh_fsync(handle, cb)));
    }
  };
  try {
    await channel.sendThenClose(handle, remotePath, send);
  } catch (err) {
    await channel.unlink(remotePath).catch(() => {});
    throw err;
  }
  return { hash, size: content.length };
}

/** uploadFile for a file that is large, not regular, or grew while it was read at once. */
export async function uploadStreaming(channel: SftpChannel, localPath: string, remotePath: string, opts: UploadOptions): Promise<TransferResult> {
  let local: fsp.FileHandle | null = null;
  let remote: Buffer | null = null;
  try {
    try {
      local = await fsp.open(localPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    } catch (err) {
      throw new LocalFileError(`cannot read ${localPath}: ${(err as Error).message}`, { cause: err });
    }
    const total = (await local.stat()).size;
    const handle = await channel.open(remotePath, 'w');
    remote = handle;
    const hash = createHash('sha256');
    const window = new RequestWindow();
    let position = 0;
    let done = 0;
    let grew = false;
    // Large local reads, each hashed once and sent as requests the server takes whole: ssh2
    // copies a request's bytes into its packet when it is sent, so the buffer is read into
    // again as soon as its requests are out.
    const requestSize = channel.requestSize('_maxWriteLen');
    const buffer = Buffer.allocUnsafe(Math.max(requestSize, Math.min(LOCAL_IO_SIZE, total + 1)));
    for (;;) {
      throwIfAborted(opts.signal, `upload ${localPath}`);
      // What is left, or (at the end) one byte to find EOF; a file that grew past its size gets full reads again.
      const want = position < total ? Math.min(buffer.length, total - position) : grew ? buffer.length : 1;
      let bytesRead: number;
      try {
        ({ bytesRead } = await local.read(buffer, 0, want, position));
      } catch (err) {
        throw new LocalFileError(`cannot read ${localPath}: ${(err as Error).message}`, { cause: err });
      }
      if (bytesRead === 0) break;
      if (position + bytesRead > total) grew = true;
      hash.update(buffer.subarray(0, bytesRead));
      for (let start = 0; start < bytesRead; start += requestSize) {
        await window.waitForRoom(MAX_REQUESTS_PER_FILE);
        const releaseRequest = await channel.requestSlots.acquire();
        const length = Math.min(requestSize, bytesRead - start);
        const offset = position + start;
        window.add(
          channel.call<void>('write', remotePath, (cb) => channel.sftp.write(handle, buffer, start, length, offset, cb))
            .finally(releaseRequest)
            .then(() => {
              done += length;
              opts.onProgress?.(done, Math.max(total, position));
            }),
        );
      }
      position += bytesRead;
    }
    await window.drain();
    remote = null;
    await closeUpload(channel, handle, remotePath, opts.fsync === true);
    return { hash: hash.digest('hex'), size: position };
  } catch (err) {
    if (remote !== null) await discardUpload(channel, remote, remotePath);
    throw err;
  } finally {
    await local?.close().catch(() => {});
  }
}

/**
 * Writes the buffers `source` yields, back to back from offset 0, to `remotePath` (created with
 * mode 0600, truncated if it exists), with many writes in flight. Resolves with the bytes
 * written. On failure (of a write, or of `source`) the remote file is removed (best effort).
 */
export async function uploadBuffers(channel: SftpChannel, remotePath: string, source: AsyncIterable<Buffer>, opts: UploadOptions): Promise<number> {
  let remote: Buffer | null = null;
  try {
    const handle = await channel.open(remotePath, 'w');
    remote = handle;
    const window = new RequestWindow();
    const chunkSize = channel.chunkSize('_maxWriteLen');
    let position = 0;
    let done = 0;
    for await (const buffer of source) {
      for (let start = 0; start < buffer.length; start += chunkSize) {
        throwIfAborted(opts.signal, `upload ${remotePath}`);
        await window.waitForRoom(MAX_REQUESTS_PER_FILE);
        const releaseRequest = await channel.requestSlots.acquire();
        const length = Math.min(chunkSize, buffer.length - start);
        const at = position;
        position += length;
        window.add(
          channel.call<void>('write', remotePath, (cb) => channel.sftp.write(handle, buffer, start, length, at, cb))
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
    await closeUpload(channel, handle, remotePath, opts.fsync === true);
    return position;
  } catch (err) {
    if (remote !== null) await discardUpload(channel, remote, remotePath);
    throw err;
  }
}

/** The end of an upload whose writes all succeeded: fsync (if asked) and close. */
async function closeUpload(channel: SftpChannel, handle: Buffer, remotePath: string, fsync: boolean): Promise<void> {
  if (fsync) await channel.call<void>('fsync', remotePath, (cb) => channel.sftp.ext_openssh_fsync(handle, cb));
  await channel.closeHandle(handle, remotePath);
}

/** The end of a failed upload: close and remove the remote file (best effort). */
async function discardUpload(channel: SftpChannel, handle: Buffer, remotePath: string): Promise<void> {
  await channel.closeHandle(handle, remotePath).catch(() => {});
  await channel.unlink(remotePath).catch(() => {});
}

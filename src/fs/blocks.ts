/**
 * Block lists of files on disk and the assembly of a file from blocks (see src/core/blocks.ts):
 * hashing a file's blocks and its whole content in one read, writing a new file block by block
 * with every block checked against its digest, and a bounded cache of lists by content hash.
 */
import { createHash } from 'node:crypto';
import { constants as FS } from 'node:fs';
import fsp from 'node:fs/promises';
import { BLOCK_HASH_BYTES, MAX_BLOCKS, blockCount, blockDigest, blockSpan, countOf, type BlockList } from '../core/blocks.js';
import { SyncError } from '../core/errors.js';

/** Bytes per read while hashing (a block of up to 16 MiB is read in pieces). */
const READ_PIECE = 1024 * 1024;

/** The file changed (size, mtime or ctime) while its blocks were read: the list describes no one version. */
export class FileChangedError extends SyncError {
  constructor(absPath: string) {
    super('FILE_CHANGED', `${absPath} changed while its blocks were read`);
  }
}

export interface HashedBlocks {
  /** sha256 of the whole content, lowercase hex. */
  hash: string;
  size: number;
  list: BlockList;
}

export interface HashBlocksOptions {
  /** Called after each block is hashed (tests use it to change the file midway). */
  onBlock?(index: number): void | Promise<void>;
  signal?: AbortSignal;
}

/**
 * The whole-file sha256 and the block list of a regular file at `blockSize`, in one sequential
 * read (the next piece is read while the current one is hashed). Never follows a symlink.
 * Rejects with FileChangedError when the file's size, mtime or ctime moved meanwhile.
 */
export async function hashBlocks(absPath: string, blockSize: number, opts: HashBlocksOptions = {}): Promise<HashedBlocks> {
  // O_NONBLOCK: a FIFO swapped in after the caller's lstat must not block the open.
  const handle = await fsp.open(absPath, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  try {
    const before = await handle.stat({ bigint: true });
    if (!before.isFile()) throw new SyncError('NOT_A_FILE', `${absPath}: not a regular file`);
    const size = Number(before.size);
    const count = blockCount(size, blockSize);
    if (count > MAX_BLOCKS) throw new SyncError('TOO_MANY_BLOCKS', `${absPath}: ${count} blocks at ${blockSize} bytes, more than ${MAX_BLOCKS}`);
    const hashes = Buffer.alloc(count * BLOCK_HASH_BYTES);
    const whole = createHash('sha256');
    const pieceSize = Math.min(blockSize, READ_PIECE);
    const buffers = [Buffer.allocUnsafe(pieceSize), Buffer.allocUnsafe(pieceSize)];
    let turn = 0;
    const readAt = (position: number): Promise<{ bytesRead: number; buffer: Buffer }> => {
      const buffer = buffers[turn++ % 2]!;
      // Never past the end of a block, even after a short read: a piece belongs to one block.
      return handle.read(buffer, 0, Math.min(pieceSize, size - position, blockSize - (position % blockSize)), position);
    };
    let position = 0;
    let next = size > 0 ? readAt(0) : null;
    let block = createHash('sha256');
    while (next !== null) {
      opts.signal?.throwIfAborted();
      const { bytesRead, buffer } = await next;
      if (bytesRead === 0) throw new FileChangedError(absPath); // shrank under us
      const piece = buffer.subarray(0, bytesRead);
      const start = position;
      position += bytesRead;
      next = position < size ? readAt(position) : null;
      whole.update(piece);
      block.update(piece);
      const index = Math.floor(start / blockSize);
      if (position === size || position % blockSize === 0) {
        block.digest().copy(hashes, index * BLOCK_HASH_BYTES);
        block = createHash('sha256');
        await opts.onBlock?.(index);
      }
    }
    const after = await handle.stat({ bigint: true });
    const probe = await handle.read(Buffer.alloc(1), 0, 1, size);
    if (after.size !== before.size || after.mtimeNs !== before.mtimeNs || after.ctimeNs !== before.ctimeNs || probe.bytesRead !== 0) {
      throw new FileChangedError(absPath);
    }
    return { hash: whole.digest('hex'), size, list: { size, blockSize, hashes } };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** True when `data` is block `index` of `list` (its length and digest). */
export function isBlock(list: BlockList, index: number, data: Buffer): boolean {
  return data.length === blockSpan(list, index).length && createHash('sha256').update(data).digest().equals(blockDigest(list, index));
}

/** A block that no source could supply with the right digest. */
export class BlockUnavailableError extends SyncError {
  constructor(readonly index: number, what: string) {
    super('BLOCK_UNAVAILABLE', `block ${index} of ${what} is not to be had with its recorded sha256`);
  }
}

/** The whole content assembled did not have the expected sha256 (its blocks did: the list was wrong). */
export class AssembledHashError extends SyncError {
  constructor(what: string, expected: string, actual: string) {
    super('HASH_MISMATCH', `${what} assembled from blocks has sha256 ${actual}, expected ${expected}`);
  }
}

export interface AssembleOptions {
  target: BlockList;
  /** sha256 (hex) the whole content must have. */
  expectedHash: string;
  /** Created (O_EXCL, mode 0600): must not exist. Removed on failure. */
  outPath: string;
  /** For messages. */
  what: string;
  /**
   * The bytes of block `index`, try `attempt` (0, 1, …): each try that gives bytes of another
   * digest is followed by the next try; null means no more sources. `readOut` reads what the
   * assembly has already written (blocks before `index`).
   */
  getBlock(index: number, attempt: number, readOut: (offset: number, length: number) => Promise<Buffer>): Promise<Buffer | null>;
  /**
   * Whether block `index` is checked against its digest before it is written (default: every
   * block). An unchecked block is covered by the whole hash only: no other try when it is wrong.
   */
  checkBlock?(index: number, attempt: number): boolean;
  fsync?: boolean;
  signal?: AbortSignal;
}

/**
 * Writes `outPath` block by block in order, each block checked against its digest before it is
 * written, and the whole content against `expectedHash`. Rejects with BlockUnavailableError,
 * AssembledHashError or the fs error; `outPath` is then removed.
 */
export async function assembleFile(opts: AssembleOptions): Promise<{ hash: string; size: number }> {
  const { target } = opts;
  const out = await fsp.open(opts.outPath, FS.O_RDWR | FS.O_CREAT | FS.O_EXCL | FS.O_NOFOLLOW, 0o600);
  let ok = false;
  try {
    const whole = createHash('sha256');
    let pendingWrite: Promise<unknown> = Promise.resolve();
    const readOut = async (offset: number, length: number): Promise<Buffer> => {
      await pendingWrite;
      const buffer = Buffer.allocUnsafe(length);
      const { bytesRead } = await out.read(buffer, 0, length, offset);
      return buffer.subarray(0, bytesRead);
    };
    for (let index = 0; index < countOf(target); index++) {
      opts.signal?.throwIfAborted();
      let data: Buffer | null = null;
      for (let attempt = 0; ; attempt++) {
        const candidate = await opts.getBlock(index, attempt, readOut);
        if (candidate === null) throw new BlockUnavailableError(index, opts.what);
        if (opts.checkBlock?.(index, attempt) === false ? candidate.length === blockSpan(target, index).length : isBlock(target, index, candidate)) {
          data = candidate;
          break;
        }
      }
      whole.update(data);
      await pendingWrite;
      pendingWrite = writeAll(out, data, blockSpan(target, index).offset);
    }
    await pendingWrite;
    const hash = whole.digest('hex');
    if (hash !== opts.expectedHash) throw new AssembledHashError(opts.what, opts.expectedHash, hash);
    if (opts.fsync) await out.sync();
    ok = true;
    return { hash, size: target.size };
  } finally {
    await out.close().catch(() => undefined);
    if (!ok) await fsp.rm(opts.outPath, { force: true }).catch(() => undefined);
  }
}

async function writeAll(handle: fsp.FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/** Reads exactly `length` bytes at `offset` (fewer only at the end of the file). */
export async function readExactly(handle: fsp.FileHandle, offset: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buffer.subarray(0, done);
}

/**
 * Block lists by content hash and block size, least recently used dropped first once the digests
 * held pass `maxBytes`. A list names content, not a file: whoever reads blocks by it checks them.
 */
export class BlockListCache {
  private readonly lists = new Map<string, BlockList>();
  private bytes = 0;
  constructor(private readonly maxBytes = 16 * 1024 * 1024) {}

  get(hash: string, blockSize: number): BlockList | null {
    const key = `${hash}:${blockSize}`;
    const list = this.lists.get(key);
    if (list === undefined) return null;
    this.lists.delete(key);
    this.lists.set(key, list);
    return list;
  }

  set(hash: string, list: BlockList): void {
    const key = `${hash}:${list.blockSize}`;
    const old = this.lists.get(key);
    if (old !== undefined) {
      this.bytes -= old.hashes.length;
      this.lists.delete(key);
    }
    if (list.hashes.length > this.maxBytes) return;
    this.lists.set(key, list);
    this.bytes += list.hashes.length;
    for (const [oldest, dropped] of this.lists) {
      if (this.bytes <= this.maxBytes) break;
      this.lists.delete(oldest);
      this.bytes -= dropped.hashes.length;
    }
  }
}

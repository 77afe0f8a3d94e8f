/**
 * Block lists and delta plans (Syncthing style): a file is cut into fixed blocks of one
 * power-of-two size chosen from its length (at least MIN_BLOCK_SIZE, few enough that a file has
 * about TARGET_BLOCKS of them), each named by its SHA-256. A receiver that holds some of a new
 * version's blocks already (in the old file, in any other file, earlier in the new file itself)
 * copies them and fetches only the rest. No rolling hash: blocks match at block boundaries only.
 *
 * Pure: no fs, no network, no clock. Hashes are raw 32-byte digests, packed in one Buffer per list.
 */
import { SyncError } from './errors.js';

export const MIN_BLOCK_SIZE = 128 * 1024;
export const MAX_BLOCK_SIZE = 16 * 1024 * 1024;
/** Block sizes grow (by powers of two) until a file has at most this many blocks. */
export const TARGET_BLOCKS = 2000;
/** The most blocks a list may have (a 1 TiB file at MAX_BLOCK_SIZE); larger files go whole. */
export const MAX_BLOCKS = 65536;
/** Files smaller than this always travel whole: a delta would save little and cost a round trip. */
export const DELTA_MIN_SIZE = 1024 * 1024;
export const BLOCK_HASH_BYTES = 32;

/** The blocks of one content: `hashes` holds `count` digests of BLOCK_HASH_BYTES each, in order. */
export interface BlockList {
  size: number;
  blockSize: number;
  hashes: Buffer;
}

/** The block size for a file of `size` bytes. */
export function blockSizeFor(size: number): number {
  let blockSize = MIN_BLOCK_SIZE;
  while (blockSize < MAX_BLOCK_SIZE && Math.ceil(size / blockSize) > TARGET_BLOCKS) blockSize *= 2;
  return blockSize;
}

/** True for a power of two between MIN_BLOCK_SIZE and MAX_BLOCK_SIZE. */
export function isValidBlockSize(blockSize: number): boolean {
  return Number.isInteger(blockSize) && blockSize >= MIN_BLOCK_SIZE && blockSize <= MAX_BLOCK_SIZE && (blockSize & (blockSize - 1)) === 0;
}

export function blockCount(size: number, blockSize: number): number {
  return Math.ceil(size / blockSize);
}

/** Where block `index` lies in a file of `size` bytes (the last block may be shorter). */
export function blockSpan(list: Pick<BlockList, 'size' | 'blockSize'>, index: number): { offset: number; length: number } {
  const offset = index * list.blockSize;
  return { offset, length: Math.min(list.blockSize, list.size - offset) };
}

export function countOf(list: BlockList): number {
  return list.hashes.length / BLOCK_HASH_BYTES;
}

/** Block `index`'s digest as a map key (hex). */
export function blockKey(list: BlockList, index: number): string {
  return list.hashes.toString('hex', index * BLOCK_HASH_BYTES, (index + 1) * BLOCK_HASH_BYTES);
}

/** Block `index`'s digest (a view into the list). */
export function blockDigest(list: BlockList, index: number): Buffer {
  return list.hashes.subarray(index * BLOCK_HASH_BYTES, (index + 1) * BLOCK_HASH_BYTES);
}

/** A problem with a list that came from elsewhere, or null when it is well formed. */
export function blockListProblem(list: BlockList): string | null {
  if (!Number.isSafeInteger(list.size) || list.size < 0) return `size ${list.size} is not a byte count`;
  if (!isValidBlockSize(list.blockSize)) return `block size ${list.blockSize} is not a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}`;
  if (list.hashes.length % BLOCK_HASH_BYTES !== 0) return `hashes are not whole ${BLOCK_HASH_BYTES}-byte digests`;
  const count = countOf(list);
  if (count > MAX_BLOCKS) return `${count} blocks, more than ${MAX_BLOCKS}`;
  if (count !== blockCount(list.size, list.blockSize)) return `${count} blocks for ${list.size} bytes at ${list.blockSize} a block (expected ${blockCount(list.size, list.blockSize)})`;
  return null;
}

/** Where one block of the target comes from. */
export type BlockSource =
  /** Copied from `sources[source]` at `offset` (the block there had the same digest). */
  | { kind: 'copy'; source: number; offset: number }
  /** Copied from the target itself: an earlier block with the same digest, at `offset`. */
  | { kind: 'self'; offset: number }
  /** Not held anywhere: fetched (pull) or sent (push). */
  | { kind: 'fetch' };

export interface AssemblyPlan {
  steps: BlockSource[];
  /** Indexes of the target blocks to fetch, ascending. */
  fetch: number[];
  reusedBytes: number;
  fetchBytes: number;
}

/**
 * For each block of `target`, where the receiver gets it: from the first source (in the order
 * given) holding a block with the same digest, else from an earlier block of the target that is
 * fetched or copied, else by fetching it. A digest names the bytes, so a block found at any
 * offset of any source serves (lengths agree: equal digests mean equal bytes).
 */
export function planAssembly(target: BlockList, sources: readonly BlockList[]): AssemblyPlan {
  const found = new Map<string, { source: number; offset: number }>();
  // Later sources first, so that the first source's offsets win for digests found in several.
  for (let s = sources.length - 1; s >= 0; s--) {
    const source = sources[s]!;
    for (let i = countOf(source) - 1; i >= 0; i--) found.set(blockKey(source, i), { source: s, offset: i * source.blockSize });
  }
  const earlier = new Map<string, number>();
  const steps: BlockSource[] = [];
  const fetch: number[] = [];
  let reusedBytes = 0;
  let fetchBytes = 0;
  for (let i = 0; i < countOf(target); i++) {
    const key = blockKey(target, i);
    const { offset, length } = blockSpan(target, i);
    const inSource = found.get(key);
    const inTarget = earlier.get(key);
    if (inSource !== undefined) {
      steps.push({ kind: 'copy', source: inSource.source, offset: inSource.offset });
      reusedBytes += length;
    } else if (inTarget !== undefined) {
      steps.push({ kind: 'self', offset: inTarget });
      reusedBytes += length;
    } else {
      steps.push({ kind: 'fetch' });
      fetch.push(i);
      fetchBytes += length;
    }
    if (!earlier.has(key)) earlier.set(key, offset);
  }
  return { steps, fetch, reusedBytes, fetchBytes };
}

/** Runs of consecutive block indexes as byte ranges of at most `maxBytes` (at least one block each). */
export function fetchRanges(target: Pick<BlockList, 'size' | 'blockSize'>, indexes: readonly number[], maxBytes: number): Array<{ offset: number; length: number; first: number; count: number }> {
  const ranges: Array<{ offset: number; length: number; first: number; count: number }> = [];
  for (const index of indexes) {
    const span = blockSpan(target, index);
    const last = ranges.at(-1);
    if (last !== undefined && last.first + last.count === index && last.length + span.length <= maxBytes) {
      last.length += span.length;
      last.count++;
    } else ranges.push({ offset: span.offset, length: span.length, first: index, count: 1 });
  }
  return ranges;
}

// ---------------------------------------------------------------------------------------------
// A delta upload: the file a pushing client sends in place of the whole content. A header names
// every block of the new content and says which ones follow it; the data of those follows, in
// block order. Every other block is one the server holds (in the current file at the path, or
// earlier in the new content).
//
//   "SSDELTA1" | u32 blockSize | u32 count | u64 size | count × 32-byte digest | count × u8 flag

const DELTA_MAGIC = Buffer.from('SSDELTA1', 'latin1');
/** Bytes before the digests. */
export const DELTA_FIXED_HEADER = 24;

/** The header of a delta upload for `list`; `included[i]` is 1 when block i's data follows. */
export function encodeDeltaHeader(list: BlockList, included: Uint8Array): Buffer {
  const count = countOf(list);
  if (included.length !== count) throw new RangeError(`${included.length} flags for ${count} blocks`);
  const header = Buffer.alloc(DELTA_FIXED_HEADER + count * (BLOCK_HASH_BYTES + 1));
  DELTA_MAGIC.copy(header, 0);
  header.writeUInt32BE(list.blockSize, 8);
  header.writeUInt32BE(count, 12);
  header.writeBigUInt64BE(BigInt(list.size), 16);
  list.hashes.copy(header, DELTA_FIXED_HEADER);
  header.set(included, DELTA_FIXED_HEADER + count * BLOCK_HASH_BYTES);
  return header;
}

/** How long the whole header is, from its fixed part; throws on a bad magic or count. */
export function deltaHeaderLength(fixed: Buffer): number {
  if (fixed.length < DELTA_FIXED_HEADER || !fixed.subarray(0, 8).equals(DELTA_MAGIC)) throw new DeltaFormatError('not a delta upload (bad magic)');
  const count = fixed.readUInt32BE(12);
  if (count > MAX_BLOCKS) throw new DeltaFormatError(`${count} blocks, more than ${MAX_BLOCKS}`);
  return DELTA_FIXED_HEADER + count * (BLOCK_HASH_BYTES + 1);
}

export interface DeltaHeader {
  list: BlockList;
  included: Uint8Array;
  /** Bytes of block data that must follow the header. */
  dataLength: number;
}

/** Parses and checks a whole header (see deltaHeaderLength). */
export function decodeDeltaHeader(header: Buffer): DeltaHeader {
  const length = deltaHeaderLength(header);
  if (header.length !== length) throw new DeltaFormatError(`header is ${header.length} bytes, expected ${length}`);
  const count = header.readUInt32BE(12);
  const size = header.readBigUInt64BE(16);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw new DeltaFormatError(`size ${size} is too large`);
  const list: BlockList = {
    blockSize: header.readUInt32BE(8),
    size: Number(size),
    hashes: Buffer.from(header.subarray(DELTA_FIXED_HEADER, DELTA_FIXED_HEADER + count * BLOCK_HASH_BYTES)),
  };
  const problem = blockListProblem(list);
  if (problem !== null) throw new DeltaFormatError(problem);
  const included = new Uint8Array(header.subarray(DELTA_FIXED_HEADER + count * BLOCK_HASH_BYTES));
  let dataLength = 0;
  for (let i = 0; i < count; i++) {
    if (included[i]! > 1) throw new DeltaFormatError(`flag of block ${i} is ${included[i]}, expected 0 or 1`);
    if (included[i] === 1) dataLength += blockSpan(list, i).length;
  }
  return { list, included, dataLength };
}

/** A delta upload that does not follow the format. */
export class DeltaFormatError extends SyncError {
  constructor(message: string) {
    super('BAD_DELTA', `delta upload: ${message}`);
  }
}

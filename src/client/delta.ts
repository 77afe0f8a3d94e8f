/**
 * The client's side of delta transfer (see src/core/blocks.ts). Pushing an edit of a large file,
 * it asks the server for the block list of the base it edited, hashes the file's blocks, and
 * sends a delta upload with only the blocks the server lacks. Pulling a new version of a large
 * file it already holds an older one of (or the source of a rename), it asks for the new
 * version's list, reuses the blocks it has, and reads only the others from the server's file.
 * Either side falls back to whole files where a delta cannot be had (a server without the
 * `blocks` method, a base it no longer holds, nothing reusable).
 */
import fsp from 'node:fs/promises';
import { constants as FS } from 'node:fs';
import {
  DELTA_MIN_SIZE,
  blockKey,
  blockListProblem,
  blockSizeFor,
  blockSpan,
  countOf,
  encodeDeltaHeader,
  fetchRanges,
  planAssembly,
  type BlockList,
} from '../core/blocks.js';
import { SyncError } from '../core/errors.js';
import { FileChangedError, assembleFile, hashBlocks, isBlock, readExactly } from '../fs/blocks.js';
import type { RpcPeer } from '../rpc.js';
import type { RemoteReader, SshSession } from '../ssh/transfer.js';

/** Peers that answered method-not-found to `blocks` (an older server): they get whole files. */
const withoutBlocks = new WeakSet<RpcPeer>();

/** Bytes per ranged read of missing blocks, and how many ranges are read ahead of the assembly. */
const FETCH_RANGE = 4 * 1024 * 1024;
const RANGES_AHEAD = 4;

/** The server's block list of `path` at content `hash` (of `size` bytes), or null. */
async function serverList(peer: RpcPeer, folder: string, rel: string, hash: string, size: number, blockSize: number, current = false): Promise<BlockList | null> {
  if (withoutBlocks.has(peer)) return null;
  let blocks: string | null;
  try {
    ({ blocks } = await peer.request('blocks', { folder, path: rel, hash, blockSize, ...(current ? { current } : {}) }, 300_000));
  } catch (err) {
    if ((err as { code?: unknown }).code === 'RPC_METHOD_NOT_FOUND') {
      withoutBlocks.add(peer);
      return null;
    }
    throw err;
  }
  if (blocks === null) return null;
  const list: BlockList = { size, blockSize, hashes: Buffer.from(blocks, 'base64') };
  const problem = blockListProblem(list);
  if (problem !== null) throw new SyncError('BAD_DELTA', `the server's block list of ${rel}: ${problem}`);
  return list;
}

export interface PushDeltaOptions {
  ssh: SshSession;
  peer: RpcPeer;
  folder: string;
  rel: string;
  localAbs: string;
  /** The size the file had when it was read. */
  size: number;
  /** The content the server holds at the path, as the client last agreed on it. */
  base: { hash: string; size: number };
  /** Where the delta upload goes (in the server folder's tmp dir). */
  remotePath: string;
  onProgress?(done: number): void;
}

export interface PushDeltaResult {
  /** sha256 and size of the content the upload describes (read now). */
  hash: string;
  size: number;
  blocks: number;
  sentBlocks: number;
  /** Bytes of the upload (header and blocks); 0 when the content is the base's and nothing was sent. */
  sentBytes: number;
}

/**
 * Writes a delta upload of `localAbs` against the server's `base` to `remotePath`; null when no
 * delta can be had (the file is small, the server has no list of the base) and nothing was sent.
 * Rejects with FileChangedError when the file changed while it was read.
 */
export async function pushDelta(opts: PushDeltaOptions): Promise<PushDeltaResult | null> {
  if (opts.size < DELTA_MIN_SIZE || opts.base.size === 0) return null;
  const blockSize = blockSizeFor(opts.size);
  // The server lists its file while this side hashes the local one.
  const hashing = hashBlocks(opts.localAbs, blockSize);
  hashing.catch(() => undefined); // observed below, unless the server has no list
  const base = await serverList(opts.peer, opts.folder, opts.rel, opts.base.hash, opts.base.size, blockSize, true);
  if (base === null) return null;
  const local = await hashing;
  if (blockSizeFor(local.size) !== blockSize) throw new FileChangedError(opts.localAbs);
  const { list } = local;
  // The content is the base's (only its metadata moved): nothing to send.
  if (local.hash === opts.base.hash) return { hash: local.hash, size: local.size, blocks: countOf(list), sentBlocks: 0, sentBytes: 0 };
  const held = new Set<string>();
  for (let i = 0; i < countOf(base); i++) held.add(blockKey(base, i));
  const included = new Uint8Array(countOf(list));
  let sentBlocks = 0;
  for (let i = 0; i < included.length; i++) {
    const key = blockKey(list, i);
    if (held.has(key)) continue;
    held.add(key); // a later block with the same bytes is copied from this one
    included[i] = 1;
    sentBlocks++;
  }
  const header = encodeDeltaHeader(list, included);
  async function* content(): AsyncGenerator<Buffer> {
    yield header;
    if (sentBlocks === 0) return;
    const handle = await fsp.open(opts.localAbs, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
    try {
      for (let i = 0; i < included.length; i++) {
        if (included[i] !== 1) continue;
        const { offset, length } = blockSpan(list, i);
        const data = await readExactly(handle, offset, length);
        // Changed since it was hashed: never send a mix (the server would refuse it anyway).
        if (!isBlock(list, i, data)) throw new FileChangedError(opts.localAbs);
        yield data;
      }
    } finally {
      await handle.close().catch(() => undefined);
    }
  }
  const sentBytes = await opts.ssh.uploadFrom(opts.remotePath, content(), { onProgress: (done) => opts.onProgress?.(done) });
  return { hash: local.hash, size: local.size, blocks: included.length, sentBlocks, sentBytes };
}

export interface PullDeltaOptions {
  ssh: SshSession;
  peer: RpcPeer;
  folder: string;
  rel: string;
  /** The server's file (read for the blocks not held here). */
  remotePath: string;
  entry: { hash: string; size: number };
  /**
   * Local files whose blocks may serve (the old version at the path, a rename's source), with the
   * content they are believed to hold: the server's list of that content spares hashing them here
   * (every block copied is checked anyway).
   */
  localSources: Array<{ abs: string; hash: string; size: number }>;
  /** Created here; removed on failure. */
  outAbs: string;
  onProgress?(done: number): void;
  fsync?: boolean;
}

export interface PullDeltaResult {
  reusedBytes: number;
  fetchedBytes: number;
}

/**
 * Writes the new version to `outAbs` from local blocks and the server's missing ones; null when
 * no delta is worth it (small file, no local source, nothing reusable, no list on the server)
 * and nothing was written. Rejects when a block or the whole content does not match.
 */
export async function pullDelta(opts: PullDeltaOptions): Promise<PullDeltaResult | null> {
  if (opts.entry.size < DELTA_MIN_SIZE) return null;
  const blockSize = blockSizeFor(opts.entry.size);
  if (opts.localSources.length === 0) return null;
  const target = await serverList(opts.peer, opts.folder, opts.rel, opts.entry.hash, opts.entry.size, blockSize);
  if (target === null) return null;
  const sources: Array<{ abs: string; list: BlockList }> = [];
  for (const source of opts.localSources) {
    try {
      const known = await serverList(opts.peer, opts.folder, opts.rel, source.hash, source.size, blockSize);
      sources.push({ abs: source.abs, list: known ?? (await hashBlocks(source.abs, blockSize)).list });
    } catch (err) {
      if (opts.ssh.isClosed) throw err;
      // gone, not a file, changing: not a source
    }
  }
  if (sources.length === 0) return null;
  const plan = planAssembly(
    target,
    sources.map((s) => s.list),
  );
  if (plan.reusedBytes === 0) return null;
  const handles: Array<fsp.FileHandle | null> = [];
  let reader: RemoteReader | null = null;
  try {
    for (const source of sources) handles.push(await fsp.open(source.abs, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK).catch(() => null));
    reader = await opts.ssh.openReader(opts.remotePath);
    const remote = reader;
    const ranges = fetchRanges(target, plan.fetch, FETCH_RANGE);
    const rangeOf = new Map<number, number>();
    ranges.forEach((range, r) => {
      for (let i = range.first; i < range.first + range.count; i++) rangeOf.set(i, r);
    });
    const reads = new Map<number, Promise<Buffer>>();
    const startRead = (r: number): Promise<Buffer> => {
      let read = reads.get(r);
      if (read === undefined) {
        read = remote.read(ranges[r]!.offset, ranges[r]!.length);
        read.catch(() => undefined); // observed when its blocks are needed
        reads.set(r, read);
      }
      return read;
    };
    let done = 0;
    const fetched = async (index: number): Promise<Buffer> => {
      const r = rangeOf.get(index)!;
      for (let ahead = r; ahead < Math.min(ranges.length, r + RANGES_AHEAD + 1); ahead++) startRead(ahead);
      for (const older of reads.keys()) if (older < r) reads.delete(older);
      const data = await startRead(r);
      const start = blockSpan(target, index).offset - ranges[r]!.offset;
      return data.subarray(start, start + blockSpan(target, index).length);
    };
    await assembleFile({
      target,
      expectedHash: opts.entry.hash,
      outPath: opts.outAbs,
      what: `${opts.rel} (delta)`,
      fsync: opts.fsync,
      // Local blocks are covered by the whole hash (a wrong one fails the delta: the caller then
      // downloads the file whole); fetched ones are checked one by one.
      checkBlock: (index) => plan.steps[index]!.kind === 'fetch',
      getBlock: async (index, attempt, readOut) => {
        const step = plan.steps[index]!;
        const { offset, length } = blockSpan(target, index);
        let data: Buffer | null = null;
        if (attempt === 0 && step.kind === 'fetch') data = await fetched(index);
        else if (attempt === 0 && step.kind === 'copy' && handles[step.source]) data = await readExactly(handles[step.source]!, step.offset, length);
        else if (attempt === 0 && step.kind === 'self') data = await readOut(step.offset, length);
        // A local block that changed since it was hashed: read it from the server instead.
        else if (step.kind !== 'fetch' && attempt <= 1) data = await remote.read(offset, length);
        if (data !== null) opts.onProgress?.((done += data.length));
        return data;
      },
    });
    return { reusedBytes: plan.reusedBytes, fetchedBytes: plan.fetchBytes };
  } finally {
    await reader?.close().catch(() => undefined);
    for (const handle of handles) await handle?.close().catch(() => undefined);
  }
}

/**
 * The server's side of delta transfer: block lists of the files it holds (the `blocks` method),
 * and the assembly of a pushed delta upload (see src/core/blocks.ts for the format) into a new
 * temp file from the blocks of the current file at the path and the blocks the client sent.
 * Every block is checked against its digest as it is written, and the whole content against the
 * hash the client recorded, so no second read of the result is needed.
 */
import { constants as FS, type Stats } from 'node:fs';
import fsp from 'node:fs/promises';
import { DELTA_FIXED_HEADER, DeltaFormatError, MIN_BLOCK_SIZE, decodeDeltaHeader, deltaHeaderLength, planAssembly, blockSpan, countOf, type BlockList } from '../core/blocks.js';
import { SyncError } from '../core/errors.js';
import type { Entry } from '../core/types.js';
import { BlockListCache, assembleFile, hashBlocks, readExactly } from '../fs/blocks.js';
import { isReachedThroughLink } from '../fs/safefs.js';
import { absPathOf } from '../fs/scan.js';

/** Block lists of one server's files, computed on demand (one read of the file) and cached by content hash. */
export class ServerBlocks {
  private readonly cache = new BlockListCache();
  private readonly computing = new Map<string, Promise<BlockList | null>>();

  /**
   * The block list at `blockSize` of content `hash`: from the cache (a list names content, not a
   * file: it may be the previous version of the file, which a pulling client still holds), or
   * computed from the file at `rel` when its recorded entry is a file with that content and what
   * is on disk still has it; null otherwise. With `current`, only for the content recorded at `rel`.
   */
  async listFor(root: string, rel: string, entry: Entry | null | undefined, hash: string, blockSize: number, current = false): Promise<BlockList | null> {
    const isRecorded = entry?.type === 'file' && entry.hash === hash;
    if (current && !isRecorded) return null;
    const cached = this.cache.get(hash, blockSize);
    if (cached !== null) return cached;
    if (!isRecorded || entry.size < MIN_BLOCK_SIZE) return null;
    const key = `${rel}\0${hash}:${blockSize}`;
    let running = this.computing.get(key);
    if (running === undefined) {
      running = (async () => {
        try {
          if (await isReachedThroughLink(root, rel)) return null;
          const hashed = await hashBlocks(absPathOf(root, rel), blockSize);
          if (hashed.hash !== hash) return null;
          this.cache.set(hash, hashed.list);
          return hashed.list;
        } catch {
          return null; // gone, replaced, changing: the client sends the whole file
        }
      })().finally(() => this.computing.delete(key));
      this.computing.set(key, running);
    }
    return running;
  }

  /** Records the list of content the server has just assembled (a client pulling it asks next). */
  remember(hash: string, list: BlockList): void {
    this.cache.set(hash, list);
  }

  /**
   * Builds the content of a delta put at `outAbs` from the upload at `uploadAbs` and the current
   * file at `rel` (recorded as `current`). `inspect` checks the opened upload (regular file, one
   * link). Rejects with BAD_DELTA (a malformed upload), BLOCK_UNAVAILABLE (a block neither sent
   * nor held: the server's file changed since the client asked), HASH_MISMATCH, or an fs error.
   */
  async assemble(opts: {
    root: string;
    rel: string;
    current: Entry | null | undefined;
    uploadAbs: string;
    inspect: (st: Stats) => void;
    entry: Entry;
    outAbs: string;
  }): Promise<void> {
    const { entry } = opts;
    if (entry.type !== 'file') throw new SyncError('BAD_OP', 'only files carry an upload');
    const upload = await fsp.open(opts.uploadAbs, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
    let old: fsp.FileHandle | null = null;
    try {
      const st = await upload.stat();
      opts.inspect(st);
      const fixed = await readExactly(upload, 0, DELTA_FIXED_HEADER);
      const headerLength = deltaHeaderLength(fixed);
      const header = decodeDeltaHeader(await readExactly(upload, 0, headerLength));
      const target = header.list;
      if (target.size !== entry.size) throw new DeltaFormatError(`it describes ${target.size} bytes, the entry ${entry.size}`);
      if (st.size !== headerLength + header.dataLength) {
        throw new DeltaFormatError(`it holds ${st.size - headerLength} bytes of blocks, its header lists ${header.dataLength}`);
      }
      // Where each sent block lies in the upload.
      const sentAt = new Float64Array(countOf(target));
      let next = headerLength;
      for (let i = 0; i < sentAt.length; i++) {
        if (header.included[i] === 1) {
          sentAt[i] = next;
          next += blockSpan(target, i).length;
        }
      }
      const sources: BlockList[] = [];
      if (opts.current?.type === 'file' && !(await isReachedThroughLink(opts.root, opts.rel))) {
        const oldList = await this.listFor(opts.root, opts.rel, opts.current, opts.current.hash, target.blockSize, true);
        if (oldList !== null) {
          try {
            old = await fsp.open(absPathOf(opts.root, opts.rel), FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
            if ((await old.stat()).isFile()) sources.push(oldList);
          } catch {
            // gone meanwhile: only what was sent can serve
          }
        }
      }
      const plan = planAssembly(target, sources);
      await assembleFile({
        target,
        expectedHash: entry.hash,
        outPath: opts.outAbs,
        what: `delta upload of ${opts.rel}`,
        // Blocks copied from the server's own file are checked by the whole hash only.
        checkBlock: (index) => header.included[index] === 1,
        getBlock: async (index, attempt, readOut) => {
          if (attempt > 0) return null;
          const { length } = blockSpan(target, index);
          if (header.included[index] === 1) return readExactly(upload, sentAt[index]!, length);
          const step = plan.steps[index]!;
          if (step.kind === 'copy' && old !== null) return readExactly(old, step.offset, length);
          if (step.kind === 'self') return readOut(step.offset, length);
          return null;
        },
      });
      this.cache.set(entry.hash, target);
    } finally {
      await upload.close().catch(() => undefined);
      await old?.close().catch(() => undefined);
    }
  }
}

/**
 * Delta transfer's block code: block sizes, block lists of real files, plans that reuse blocks
 * from the old file, from other files and from the target itself, the delta upload format, and
 * a file that changes while its blocks are read.
 */
import { afterAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  BLOCK_HASH_BYTES,
  MAX_BLOCK_SIZE,
  MIN_BLOCK_SIZE,
  TARGET_BLOCKS,
  blockKey,
  blockSizeFor,
  countOf,
  decodeDeltaHeader,
  deltaHeaderLength,
  encodeDeltaHeader,
  fetchRanges,
  planAssembly,
  type BlockList,
} from '../src/core/blocks.js';
import { BlockListCache, FileChangedError, assembleFile, hashBlocks, readExactly } from '../src/fs/blocks.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';

afterAll(cleanupTempDirs);

const KiB = 1024;
const MiB = 1024 * KiB;
const sha = (data: Buffer): string => crypto.createHash('sha256').update(data).digest('hex');

/** A block list computed in memory, the reference for the one read from disk. */
function listOf(data: Buffer, blockSize: number): BlockList {
  const count = Math.ceil(data.length / blockSize);
  const hashes = Buffer.alloc(count * BLOCK_HASH_BYTES);
  for (let i = 0; i < count; i++) crypto.createHash('sha256').update(data.subarray(i * blockSize, (i + 1) * blockSize)).digest().copy(hashes, i * BLOCK_HASH_BYTES);
  return { size: data.length, blockSize, hashes };
}

describe('block sizes', () => {
  it('are powers of two from 128 KiB, keeping a file under ~2000 blocks up to 16 MiB a block', () => {
    expect(blockSizeFor(0)).toBe(MIN_BLOCK_SIZE);
    expect(blockSizeFor(100 * MiB)).toBe(128 * KiB); // 800 blocks
    expect(blockSizeFor(256 * MiB)).toBe(256 * KiB); // 2048 at 128 KiB is too many
    expect(blockSizeFor(1024 * MiB)).toBe(1 * MiB);
    expect(blockSizeFor(2 ** 50)).toBe(MAX_BLOCK_SIZE);
    for (const size of [1, 5 * MiB, 333 * MiB + 7, 4000 * MiB]) {
      const bs = blockSizeFor(size);
      expect(bs & (bs - 1)).toBe(0);
      expect(Math.ceil(size / bs)).toBeLessThanOrEqual(TARGET_BLOCKS);
      if (bs > MIN_BLOCK_SIZE) expect(Math.ceil(size / (bs / 2))).toBeGreaterThan(TARGET_BLOCKS);
    }
  });
});

describe('block lists of files', () => {
  it('match the digests of each block and of the whole file, the last block short', async () => {
    const dir = await tempDir();
    const data = crypto.randomBytes(3 * MIN_BLOCK_SIZE + 1234);
    await fs.writeFile(path.join(dir, 'f'), data);
    const hashed = await hashBlocks(path.join(dir, 'f'), MIN_BLOCK_SIZE);
    expect(hashed.hash).toBe(sha(data));
    expect(hashed.size).toBe(data.length);
    expect(countOf(hashed.list)).toBe(4);
    expect(hashed.list.hashes.equals(listOf(data, MIN_BLOCK_SIZE).hashes)).toBe(true);
  });

  it('of an empty file have no blocks', async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, 'e'), '');
    const hashed = await hashBlocks(path.join(dir, 'e'), MIN_BLOCK_SIZE);
    expect(countOf(hashed.list)).toBe(0);
    expect(hashed.hash).toBe(sha(Buffer.alloc(0)));
  });

  it('refuse a file that changes while its blocks are read', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'busy');
    await fs.writeFile(file, crypto.randomBytes(4 * MIN_BLOCK_SIZE));
    let wrote = false;
    const hashing = hashBlocks(file, MIN_BLOCK_SIZE, {
      onBlock: async (index) => {
        if (index !== 1) return;
        // Rewrite a block already read, keeping the size: only the stat times tell.
        const handle = await fs.open(file, 'r+');
        await handle.write(Buffer.alloc(100, 7), 0, 100, 10);
        await handle.close();
        wrote = true;
      },
    });
    await expect(hashing).rejects.toBeInstanceOf(FileChangedError);
    expect(wrote).toBe(true);
  });

  it('refuse a file that grows or shrinks while its blocks are read', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'grow');
    await fs.writeFile(file, crypto.randomBytes(3 * MIN_BLOCK_SIZE));
    await expect(hashBlocks(file, MIN_BLOCK_SIZE, { onBlock: (i) => (i === 0 ? fs.appendFile(file, 'more') : undefined) })).rejects.toBeInstanceOf(FileChangedError);
    await expect(hashBlocks(file, MIN_BLOCK_SIZE, { onBlock: (i) => (i === 0 ? fs.truncate(file, MIN_BLOCK_SIZE + 5) : undefined) })).rejects.toMatchObject({ code: 'FILE_CHANGED' });
  });

  it('never follow a symlink', async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, 'real'), 'x');
    await fs.symlink('real', path.join(dir, 'link'));
    await expect(hashBlocks(path.join(dir, 'link'), MIN_BLOCK_SIZE)).rejects.toMatchObject({ code: 'ELOOP' });
  });
});

describe('assembly plans', () => {
  const bs = MIN_BLOCK_SIZE;
  const blocks = Array.from({ length: 6 }, () => crypto.randomBytes(bs));

  it('reuse the old file and fetch only the edited block', () => {
    const old = Buffer.concat(blocks);
    const edited = Buffer.concat(blocks.map((b, i) => (i === 3 ? crypto.randomBytes(bs) : b)));
    const plan = planAssembly(listOf(edited, bs), [listOf(old, bs)]);
    expect(plan.fetch).toEqual([3]);
    expect(plan.fetchBytes).toBe(bs);
    expect(plan.reusedBytes).toBe(5 * bs);
    expect(plan.steps[5]).toEqual({ kind: 'copy', source: 0, offset: 5 * bs });
  });

  it('reuse blocks from any source file, at any block offset, the first source first', () => {
    const other = Buffer.concat([blocks[4]!, blocks[5]!]);
    const old = Buffer.concat([blocks[0]!, blocks[1]!, blocks[4]!]);
    const target = Buffer.concat([blocks[5]!, blocks[0]!, blocks[4]!, blocks[2]!]);
    const plan = planAssembly(listOf(target, bs), [listOf(old, bs), listOf(other, bs)]);
    expect(plan.steps).toEqual([
      { kind: 'copy', source: 1, offset: bs }, // only in the other file
      { kind: 'copy', source: 0, offset: 0 },
      { kind: 'copy', source: 0, offset: 2 * bs }, // in both: the first source wins
      { kind: 'fetch' },
    ]);
  });

  it('fetch a block repeated in the target once, and copy it from the target after that', () => {
    const zero = Buffer.alloc(bs);
    const target = Buffer.concat([zero, blocks[0]!, zero, zero]);
    const plan = planAssembly(listOf(target, bs), []);
    expect(plan.fetch).toEqual([0, 1]);
    expect(plan.steps[2]).toEqual({ kind: 'self', offset: 0 });
    expect(plan.steps[3]).toEqual({ kind: 'self', offset: 0 });
  });

  it('group consecutive fetched blocks into bounded ranges', () => {
    const list = { size: 10 * bs - 10, blockSize: bs };
    expect(fetchRanges(list, [0, 1, 2, 5, 8, 9], 2 * bs)).toEqual([
      { offset: 0, length: 2 * bs, first: 0, count: 2 },
      { offset: 2 * bs, length: bs, first: 2, count: 1 },
      { offset: 5 * bs, length: bs, first: 5, count: 1 },
      { offset: 8 * bs, length: 2 * bs - 10, first: 8, count: 2 },
    ]);
  });
});

describe('the delta upload header', () => {
  it('round-trips, and counts the data that must follow', () => {
    const data = crypto.randomBytes(3 * MIN_BLOCK_SIZE + 5);
    const list = listOf(data, MIN_BLOCK_SIZE);
    const header = encodeDeltaHeader(list, Uint8Array.from([0, 1, 0, 1]));
    expect(deltaHeaderLength(header.subarray(0, 24))).toBe(header.length);
    const decoded = decodeDeltaHeader(header);
    expect(decoded.list.size).toBe(data.length);
    expect(decoded.list.hashes.equals(list.hashes)).toBe(true);
    expect(decoded.dataLength).toBe(MIN_BLOCK_SIZE + 5);
  });

  it('refuses bad magic, block sizes, counts and flags with BAD_DELTA', () => {
    const list = listOf(crypto.randomBytes(2 * MIN_BLOCK_SIZE), MIN_BLOCK_SIZE);
    const good = encodeDeltaHeader(list, Uint8Array.from([1, 0]));
    const bad = (edit: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(good);
      edit(b);
      return b;
    };
    expect(() => decodeDeltaHeader(bad((b) => b.write('XX', 0)))).toThrow(/bad magic/);
    expect(() => decodeDeltaHeader(bad((b) => b.writeUInt32BE(MIN_BLOCK_SIZE + 1, 8)))).toThrow(/power of two/);
    expect(() => decodeDeltaHeader(bad((b) => b.writeBigUInt64BE(BigInt(5 * MIN_BLOCK_SIZE), 16)))).toThrow(/blocks for/);
    expect(() => decodeDeltaHeader(bad((b) => (b[b.length - 1] = 2)))).toThrow(/expected 0 or 1/);
    expect(() => deltaHeaderLength(bad((b) => b.writeUInt32BE(1 << 30, 12)).subarray(0, 24))).toThrow(/more than/);
    let caught: unknown = null;
    try {
      decodeDeltaHeader(good.subarray(0, good.length - 1));
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: 'BAD_DELTA' });
  });
});

describe('assembling a file', () => {
  it('from an old file, another file and fetched blocks, byte-identical', async () => {
    const dir = await tempDir();
    const bs = MIN_BLOCK_SIZE;
    const parts = Array.from({ length: 5 }, () => crypto.randomBytes(bs));
    const old = Buffer.concat([parts[0]!, parts[1]!, parts[2]!]);
    const other = Buffer.concat([parts[3]!]);
    const fresh = crypto.randomBytes(1000);
    const target = Buffer.concat([parts[0]!, parts[3]!, parts[2]!, parts[0]!, fresh]);
    await fs.writeFile(path.join(dir, 'old'), old);
    await fs.writeFile(path.join(dir, 'other'), other);
    const sources = [await hashBlocks(path.join(dir, 'old'), bs), await hashBlocks(path.join(dir, 'other'), bs)];
    const targetList = listOf(target, bs);
    const plan = planAssembly(targetList, sources.map((s) => s.list));
    expect(plan.fetchBytes).toBe(1000);
    const handles = [await fs.open(path.join(dir, 'old')), await fs.open(path.join(dir, 'other'))];
    const fetched: number[] = [];
    try {
      await assembleFile({
        target: targetList,
        expectedHash: sha(target),
        outPath: path.join(dir, 'out'),
        what: 'test',
        getBlock: async (index, attempt, readOut) => {
          if (attempt > 0) return null;
          const step = plan.steps[index]!;
          const length = Math.min(bs, target.length - index * bs);
          if (step.kind === 'copy') return readExactly(handles[step.source]!, step.offset, length);
          if (step.kind === 'self') return readOut(step.offset, length);
          fetched.push(index);
          return target.subarray(index * bs, index * bs + length);
        },
      });
    } finally {
      for (const h of handles) await h.close();
    }
    expect(fetched).toEqual([4]);
    expect((await fs.readFile(path.join(dir, 'out'))).equals(target)).toBe(true);
  });

  it('tries the next source when a block changed since it was listed, and fails when none has it', async () => {
    const dir = await tempDir();
    const bs = MIN_BLOCK_SIZE;
    const target = crypto.randomBytes(2 * bs);
    const list = listOf(target, bs);
    const stale = crypto.randomBytes(bs);
    const tries: string[] = [];
    await assembleFile({
      target: list,
      expectedHash: sha(target),
      outPath: path.join(dir, 'a'),
      what: 'test',
      getBlock: async (index, attempt) => {
        tries.push(`${index}:${attempt}`);
        return attempt === 0 && index === 1 ? stale : target.subarray(index * bs, (index + 1) * bs);
      },
    });
    expect(tries).toEqual(['0:0', '1:0', '1:1']);
    const failing = assembleFile({ target: list, expectedHash: sha(target), outPath: path.join(dir, 'b'), what: 'test', getBlock: async (_i, attempt) => (attempt === 0 ? stale : null) });
    await expect(failing).rejects.toMatchObject({ code: 'BLOCK_UNAVAILABLE' });
    await expect(fs.stat(path.join(dir, 'b'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('takes unchecked blocks on the whole hash alone: a wrong one fails the assembly', async () => {
    const dir = await tempDir();
    const target = crypto.randomBytes(2 * MIN_BLOCK_SIZE);
    const list = listOf(target, MIN_BLOCK_SIZE);
    const block = (i: number): Buffer => target.subarray(i * MIN_BLOCK_SIZE, (i + 1) * MIN_BLOCK_SIZE);
    const wrong = crypto.randomBytes(MIN_BLOCK_SIZE);
    const ok = await assembleFile({ target: list, expectedHash: sha(target), outPath: path.join(dir, 'ok'), what: 'test', checkBlock: (i) => i === 1, getBlock: async (i) => block(i) });
    expect(ok.hash).toBe(sha(target));
    const run = assembleFile({ target: list, expectedHash: sha(target), outPath: path.join(dir, 'bad'), what: 'test', checkBlock: (i) => i === 1, getBlock: async (i) => (i === 0 ? wrong : block(i)) });
    await expect(run).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    await expect(fs.stat(path.join(dir, 'bad'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('fails when the blocks match but the whole hash does not, leaving nothing behind', async () => {
    const dir = await tempDir();
    const target = crypto.randomBytes(MIN_BLOCK_SIZE + 1);
    const run = assembleFile({ target: listOf(target, MIN_BLOCK_SIZE), expectedHash: '0'.repeat(64), outPath: path.join(dir, 'x'), what: 'test', getBlock: async (i) => target.subarray(i * MIN_BLOCK_SIZE, (i + 1) * MIN_BLOCK_SIZE) });
    await expect(run).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    await expect(fs.stat(path.join(dir, 'x'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('the block list cache', () => {
  it('drops the least recently used lists past its size', () => {
    const cache = new BlockListCache(3 * BLOCK_HASH_BYTES);
    const list = (n: number): BlockList => ({ size: n * MIN_BLOCK_SIZE, blockSize: MIN_BLOCK_SIZE, hashes: Buffer.alloc(n * BLOCK_HASH_BYTES, n) });
    cache.set('a', list(1));
    cache.set('b', list(1));
    expect(cache.get('a', MIN_BLOCK_SIZE)).not.toBeNull(); // a is now the most recent
    cache.set('c', list(2)); // 4 digests: b goes
    expect(cache.get('b', MIN_BLOCK_SIZE)).toBeNull();
    expect(cache.get('a', MIN_BLOCK_SIZE)).not.toBeNull();
    expect(blockKey(cache.get('c', MIN_BLOCK_SIZE)!, 1)).toBe('02'.repeat(32));
    expect(cache.get('c', 2 * MIN_BLOCK_SIZE)).toBeNull();
  });
});

import { describe, expect, it } from 'vitest';
import { BundlePrefetcher, groupBySize, type WantedFile } from '../src/wire/bundles.js';

describe('groupBySize', () => {
  it('keeps order and caps each group by count and by bytes; an oversized item goes alone', () => {
    const sizes = [3, 3, 3, 10, 1, 1, 1, 1, 1];
    expect(groupBySize(sizes, (n) => n, 3, 7)).toEqual([[3, 3], [3], [10], [1, 1, 1], [1, 1]]);
    expect(groupBySize([], (n: number) => n, 3, 7)).toEqual([]);
    expect(groupBySize([0, 0, 0, 0], (n) => n, 2, 0)).toEqual([[0, 0], [0, 0]]);
  });
});

describe('BundlePrefetcher', () => {
  const files: WantedFile[] = Array.from({ length: 10 }, (_, i) => ({ key: 100 + i, path: `f${i}`, hash: `h${i}` }));

  it('fetches at most `ahead` bundles beyond the one consumed, and hands each content out once', async () => {
    const requested: string[][] = [];
    const prefetcher = new BundlePrefetcher(files, () => 1, { maxFiles: 2, maxBytes: 100 }, async (group) => {
      requested.push(group.map((f) => f.path));
      return new Map(group.map((f) => [f.key, Buffer.from(f.path)]));
    }, 2);
    expect(requested).toEqual([['f0', 'f1'], ['f2', 'f3']]); // started at once, before any take
    expect((await prefetcher.take(100))?.toString()).toBe('f0');
    expect(requested).toHaveLength(3); // group 0 consumed: groups up to 0 + 2 started
    expect(await prefetcher.take(100)).toBeNull(); // once
    expect((await prefetcher.take(107))?.toString()).toBe('f7');
    expect(requested).toHaveLength(5);
    expect(await prefetcher.take(999)).toBeNull(); // never wanted
  });

  it('a failed or partial bundle yields null for what it lacks, so the caller fetches it alone', async () => {
    const prefetcher = new BundlePrefetcher(files.slice(0, 4), () => 1, { maxFiles: 2, maxBytes: 100 }, async (group) => {
      if (group[0]!.path === 'f0') throw new Error('connection lost');
      return new Map([[group[1]!.key, Buffer.from('only f3')]]);
    });
    expect(await prefetcher.take(100)).toBeNull();
    expect(await prefetcher.take(102)).toBeNull();
    expect((await prefetcher.take(103))?.toString()).toBe('only f3');
  });
});

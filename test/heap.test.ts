import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fullCollector, HeapTrimmer, type HeapReading } from '../src/node/heap.js';

const MIB = 1024 * 1024;

/** A trimmer over scripted readings: `heap` is what the next read returns; a collection drops it to `live`. */
function scripted(live: number) {
  const state = { heap: { used: 20 * MIB, total: 40 * MIB } as HeapReading, collections: 0 };
  const trimmer = new HeapTrimmer(
    () => {
      state.collections++;
      state.heap = { used: live, total: live + 10 * MIB };
    },
    {},
    () => state.heap,
  );
  return { state, trimmer };
}

describe('HeapTrimmer', () => {
  it('collects once the heap grew and stopped moving, not while it is still being allocated', () => {
    const { state, trimmer } = scripted(30 * MIB);
    expect(trimmer.check()).toBe(false); // first look: the floor
    state.heap = { used: 80 * MIB, total: 100 * MIB };
    expect(trimmer.check()).toBe(false); // grew, but used moved: still working
    state.heap = { used: 120 * MIB, total: 140 * MIB };
    expect(trimmer.check()).toBe(false);
    expect(state.collections).toBe(0);
    state.heap = { used: 120.5 * MIB, total: 140 * MIB };
    expect(trimmer.check()).toBe(true); // quiet and 100 MiB above the floor
    expect(state.collections).toBe(1);
    expect(state.heap.total).toBe(40 * MIB);
  });

  it('does not collect again while quiet, nor for growth below the threshold', () => {
    const { state, trimmer } = scripted(30 * MIB);
    trimmer.check();
    state.heap = { used: 100 * MIB, total: 120 * MIB };
    trimmer.check();
    expect(trimmer.check()).toBe(true);
    for (let i = 0; i < 5; i++) expect(trimmer.check()).toBe(false); // idle: nothing new to give back
    state.heap = { used: 45 * MIB, total: 50 * MIB }; // 10 MiB of growth: under 16
    trimmer.check();
    expect(trimmer.check()).toBe(false);
    expect(state.collections).toBe(1);
  });

  it('counts growth from what V8 gave back by itself', () => {
    const { state, trimmer } = scripted(30 * MIB);
    state.heap = { used: 100 * MIB, total: 120 * MIB };
    trimmer.check();
    expect(trimmer.check()).toBe(true); // floor now 40 MiB
    state.heap = { used: 15 * MIB, total: 25 * MIB }; // V8's own memory reducer ran: floor 25
    trimmer.check();
    state.heap = { used: 40 * MIB, total: 45 * MIB };
    trimmer.check();
    expect(trimmer.check()).toBe(true); // 20 MiB above 25, though only 5 above the 40 of the collection
  });

  it('leaves a small heap alone: before any collection, the heap must hold the threshold itself', () => {
    const { state, trimmer } = scripted(10 * MIB);
    state.heap = { used: 11 * MIB, total: 15 * MIB };
    for (let i = 0; i < 5; i++) expect(trimmer.check()).toBe(false);
    expect(state.collections).toBe(0);
  });
});

describe('fullCollector', () => {
  it('gives a full collection that frees garbage, and leaves gc unexposed to other contexts', () => {
    // In a child process: vitest's worker may run with --expose-gc already.
    const heapJs = path.resolve('dist/node/heap.js');
    const script = `
      import v8 from 'node:v8';
      import vm from 'node:vm';
      const { fullCollector } = await import(${JSON.stringify(heapJs)});
      let garbage = [];
      for (let i = 0; i < 10; i++) garbage.push(Array.from({ length: 50000 }, (_, j) => ({ j, s: String(j) })));
      const live = garbage.slice(0, 2);
      garbage = null;
      const before = v8.getHeapStatistics().used_heap_size;
      const collect = fullCollector();
      collect();
      const after = v8.getHeapStatistics().used_heap_size;
      console.log(JSON.stringify({ before, after, live: live.length, gcElsewhere: vm.runInNewContext('typeof gc'), global: typeof globalThis.gc }));
    `;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH } })) as Record<string, unknown>;
    expect(out.live).toBe(2);
    expect(out.after as number).toBeLessThan((out.before as number) / 2);
    expect(out.gcElsewhere).toBe('undefined');
    expect(out.global).toBe('undefined');
    expect(typeof fullCollector()).toBe('function');
  });
});

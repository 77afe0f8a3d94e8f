/**
 * Directed runs of the simulation for bug classes it found (issue 10): small hand-written traces,
 * each replayed under many scheduler seeds so that the racing step lands in the window, with a
 * check that the window was hit at least once.
 */
import { describe, expect, it } from 'vitest';
import { runSim } from './sim/world.js';
import type { TraceEvent } from './sim/ops.js';

function family(make: (d: number) => TraceEvent[], delays: number[], seeds: number[]) {
  const runs = [];
  for (const d of delays) for (const seed of seeds) runs.push({ d, seed, result: runSim({ seed, trace: make(d), keepLog: true, quietLimitMs: 70_000 }) });
  return runs;
}

describe('simulation regressions', () => {
  it('a push that failed because its file vanished (ENOENT at upload) is not retried for ever', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
        { at: 100, node: 'c0', op: { kind: 'write', path: 'c0-own/b', mode: 0o644 } },
        { at: 100 + d, node: 'c0', op: { kind: 'rmrf', path: 'c0-own/b' } },
      ],
      [1, 2, 3, 5, 8, 13, 21],
      [1, 2, 3, 4, 5, 6],
    );
    const hit = runs.filter((r) => r.result.log.some((l) => l.includes('push c0-own/b failed')));
    expect(hit.length).toBeGreaterThan(0);
    for (const r of runs) expect(r.result.violation, `delay ${r.d} seed ${r.seed}: ${r.result.violation?.detail}`).toBeNull();
  });

  it('a local write racing a pulled delete is kept (it goes back to the server), never unlinked', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
        { at: 50, node: 'c1', op: { kind: 'write', path: 'shared/f', mode: 0o644 } },
        { at: 1000 + d, node: 'c2', op: { kind: 'race' } },
        { at: 2000, node: 'c1', op: { kind: 'delete', path: 'shared/f' } },
        // Races are armed only while ops go on: keep the op phase open past the pull.
        { at: 4000, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
      ],
      [0, 1],
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    const hit = runs.filter((r) => r.result.log.some((l) => l.includes('racing write to shared/f at pull-delete')));
    expect(hit.length).toBeGreaterThan(0);
    for (const r of runs) expect(r.result.violation, `delay ${r.d} seed ${r.seed}: ${r.result.violation?.detail}`).toBeNull();
  });

  it('a local write racing a pulled replace of the same path is kept, never overwritten (seed 3)', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
        { at: 50, node: 'c1', op: { kind: 'write', path: 'shared/f', mode: 0o644 } },
        { at: 1000 + d, node: 'c2', op: { kind: 'race' } },
        { at: 2000, node: 'c1', op: { kind: 'write', path: 'shared/f', mode: 0o644 } },
        { at: 4000, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
      ],
      [0, 1],
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    const hit = runs.filter((r) => r.result.log.some((l) => l.includes('racing write to shared/f at pull-replace')));
    expect(hit.length).toBeGreaterThan(0);
    for (const r of runs) expect(r.result.violation, `delay ${r.d} seed ${r.seed}: ${r.result.violation?.detail}`).toBeNull();
  });

  // Classes found by the seed runs of test/sim.test.ts: each shrunk trace, replayed under its
  // own seed (where it failed) and a few others.
  const replay = (trace: TraceEvent[], seeds: number[]) => seeds.map((seed) => ({ seed, result: runSim({ seed, trace, keepLog: true, quietLimitMs: 70_000 }) }));
  const expectClean = (runs: ReturnType<typeof replay>): void => {
    for (const r of runs) expect(r.result.violation, `seed ${r.seed}: ${r.result.violation?.detail}`).toBeNull();
  };

  it('a link put over a directory that gained a child on the server is stale, then kept as a conflict copy (seed 42)', () => {
    const runs = replay(
      [
        { at: 27, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
        { at: 52, node: 'c1', op: { kind: 'mkdir', path: 'c1-own' } },
        { at: 1012, node: 'c1', op: { kind: 'mkdir', path: 'shared/x.txt' } },
        { at: 1788, node: 'c2', op: { kind: 'retype', path: 'shared/x.txt', to: 'symlink' } },
        { at: 1809, node: 'server', op: { kind: 'write', path: 'shared/x.txt/c', mode: 0o644 } },
      ],
      [42, 1, 2, 3],
    );
    expect(runs.some((r) => r.result.log.some((l) => l.includes('changed on the server meanwhile')))).toBe(true);
    expectClean(runs);
  });

  it('a new entry under a directory renamed while the server was down reaches the server (seed 24)', () => {
    expectClean(
      replay(
        [
          { at: 75, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
          { at: 851, node: 'c0', op: { kind: 'mkdir', path: 'shared/b' } },
          { at: 968, node: 'server', op: { kind: 'kill', down: 2893 } },
          { at: 1843, node: 'c2', op: { kind: 'rename', from: 'shared/b', to: 'shared/B' } },
          { at: 4723, node: 'c1', op: { kind: 'symlink', path: 'shared/b/c', target: 'x.txt' } },
        ],
        [24, 1, 2, 3],
      ),
    );
  });

  it('a chmod through one hard-link name on the server reaches the other name everywhere (seed 140)', () => {
    expectClean(
      replay(
        [
          { at: 5, node: 'c0', op: { kind: 'mkdir', path: 'shared' } },
          { at: 175, node: 'c2', op: { kind: 'write', path: 'shared/n', mode: 0o644 } },
          { at: 367, node: 'server', op: { kind: 'link', from: 'shared/n', to: 'shared/x.txt' } },
          { at: 613, node: 'c0', op: { kind: 'chmod', path: 'shared/n', mode: 0o600 } },
        ],
        [140, 1, 2, 3],
      ),
    );
  });

  it('an edit through a hard-link name that then leaves the inode (made a link, or deleted) reaches the other name (seed 1223)', () => {
    const before = (leave: TraceEvent['op']): TraceEvent[] => [
      { at: 1, node: 'c2', op: { kind: 'mkdir', path: 'c2-own' } },
      { at: 2684, node: 'c2', op: { kind: 'write', path: 'c2-own/X.txt', mode: 0o644 } },
      { at: 2733, node: 'c2', op: { kind: 'link', from: 'c2-own/X.txt', to: 'c2-own/x.txt' } },
      { at: 4447, node: 'server', op: { kind: 'kill', down: 2951 } },
      { at: 4529, node: 'c2', op: { kind: 'rename', from: 'c2-own/x.txt', to: 'c2-own/n' } },
      { at: 5113, node: 'c2', op: { kind: 'write', path: 'c2-own/n', mode: 0o644 } },
      { at: 5146, node: 'c2', op: leave },
    ];
    expectClean(replay(before({ kind: 'retype', path: 'c2-own/n', to: 'symlink' }), [1223, 1, 2, 3]));
    expectClean(replay(before({ kind: 'delete', path: 'c2-own/n' }), [1223, 1, 2, 3]));
  });

  it('an edit on the hub through one hard-link name is recorded for the other names too (seed 5491)', () => {
    expectClean(
      replay(
        [
          { at: 1, node: 'c2', op: { kind: 'mkdir', path: 'shared' } },
          { at: 100, node: 'c2', op: { kind: 'write', path: 'shared/a', mode: 0o644 } },
          { at: 1300, node: 'server', op: { kind: 'link', from: 'shared/a', to: 'shared/x.txt' } },
          { at: 3100, node: 'server', op: { kind: 'append', path: 'shared/a' } },
          { at: 3200, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
        ],
        [5491, 1, 2, 3],
      ),
    );
  });

  it('a failed pull of a directory rename, retried after the old name was made again here and pushed, leaves the new directory at its name (seed 626)', () => {
    expectClean(
      replay(
        [
          { at: 9, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
          { at: 444, node: 'server', op: { kind: 'write', path: 'shared/c', mode: 0o644 } },
          { at: 523, node: 'c2', op: { kind: 'retype', path: 'shared/c', to: 'dir' } },
          { at: 547, node: 'c2', op: { kind: 'write', path: 'shared/A', mode: 0o644 } },
          { at: 1336, node: 'c1', op: { kind: 'rename', from: 'shared/A', to: 'shared/c/A' } },
          { at: 1364, node: 'c2', op: { kind: 'write', path: 'c2-own/n', mode: 0o644 } },
          { at: 1374, node: 'c2', op: { kind: 'link', from: 'shared/a', to: 'shared/a' } },
          { at: 1385, node: 'c2', op: { kind: 'mkdir', path: 'shared/n' } },
          { at: 1393, node: 'c2', op: { kind: 'rename', from: 'shared/c', to: 'shared/c' } },
          { at: 1660, node: 'c0', op: { kind: 'rename', from: 'shared/c/A', to: 'shared/c/a' } },
          { at: 1663, node: 'c0', op: { kind: 'rename', from: 'shared/n', to: 'shared/c/n' } },
          { at: 1711, node: 'c2', op: { kind: 'rename', from: 'shared/c', to: 'shared/n/c' } },
          { at: 1725, node: 'c2', op: { kind: 'link', from: 'shared/n/c/A', to: 'shared/n/c/c' } },
          { at: 1793, node: 'c1', op: { kind: 'retype', path: 'shared/c', to: 'file' } },
          { at: 1814, node: 'c1', op: { kind: 'mkdir', path: 'shared/n' } },
        ],
        [626, 1, 2, 3],
      ),
    );
  });

  it('a file renamed over the empty directory the client saw, and that directory renamed away, both reach the server (seed 3681)', () => {
    expectClean(
      replay(
        [
          { at: 627, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
          { at: 1195, node: 'server', op: { kind: 'write', path: 'shared/X.txt', mode: 0o644 } },
          { at: 1348, node: 'c2', op: { kind: 'mkdir', path: 'shared/x.txt' } },
          { at: 2370, node: 'c0', op: { kind: 'rename', from: 'shared/x.txt', to: 'shared/X.TXT' } },
          { at: 2374, node: 'c0', op: { kind: 'rename', from: 'shared/X.txt', to: 'shared/x.txt' } },
        ],
        [3681, 1, 2, 3],
      ),
    );
    // A directory renamed over the file the client saw.
    expectClean(
      replay(
        [
          { at: 627, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
          { at: 1195, node: 'server', op: { kind: 'write', path: 'shared/f', mode: 0o644 } },
          { at: 1348, node: 'c2', op: { kind: 'mkdir', path: 'shared/d' } },
          { at: 2370, node: 'c0', op: { kind: 'rename', from: 'shared/f', to: 'shared/g' } },
          { at: 2374, node: 'c0', op: { kind: 'rename', from: 'shared/d', to: 'shared/f' } },
        ],
        [3681, 1, 2, 3],
      ),
    );
  });

  it('a rename pushed over a name the hub holds as a hard link of the source removes the source there too (seeds 9375, 6861)', () => {
    expectClean(
      replay(
        [
          { at: 26, node: 'c2', op: { kind: 'mkdir', path: 'shared' } },
          { at: 1051, node: 'c1', op: { kind: 'write', path: 'shared/a', mode: 0o644 } },
          { at: 1136, node: 'server', op: { kind: 'link', from: 'shared/a', to: 'shared/n' } },
          { at: 1573, node: 'c0', op: { kind: 'rename', from: 'shared/a', to: 'shared/n' } },
        ],
        [9375, 1, 2, 3],
      ),
    );
  });

  it('a file the hub writes while a pushed rename moves it is recorded as the hub\'s edit, never as the moved version (seeds 8315, 7257)', () => {
    expectClean(
      replay(
        [
          { at: 1, node: 'server', op: { kind: 'mkdir', path: 'shared' } },
          { at: 1, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
          { at: 4, node: 'c1', op: { kind: 'mkdir', path: 'c1-own' } },
          { at: 23, node: 'server', op: { kind: 'mkdir', path: 'server-own' } },
          { at: 27, node: 'c2', op: { kind: 'write', path: 'shared/b', mode: 0o644 } },
          { at: 64, node: 'c2', op: { kind: 'mkdir', path: 'c2-own' } },
          { at: 76, node: 'c2', op: { kind: 'chmod', path: 'shared/b', mode: 0o755 } },
          { at: 92, node: 'c2', op: { kind: 'write', path: 'c2-own/c', mode: 0o644 } },
          { at: 568, node: 'c0', op: { kind: 'write', path: 'c0-own/A', mode: 0o644 } },
          { at: 584, node: 'c0', op: { kind: 'delete', path: 'shared/b' } },
          { at: 618, node: 'c0', op: { kind: 'append', path: 'c0-own/A' } },
          { at: 648, node: 'c0', op: { kind: 'write', path: 'shared/b', mode: 0o644 } },
          { at: 675, node: 'c0', op: { kind: 'rename', from: 'c0-own/A', to: 'c0-own/n' } },
          { at: 722, node: 'c0', op: { kind: 'kill', down: 101 } },
          { at: 831, node: 'c2', op: { kind: 'mkdir', path: 'c2-own/x.txt' } },
          { at: 839, node: 'c2', op: { kind: 'write', path: 'shared/n', mode: 0o644 } },
          { at: 1372, node: 'c1', op: { kind: 'rename', from: 'shared/b', to: 'shared/a' } },
          { at: 1399, node: 'server', op: { kind: 'append', path: 'shared/a' } },
        ],
        [8315, 1, 2, 3],
      ),
    );
  });

  it('a file the hub writes into a directory just before a pushed rename moves it is recorded and moves with it (seed 8144)', () => {
    expectClean(
      replay(
        [
          { at: 5, node: 'server', op: { kind: 'mkdir', path: 'server-own' } },
          { at: 18, node: 'c1', op: { kind: 'mkdir', path: 'c1-own' } },
          { at: 23, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
          { at: 33, node: 'c1', op: { kind: 'write', path: 'c1-own/A', mode: 0o644 } },
          { at: 40, node: 'c2', op: { kind: 'mkdir', path: 'shared' } },
          { at: 287, node: 'c1', op: { kind: 'cut' } },
          { at: 410, node: 'server', op: { kind: 'race' } },
          { at: 495, node: 'c2', op: { kind: 'mkdir', path: 'shared/c' } },
          { at: 510, node: 'c2', op: { kind: 'mkdir', path: 'c2-own' } },
          { at: 550, node: 'c2', op: { kind: 'write', path: 'c2-own/x.txt', mode: 0o644 } },
          { at: 1008, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
          { at: 1022, node: 'c2', op: { kind: 'mkdir', path: 'c2-own/c' } },
          { at: 1024, node: 'c0', op: { kind: 'write', path: 'c0-own/n', mode: 0o644 } },
          { at: 1049, node: 'c0', op: { kind: 'rename', from: 'shared/c', to: 'shared/C' } },
          { at: 1060, node: 'c2', op: { kind: 'delete', path: 'c2-own/x.txt' } },
          { at: 1077, node: 'c0', op: { kind: 'mkdir', path: 'shared/n/c' } },
          { at: 1164, node: 'server', op: { kind: 'write', path: 'shared/c/n', mode: 0o644 } },
        ],
        [8144, 1, 2, 3],
      ),
    );
  });

  it('an edit pushed again after a kill lost the answer to its first push is not a conflict with itself (seed 15)', () => {
    expectClean(
      replay(
        [
          { at: 3, node: 'c2', op: { kind: 'mkdir', path: 'c2-own' } },
          { at: 10, node: 'c0', op: { kind: 'mkdir', path: 'shared' } },
          { at: 34, node: 'server', op: { kind: 'write', path: 'shared/c', mode: 0o644 } },
          { at: 35, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
          { at: 61, node: 'c0', op: { kind: 'write', path: 'shared/A', mode: 0o644 } },
          { at: 69, node: 'c0', op: { kind: 'write', path: 'c0-own/b', mode: 0o644 } },
          { at: 81, node: 'c0', op: { kind: 'chmod', path: 'c0-own/b', mode: 0o644 } },
          { at: 485, node: 'c2', op: { kind: 'chmod', path: 'shared/c', mode: 0o755 } },
          { at: 508, node: 'c2', op: { kind: 'write', path: 'c2-own/x.txt', mode: 0o644 } },
          { at: 516, node: 'c2', op: { kind: 'append', path: 'shared/c' } },
          { at: 607, node: 'c0', op: { kind: 'append', path: 'c0-own/b' } },
          { at: 670, node: 'c0', op: { kind: 'kill', down: 2415 } },
          { at: 2762, node: 'c0', op: { kind: 'write', path: 'c0-own/b', mode: 0o644 } },
        ],
        [15, 1, 2, 3],
      ),
    );
  });

  it('a pull kept back for a local edit that then vanished is pulled after all (seed 143)', () => {
    expectClean(
      replay(
        [
          { at: 18, node: 'c0', op: { kind: 'mkdir', path: 'shared' } },
          { at: 398, node: 'c1', op: { kind: 'write', path: 'shared/X.txt', mode: 0o644 } },
          { at: 484, node: 'c1', op: { kind: 'append', path: 'shared/X.txt' } },
          { at: 916, node: 'c2', op: { kind: 'kill', down: 587 } },
          { at: 1284, node: 'c1', op: { kind: 'mkdir', path: 'shared/x.txt' } },
          { at: 1521, node: 'c2', op: { kind: 'rename', from: 'shared/X.txt', to: 'shared/x.txt' } },
          { at: 1558, node: 'c2', op: { kind: 'rmrf', path: 'shared/x.txt' } },
        ],
        [143, 1, 2, 3],
      ),
    );
  });

  it('a directory replaced by a link elsewhere while it gains a child here: the child is kept, nothing stays failed (seeds 272, 341)', () => {
    expectClean(
      replay(
        [
          { at: 2, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
          { at: 18, node: 'c1', op: { kind: 'write', path: 'shared/c', mode: 0o644 } },
          { at: 1161, node: 'c1', op: { kind: 'append', path: 'shared/c' } },
          { at: 1163, node: 'server', op: { kind: 'chmod', path: 'shared/c', mode: 0o600 } },
          { at: 3286, node: 'c2', op: { kind: 'retype', path: 'shared/c.sync-conflict-20261123-140001-c1', to: 'dir' } },
          { at: 4510, node: 'c0', op: { kind: 'kill', down: 1876 } },
          { at: 4694, node: 'c0', op: { kind: 'mkdir', path: 'shared/c.sync-conflict-20261123-140001-c1/A' } },
          { at: 4889, node: 'c1', op: { kind: 'retype', path: 'shared/c.sync-conflict-20261123-140001-c1', to: 'symlink' } },
        ],
        [341, 1, 2, 3],
      ),
    );
    expectClean(
      replay(
        [
          { at: 40, node: 'server', op: { kind: 'mkdir', path: 'shared' } },
          { at: 399, node: 'c1', op: { kind: 'write', path: 'shared/x.txt', mode: 0o644 } },
          { at: 1037, node: 'c2', op: { kind: 'retype', path: 'shared/x.txt', to: 'dir' } },
          { at: 1098, node: 'c0', op: { kind: 'write', path: 'shared/x.txt/X.txt', mode: 0o644 } },
          { at: 2409, node: 'server', op: { kind: 'retype', path: 'shared/x.txt', to: 'symlink' } },
          { at: 2587, node: 'c2', op: { kind: 'mkdir', path: 'shared/x.txt/X.txt' } },
        ],
        [272, 1, 2, 3],
      ),
    );
  });
  it('a directory rename pushed by a client that missed an edit of a child brings the edit back, never keeps the old copy as synced (seed 870)', () => {
    const runs = replay(
      [
        { at: 29, node: 'c2', op: { kind: 'mkdir', path: 'shared' } },
        { at: 61, node: 'c2', op: { kind: 'write', path: 'shared/x.txt', mode: 0o644 } },
        { at: 87, node: 'c1', op: { kind: 'mkdir', path: 'shared/n' } },
        { at: 95, node: 'c1', op: { kind: 'cut' } },
        { at: 102, node: 'c0', op: { kind: 'write', path: 'shared/c', mode: 0o644 } },
        { at: 120, node: 'c1', op: { kind: 'rename', from: 'shared/n', to: 'shared/x.txt' } },
        { at: 168, node: 'c0', op: { kind: 'retype', path: 'shared/c', to: 'dir' } },
        { at: 192, node: 'c0', op: { kind: 'write', path: 'shared/c/A', mode: 0o644 } },
        { at: 1157, node: 'c2', op: { kind: 'kill', down: 324 } },
        { at: 1358, node: 'c2', op: { kind: 'rename', from: 'shared/c', to: 'shared/x.sync-conflict-20261123-140000-c1.txt/c' } },
        { at: 1482, node: 'c1', op: { kind: 'write', path: 'shared/c/A', mode: 0o644 } },
      ],
      [870, 1, 2, 3],
    );
    // The window: c2's rename was committed after c1's edit of the child that c2 never pulled.
    expect(runs[0]!.result.log.some((l) => l.includes('c2 pushed rename shared/c ->'))).toBe(true);
    expectClean(runs);
  });

  it('a file pushed over its own directory that gained a child it never heard of is kept as a conflict copy, not refused for ever (seed 423)', () => {
    const runs = replay(
      [
        { at: 5, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
        { at: 44, node: 'c1', op: { kind: 'mkdir', path: 'c1-own' } },
        { at: 59, node: 'c1', op: { kind: 'write', path: 'shared/X.txt', mode: 0o644 } },
        { at: 434, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
        { at: 473, node: 'c0', op: { kind: 'mkdir', path: 'shared/n' } },
        { at: 512, node: 'c0', op: { kind: 'write', path: 'c0-own/a', mode: 0o644 } },
        { at: 517, node: 'c0', op: { kind: 'rename', from: 'shared/X.txt', to: 'shared/n/X.txt' } },
        { at: 526, node: 'c0', op: { kind: 'append', path: 'shared/n/X.txt' } },
        { at: 621, node: 'c0', op: { kind: 'cut' } },
        { at: 788, node: 'c0', op: { kind: 'retype', path: 'shared/n', to: 'file' } },
      ],
      [423, 1, 2, 3],
    );
    // The window: c0 puts the file over its directory while the server holds a child under it.
    // Since own versions outlive the cut, c0 knows that child (its own rename, whose answer the
    // cut lost) and deletes it first; the conflict copy is what is left when it does not.
    expect(runs[0]!.result.log.some((l) => l.includes('c0 conflict on shared/n:') || l.includes('c0 own version of shared/n/X.txt'))).toBe(true);
    expectClean(runs);
  });

  it('a local file written where a pulled link is about to land is kept, never replaced by the link (seed 7731)', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
        { at: 2000, node: 'c1', op: { kind: 'symlink', path: 'shared/L', target: 'nowhere' } },
        { at: 2000 + d, node: 'c2', op: { kind: 'write', path: 'shared/L', mode: 0o644 } },
        { at: 6000, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
      ],
      Array.from({ length: 40 }, (_, i) => 10 + i),
      [1, 2, 3],
    );
    // The window: c2 had decided to place the link (on an empty path) when its own write landed.
    const hit = runs.filter((r) => r.result.log.some((l) => l.includes('c2 pull shared/L failed: changed locally')));
    expect(hit.length).toBeGreaterThan(0);
    for (const r of runs) expect(r.result.violation, `delay ${r.d} seed ${r.seed}: ${r.result.violation?.detail}`).toBeNull();
  });

  // Own-area: a push whose answer was lost (the client killed, the link cut, the server killed
  // while it was in flight) committed a version the client never based itself on; the client's
  // disk moved on (a rename, a delete, an edit), and the version must not come back over it.
  /** Every run of a family is clean, and at least one hit the window (`hit`). */
  const expectFamilyClean = (runs: ReturnType<typeof family>, hit: (r: ReturnType<typeof family>[number]) => boolean): void => {
    expect(runs.filter(hit).length).toBeGreaterThan(0);
    for (const r of runs) expect(r.result.violation, `delay ${r.d} seed ${r.seed}: ${r.result.violation?.detail}`).toBeNull();
  };
  const adopted = (r: { result: { log: string[] } }, node: string, p: string, origin = node): boolean =>
    r.result.log.some((l) => l.includes(`${node} own version of ${p} (seq `) && l.includes(`from ${origin}) adopted`));

  it('a client killed with a push in flight, then renaming what it pushed, does not get it back (seeds 142, 1614, 6065)', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
        { at: 500, node: 'c0', op: { kind: 'write', path: 'c0-own/n', mode: 0o644 } },
        { at: 500 + d, node: 'c0', op: { kind: 'kill', down: 800 } },
        { at: 700, node: 'c0', op: { kind: 'rename', from: 'c0-own/n', to: 'c0-own/N' } },
      ],
      Array.from({ length: 30 }, (_, i) => 10 + i),
      [1, 2, 3],
    );
    expectFamilyClean(runs, (r) => adopted(r, 'c0', 'c0-own/n'));
    expectClean(
      replay(
        [
          { at: 6, node: 'c0', op: { kind: 'mkdir', path: 'shared' } },
          { at: 8, node: 'server', op: { kind: 'mkdir', path: 'server-own' } },
          { at: 18, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
          { at: 203, node: 'c2', op: { kind: 'write', path: 'shared/b', mode: 0o644 } },
          { at: 451, node: 'c2', op: { kind: 'kill', down: 1601 } },
          { at: 913, node: 'c0', op: { kind: 'append', path: 'shared/b' } },
          { at: 924, node: 'c0', op: { kind: 'write', path: 'c0-own/a', mode: 0o644 } },
          { at: 935, node: 'c0', op: { kind: 'mkdir', path: 'c0-own/c' } },
          { at: 979, node: 'c0', op: { kind: 'kill', down: 2068 } },
          { at: 1922, node: 'c0', op: { kind: 'rename', from: 'c0-own/c', to: 'c0-own/C' } },
        ],
        [142, 1, 2, 3],
      ),
    );
  });

  it('a client whose link is cut with a push in flight, then deleting what it pushed, does not get it back (seeds 6670, 8965, 9163)', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c2', op: { kind: 'mkdir', path: 'c2-own' } },
        { at: 500, node: 'c2', op: { kind: 'write', path: 'c2-own/n', mode: 0o644 } },
        { at: 500 + d, node: 'c2', op: { kind: 'cut' } },
        { at: 500 + d + 25, node: 'c2', op: { kind: 'rmrf', path: 'c2-own/n' } },
      ],
      Array.from({ length: 30 }, (_, i) => 10 + i),
      [1, 2, 3],
    );
    expectFamilyClean(runs, (r) => adopted(r, 'c2', 'c2-own/n'));
  });

  it('a server killed after placing a pushed file but before its log was durable: the pusher\'s next edit is no conflict with itself (seed 659)', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c1', op: { kind: 'mkdir', path: 'c1-own' } },
        { at: 300, node: 'c1', op: { kind: 'write', path: 'c1-own/X.txt', mode: 0o644 } },
        { at: 300 + d, node: 'server', op: { kind: 'kill', down: 500 } },
        { at: 300 + d + 15, node: 'c1', op: { kind: 'append', path: 'c1-own/X.txt' } },
      ],
      Array.from({ length: 30 }, (_, i) => 5 + i),
      [1, 2, 3, 4, 5],
    );
    // The restarted server recorded the file it found as its own edit: only its content says it is c1's.
    expectFamilyClean(runs, (r) => adopted(r, 'c1', 'c1-own/X.txt', 'server'));
  });

  it('a local write racing a pulled link over the same file, or over a link there, is kept, never replaced (seed 856)', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
        { at: 50, node: 'c1', op: { kind: 'write', path: 'shared/f', mode: 0o644 } },
        { at: 60, node: 'c1', op: { kind: 'symlink', path: 'shared/l', target: 'nowhere' } },
        { at: 1000 + d, node: 'c2', op: { kind: 'race' } },
        { at: 1000 + d, node: 'c0', op: { kind: 'race' } },
        { at: 2000, node: 'c1', op: { kind: 'retype', path: 'shared/f', to: 'symlink' } },
        { at: 2000, node: 'c1', op: { kind: 'delete', path: 'shared/l' } },
        { at: 2001, node: 'c1', op: { kind: 'symlink', path: 'shared/l', target: '../a' } },
        { at: 4000, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
      ],
      [0, 1],
      [1, 2, 3, 4, 5, 6, 7, 8],
    );
    // The windows: between the pull's decision and the link's placement, over a file and over a link.
    for (const at of ['shared/f', 'shared/l']) {
      expect(runs.filter((r) => r.result.log.some((l) => l.includes(`racing write to ${at} at pull-replace`))).length, at).toBeGreaterThan(0);
    }
    for (const r of runs) expect(r.result.violation, `delay ${r.d} seed ${r.seed}: ${r.result.violation?.detail}`).toBeNull();
  });

  it('a local file written where a pulled directory is about to land is kept, never unlinked (seeds 6886, 11415, 15064, 19045)', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
        { at: 50, node: 'c1', op: { kind: 'write', path: 'shared/f', mode: 0o644 } },
        { at: 1000 + d, node: 'c2', op: { kind: 'race' } },
        { at: 2000, node: 'c1', op: { kind: 'mkdir', path: 'shared/D' } },
        { at: 2000, node: 'c1', op: { kind: 'retype', path: 'shared/f', to: 'dir' } },
        { at: 2000 + d, node: 'c0', op: { kind: 'write', path: 'shared/D', mode: 0o644 } },
        { at: 6000, node: 'c2', op: { kind: 'mkdir', path: 'c2-own' } },
      ],
      Array.from({ length: 30 }, (_, i) => 10 + i),
      [1, 2],
    );
    // The windows: a file written at an empty path the pull decided to make a directory, and a
    // write racing a pulled directory that replaces a file.
    expect(runs.filter((r) => r.result.log.some((l) => l.includes('c0 pull shared/D failed: changed locally'))).length).toBeGreaterThan(0);
    expect(runs.filter((r) => r.result.log.some((l) => l.includes('racing write to shared/f at pull-replace'))).length).toBeGreaterThan(0);
    for (const r of runs) expect(r.result.violation, `delay ${r.d} seed ${r.seed}: ${r.result.violation?.detail}`).toBeNull();
  });
  it('a local file written where a pulled rename is about to land is kept, never replaced by the moved file (seeds 23730, 28359)', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
        { at: 50, node: 'c1', op: { kind: 'write', path: 'shared/f', mode: 0o644 } },
        { at: 60, node: 'c1', op: { kind: 'mkdir', path: 'shared/D' } },
        { at: 2000, node: 'c1', op: { kind: 'rename', from: 'shared/f', to: 'shared/g' } },
        { at: 2000, node: 'c1', op: { kind: 'rename', from: 'shared/D', to: 'shared/E' } },
        { at: 2000 + d, node: 'c2', op: { kind: 'write', path: 'shared/g', mode: 0o644 } },
        { at: 2000 + d, node: 'c0', op: { kind: 'write', path: 'shared/E', mode: 0o644 } },
        { at: 6000, node: 'c2', op: { kind: 'mkdir', path: 'c2-own' } },
      ],
      Array.from({ length: 40 }, (_, i) => 10 + i),
      [1, 2, 3],
    );
    // The windows: the pull had decided to move the file (or directory) to an empty path when the write landed there.
    expect(runs.filter((r) => r.result.log.some((l) => l.includes('c2 pull shared/g failed: changed locally'))).length).toBeGreaterThan(0);
    expect(runs.filter((r) => r.result.log.some((l) => l.includes('c0 pull shared/E failed: changed locally'))).length).toBeGreaterThan(0);
    for (const r of runs) expect(r.result.violation, `delay ${r.d} seed ${r.seed}: ${r.result.violation?.detail}`).toBeNull();
  });

  it('a local edit a pull had moved aside when the client was killed is put back at start-up, never cleaned away with the temp dir (seeds 24252, 36897)', () => {
    const runs = family(
      (d) => [
        { at: 1, node: 'c1', op: { kind: 'mkdir', path: 'shared' } },
        { at: 50, node: 'c1', op: { kind: 'write', path: 'shared/f', mode: 0o644 } },
        { at: 60, node: 'c1', op: { kind: 'write', path: 'shared/g', mode: 0o644 } },
        { at: 1000, node: 'c2', op: { kind: 'race' } },
        { at: 1000, node: 'c2', op: { kind: 'race' } },
        { at: 2000, node: 'c1', op: { kind: 'delete', path: 'shared/f' } },
        { at: 2000, node: 'c1', op: { kind: 'write', path: 'shared/g', mode: 0o644 } },
        { at: 2000 + d, node: 'c2', op: { kind: 'kill', down: 300 } },
        { at: 4000, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
      ],
      Array.from({ length: 34 }, (_, i) => 26 + i),
      [1, 2, 7, 12],
    );
    // The windows: killed between the move aside of a racing write and its compare, in a pulled delete and a pulled replace.
    for (const at of ['shared/f', 'shared/g']) {
      expect(runs.filter((r) => r.result.log.some((l) => l.includes(`c2 put back what a pull had moved aside: ${at}`))).length, at).toBeGreaterThan(0);
    }
    for (const r of runs) expect(r.result.violation, `delay ${r.d} seed ${r.seed}: ${r.result.violation?.detail}`).toBeNull();
  });

  it('a file written, or a file renamed, over a directory its writer emptied reaches the server: the deletes under the directory are committed first, no conflict copy of its own directory (seed 3122)', () => {
    const emptied = (last: TraceEvent): TraceEvent[] => [
      { at: 20, node: 'c0', op: { kind: 'mkdir', path: 'c0-own' } },
      { at: 60, node: 'c0', op: { kind: 'write', path: 'c0-own/f', mode: 0o644 } },
      { at: 99, node: 'c0', op: { kind: 'mkdir', path: 'c0-own/A' } },
      { at: 150, node: 'c0', op: { kind: 'write', path: 'c0-own/A/b', mode: 0o644 } },
      { at: 4362, node: 'c0', op: { kind: 'rmrf', path: 'c0-own/A' } },
      last,
    ];
    const written = replay(emptied({ at: 4364, node: 'c0', op: { kind: 'write', path: 'c0-own/A', mode: 0o644 } }), [3122, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const renamed = replay(emptied({ at: 4364, node: 'c0', op: { kind: 'rename', from: 'c0-own/f', to: 'c0-own/A' } }), [63, 68, 84, 1, 2, 3]);
    const deletedFirst = (r: (typeof written)[number], replaced: string): boolean => {
      const del = r.result.log.findIndex((l) => l.includes('c0 pushed delete c0-own/A/b'));
      return del >= 0 && r.result.log.slice(del).some((l) => l.includes(replaced));
    };
    expect(written.filter((r) => deletedFirst(r, 'c0 pushed c0-own/A seq')).length).toBeGreaterThan(0);
    expect(renamed.filter((r) => deletedFirst(r, 'c0 pushed rename c0-own/f -> c0-own/A')).length).toBeGreaterThan(0);
    expectClean(written);
    expectClean(renamed);
  });

  it('a directory its writer turned into a link while the server was down: the link reaches the server, no conflict copy of its own directory (seed 3956)', () => {
    const runs = replay(
      [
        { at: 73, node: 'c1', op: { kind: 'mkdir', path: 'c1-own' } },
        { at: 772, node: 'c1', op: { kind: 'write', path: 'c1-own/X.txt', mode: 0o644 } },
        { at: 808, node: 'c1', op: { kind: 'mkdir', path: 'c1-own/b' } },
        { at: 830, node: 'c1', op: { kind: 'link', from: 'c1-own/X.txt', to: 'c1-own/b/x.txt' } },
        { at: 1355, node: 'c1', op: { kind: 'rename', from: 'c1-own/b', to: 'c1-own/B' } },
        { at: 1404, node: 'c1', op: { kind: 'append', path: 'c1-own/B/x.txt' } },
        { at: 1426, node: 'server', op: { kind: 'kill', down: 607 } },
        { at: 1765, node: 'c1', op: { kind: 'retype', path: 'c1-own/B', to: 'symlink' } },
      ],
      [3956, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    // The window: the push of the child failed with the server down, so only the directory's
    // path was dirty when the link replaced it.
    expect(runs.filter((r) => r.result.log.some((l) => l.includes('c1 push c1-own/B/x.txt failed'))).length).toBeGreaterThan(0);
    expectClean(runs);
  });
});

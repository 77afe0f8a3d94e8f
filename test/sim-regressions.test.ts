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
});

/**
 * The whole-protocol simulation over many seeds (issue 10): `npm run test:sim` runs 2,000 seeds
 * (not yet part of `npm test`: see vitest.config.ts); SYSTEMSYNC_SIM_SEEDS=N runs N (from SYSTEMSYNC_SIM_FIRST, default 1), SYSTEMSYNC_SIM_SEED=S
 * replays one seed and prints its log, SYSTEMSYNC_SIM_KEEP_GOING=1 tallies every failure by
 * class instead of stopping at the first. A failure prints the seed and the shrunk trace.
 */
import { describe, expect, it } from 'vitest';
import { runSim, type SimResult } from './sim/world.js';
import { formatFailure, shrinkFailure } from './sim/report.js';

const DEFAULT_SEEDS = 2_000;

function seedsToRun(): number[] {
  const one = process.env.SYSTEMSYNC_SIM_SEED;
  if (one !== undefined && one !== '') return [Number(one) >>> 0];
  const count = Number(process.env.SYSTEMSYNC_SIM_SEEDS ?? DEFAULT_SEEDS);
  const first = Number(process.env.SYSTEMSYNC_SIM_FIRST ?? 1);
  if (!Number.isInteger(count) || count < 1) throw new Error(`SYSTEMSYNC_SIM_SEEDS must be a positive integer, got ${process.env.SYSTEMSYNC_SIM_SEEDS}`);
  if (!Number.isInteger(first) || first < 0) throw new Error(`SYSTEMSYNC_SIM_FIRST must be a whole number, got ${process.env.SYSTEMSYNC_SIM_FIRST}`);
  return Array.from({ length: count }, (_, i) => first + i);
}

describe('whole-protocol simulation', () => {
  const seeds = seedsToRun();
  const keepGoing = process.env.SYSTEMSYNC_SIM_KEEP_GOING === '1';
  const replay = seeds.length === 1;

  it(`converges and loses nothing on ${seeds.length} seed(s) (${seeds[0]}..${seeds[seeds.length - 1]})`, () => {
    const failures: SimResult[] = [];
    let steps = 0;
    for (const seed of seeds) {
      const result = runSim({ seed, keepLog: replay });
      steps += result.steps;
      if (result.violation === null) continue;
      failures.push(result);
      if (!keepGoing) break;
    }
    if (replay && failures.length === 0) console.log(`seed ${seeds[0]} passes`);
    if (keepGoing) {
      const byKind = new Map<string, number[]>();
      for (const f of failures) byKind.set(f.violation!.kind, [...(byKind.get(f.violation!.kind) ?? []), f.seed]);
      console.log(`${seeds.length} seeds, ${failures.length} failed, ${steps} steps`);
      for (const [kind, list] of byKind) console.log(`  ${kind}: ${list.length} (${list.slice(0, 20).join(' ')})`);
      for (const f of failures.slice(0, 40)) console.log(`  seed ${f.seed} ${f.violation!.kind}: ${f.violation!.detail.split('\n')[0]}`);
    }
    if (failures.length > 0) {
      const first = failures[0]!;
      const report = formatFailure(shrinkFailure(first));
      console.log(report);
      expect.fail(report);
    }
    expect(steps).toBeGreaterThan(0);
  });
});

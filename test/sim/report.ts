/**
 * Running seeds and turning a failure into a report a person can read: the seed, the
 * violation, the shortest trace that still fails (shrunk), how to replay it, and the shells'
 * log of the shrunk run.
 */
import { runSim, type SimOptions, type SimResult } from './world.js';
import { shrinkList } from './shrink.js';
import { showEvent, type TraceEvent } from './ops.js';

export interface Failure {
  seed: number;
  original: SimResult;
  shrunk: TraceEvent[];
  shrunkResult: SimResult;
  shrinkRuns: number;
  shrinkComplete: boolean;
}

export function shrinkFailure(result: SimResult, options: Omit<SimOptions, 'seed' | 'trace'> = {}, budget = { maxRuns: 400, maxMs: 60_000 }): Failure {
  const kind = result.violation!.kind;
  const fails = (trace: TraceEvent[]): boolean => runSim({ ...options, seed: result.seed, trace }).violation?.kind === kind;
  const shrunk = shrinkList(result.trace, fails, budget);
  const shrunkResult = runSim({ ...options, seed: result.seed, trace: shrunk.items, keepLog: true });
  return { seed: result.seed, original: result, shrunk: shrunk.items, shrunkResult, shrinkRuns: shrunk.runs, shrinkComplete: shrunk.complete };
}

export function formatFailure(f: Failure): string {
  const v = f.shrunkResult.violation ?? f.original.violation!;
  return [
    `simulation seed ${f.seed} failed: ${v.kind}`,
    v.detail,
    '',
    `shortest failing trace: ${f.shrunk.length} of ${f.original.trace.length} events` +
      ` (${f.shrinkRuns} replays${f.shrinkComplete ? ', 1-minimal' : ', shrink budget ran out'}):`,
    ...[...f.shrunk].sort((a, b) => a.at - b.at).map((e) => `  ${showEvent(e)}`),
    '',
    `replay: SYSTEMSYNC_SIM_SEED=${f.seed} npx vitest run test/sim.test.ts`,
    '',
    'log of the shrunk run (last 60 lines):',
    ...f.shrunkResult.log.slice(-60).map((l) => `  ${l}`),
  ].join('\n');
}

/**
 * Shrinking a failing run (delta debugging, as fast-check shrinks a counterexample): remove
 * chunks of the event trace, then single events, keeping any smaller trace that still fails
 * the same way when replayed with the same seed. The result is 1-minimal when the budget
 * allows: removing any one remaining event makes the failure go away.
 */

export interface ShrinkBudget {
  /** Most replays to try. */
  maxRuns: number;
  /** Stop after this many wall-clock ms (the best trace so far is kept). */
  maxMs: number;
  now?: () => number;
}

export interface ShrinkResult<T> {
  items: T[];
  runs: number;
  /** False when the budget ran out before the trace was 1-minimal. */
  complete: boolean;
}

export function shrinkList<T>(items: readonly T[], stillFails: (candidate: T[]) => boolean, budget: ShrinkBudget): ShrinkResult<T> {
  const now = budget.now ?? Date.now;
  const deadline = now() + budget.maxMs;
  let runs = 0;
  const tryIt = (candidate: T[]): boolean => {
    runs++;
    return stillFails(candidate);
  };
  const out = (): boolean => runs >= budget.maxRuns || now() >= deadline;
  let current = [...items];
  let n = 2;
  // ddmin over complements: drop one of n chunks at a time.
  while (current.length >= 2 && !out()) {
    const size = Math.ceil(current.length / n);
    let reduced = false;
    for (let start = 0; start < current.length && !out(); start += size) {
      const candidate = [...current.slice(0, start), ...current.slice(start + size)];
      if (candidate.length < current.length && tryIt(candidate)) {
        current = candidate;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= current.length) break;
      n = Math.min(current.length, n * 2);
    }
  }
  // Then one event at a time, until no single removal keeps the failure.
  let changed = true;
  while (changed && !out()) {
    changed = false;
    for (let i = current.length - 1; i >= 0 && !out(); i--) {
      const candidate = [...current.slice(0, i), ...current.slice(i + 1)];
      if (tryIt(candidate)) {
        current = candidate;
        changed = true;
      }
    }
  }
  return { items: current, runs, complete: !out() };
}

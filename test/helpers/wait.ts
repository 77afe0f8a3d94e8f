/**
 * Polling waits for tests. Timeouts here only catch hangs; they assert nothing about speed.
 */
import { diffTrees, snapshotTree, type TreeItem } from './tree.js';

export interface WaitOptions {
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Poll interval (default 50 ms). */
  intervalMs?: number;
  /** What is awaited, for the timeout message. */
  what?: string;
}

function show(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    const s = JSON.stringify(value);
    if (s === undefined) return String(value);
    return s.length > 2000 ? `${s.slice(0, 2000)}…` : s;
  } catch {
    return String(value);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls `fn` until it returns a truthy value, and resolves with that value. A throw counts as
 * "not yet". On timeout rejects with an error naming `what` and the last value or error.
 */
export async function waitFor<T>(fn: () => T | Promise<T>, options: WaitOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 50;
  const what = options.what ?? 'condition';
  const deadline = Date.now() + timeoutMs;
  let last: { value: unknown } | { error: unknown } = { value: undefined };
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
      last = { value };
    } catch (error) {
      last = { error };
    }
    if (Date.now() >= deadline) {
      const detail = 'error' in last ? `last error: ${show(last.error)}` : `last value: ${show(last.value)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${detail}`);
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}

/**
 * Polls `snapshotTree` of every root until all equal the first, and resolves with that snapshot.
 * On timeout rejects with the differences between the first root and each differing root.
 */
export async function waitForTreesEqual(
  roots: string[],
  options: { timeoutMs?: number; intervalMs?: number; exclude?: string[] } = {},
): Promise<Map<string, TreeItem>> {
  if (roots.length < 2) throw new Error('waitForTreesEqual: give at least two roots');
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let lastDiff: string[] = [];
  for (;;) {
    try {
      const snaps = await Promise.all(roots.map((r) => snapshotTree(r, { exclude: options.exclude })));
      const first = snaps[0] as Map<string, TreeItem>;
      lastDiff = [];
      for (let i = 1; i < snaps.length; i++) {
        const d = diffTrees(first, snaps[i] as Map<string, TreeItem>, [roots[0] as string, roots[i] as string]);
        if (d.length > 0) lastDiff.push(`${roots[0]} vs ${roots[i]}:`, ...d.map((line) => `  ${line}`));
      }
      if (lastDiff.length === 0) return first;
    } catch (err) {
      lastDiff = [`snapshot failed: ${show(err)}`];
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for trees to be equal:\n${lastDiff.join('\n')}`);
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}

/** The error `p` rejects with (with its `code`, if any); fails if `p` resolves. */
export async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

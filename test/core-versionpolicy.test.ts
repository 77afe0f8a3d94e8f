// The pruning decision of [versions] (src/core/versionpolicy.ts), driven by a fake clock.
import { describe, expect, it } from 'vitest';
import { versionsToPrune, type KeptVersion, type VersionPolicy } from '../src/core/versionpolicy.js';

const SECOND = 1000;
const HOUR = 3600 * SECOND;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 1);

const staggered: VersionPolicy = { keep: 'staggered', maxAgeDays: 30, count: 5, maxBytes: null };

/**
 * A fake clock driving a store: every `editEvery` ms a new version of `path` appears, and every
 * `pruneEvery` ms the store prunes what the policy says. Returns the versions kept at the end.
 */
function simulate(opts: { policy: VersionPolicy; days: number; editEvery: number; pruneEvery: number; size?: number; paths?: string[] }): {
  kept: KeptVersion[];
  now: number;
  maxKept: number;
} {
  let kept: KeptVersion[] = [];
  let n = 0;
  let maxKept = 0;
  const end = T0 + opts.days * DAY;
  let nextPrune = T0;
  for (let now = T0; now <= end; now += opts.editEvery) {
    for (const p of opts.paths ?? ['notes.txt']) kept.push({ id: `v${++n}`, path: p, time: now, size: opts.size ?? 10 });
    if (now >= nextPrune) {
      const gone = new Set(versionsToPrune(kept, opts.policy, now));
      kept = kept.filter((v) => !gone.has(v.id));
      nextPrune = now + opts.pruneEvery;
    }
    maxKept = Math.max(maxKept, kept.length);
  }
  const gone = new Set(versionsToPrune(kept, opts.policy, end));
  return { kept: kept.filter((v) => !gone.has(v.id)), now: end, maxKept };
}

/** How many kept versions fall into the age range [from, to). */
function countAged(kept: KeptVersion[], now: number, from: number, to: number): number {
  return kept.filter((v) => now - v.time >= from && now - v.time < to).length;
}

describe('staggered pruning over 60 simulated days', () => {
  // One edit every 10 s for 60 days (518,401 versions made), pruned every minute.
  const run = simulate({ policy: staggered, days: 60, editEvery: 10 * SECOND, pruneEvery: 60 * SECOND });
  const { kept, now } = run;

  it('keeps nothing older than the maximum age (30 days)', () => {
    expect(kept.length).toBeGreaterThan(0);
    for (const v of kept) expect(now - v.time).toBeLessThanOrEqual(30 * DAY);
  });

  it('keeps one version per 30 s in the first hour', () => {
    const firstHour = countAged(kept, now, 0, HOUR);
    // 120 slots of 30 s; the newest edits always survive.
    expect(firstHour).toBeGreaterThanOrEqual(115);
    expect(firstHour).toBeLessThanOrEqual(121);
    const young = kept.filter((v) => now - v.time < HOUR).sort((a, b) => a.time - b.time);
    for (let i = 1; i < young.length; i++) expect(young[i]!.time - young[i - 1]!.time).toBeGreaterThanOrEqual(30 * SECOND);
  });

  it('keeps about one version per hour for the rest of the first day', () => {
    const rest = countAged(kept, now, HOUR, DAY);
    expect(rest).toBeGreaterThanOrEqual(22);
    expect(rest).toBeLessThanOrEqual(24);
  });

  it('keeps about one version per day up to 30 days', () => {
    const days = countAged(kept, now, DAY, 30 * DAY);
    expect(days).toBeGreaterThanOrEqual(28);
    expect(days).toBeLessThanOrEqual(30);
  });

  it('never holds more than a bounded number of versions on the way', () => {
    // 120 + 24 + 30 survivors, plus at most a minute of edits (6) between prunes.
    expect(run.maxKept).toBeLessThan(200);
  });

  it('is stable: pruning again at the same time removes nothing more', () => {
    expect(versionsToPrune(kept, staggered, now)).toEqual([]);
  });
});

describe('staggered with a longer maximum age keeps one per week beyond 30 days', () => {
  it('one edit an hour for 60 days, max age 60 days', () => {
    const policy: VersionPolicy = { ...staggered, maxAgeDays: 60 };
    const { kept, now } = simulate({ policy, days: 60, editEvery: HOUR, pruneEvery: 6 * HOUR });
    const weekly = kept.filter((v) => now - v.time >= 30 * DAY).sort((a, b) => a.time - b.time);
    // 30 days beyond the first 30, one per week: 4 or 5.
    expect(weekly.length).toBeGreaterThanOrEqual(4);
    expect(weekly.length).toBeLessThanOrEqual(5);
    for (let i = 1; i < weekly.length; i++) expect(weekly[i]!.time - weekly[i - 1]!.time).toBeGreaterThanOrEqual(7 * DAY);
    for (const v of kept) expect(now - v.time).toBeLessThanOrEqual(60 * DAY);
  });
});

describe('versionsToPrune', () => {
  const v = (id: string, path: string, ageMs: number, size = 1): KeptVersion => ({ id, path, time: T0 - ageMs, size });

  it.each([
    {
      description: 'trash: only versions past the maximum age go',
      policy: { keep: 'trash', maxAgeDays: 2, count: 1, maxBytes: null } as VersionPolicy,
      versions: [v('a', 'x', 1 * DAY), v('b', 'x', 3 * DAY), v('c', 'y', 2 * DAY + 1)],
      expected: ['b', 'c'],
    },
    {
      description: 'simple: the newest `count` of each path stay',
      policy: { keep: 'simple', maxAgeDays: 30, count: 2, maxBytes: null } as VersionPolicy,
      versions: [v('a', 'x', 1), v('b', 'x', 2), v('c', 'x', 3), v('d', 'y', 4)],
      expected: ['c'],
    },
    {
      description: 'simple: the age limit holds too',
      policy: { keep: 'simple', maxAgeDays: 1, count: 5, maxBytes: null } as VersionPolicy,
      versions: [v('a', 'x', 1), v('b', 'x', 2 * DAY)],
      expected: ['b'],
    },
    {
      description: 'max_size: the oldest go first, whatever their path',
      policy: { keep: 'trash', maxAgeDays: 30, count: 1, maxBytes: 250 } as VersionPolicy,
      versions: [v('new', 'x', 1, 100), v('old', 'y', 3 * HOUR, 100), v('mid', 'x', 2 * HOUR, 100)],
      expected: ['old'],
    },
    {
      description: 'staggered: two versions 10 s apart in the first hour keep the older',
      policy: staggered,
      versions: [v('a', 'x', 20 * SECOND), v('b', 'x', 10 * SECOND)],
      expected: ['b'],
    },
    {
      description: 'staggered: versions of different paths never thin each other out',
      policy: staggered,
      versions: [v('a', 'x', 20 * SECOND), v('b', 'y', 10 * SECOND)],
      expected: [],
    },
    {
      description: 'a version from the future (clock set back) counts as new',
      policy: { keep: 'trash', maxAgeDays: 1, count: 1, maxBytes: null } as VersionPolicy,
      versions: [v('a', 'x', -5 * DAY)],
      expected: [],
    },
  ])('$description', ({ policy, versions, expected }) => {
    expect(versionsToPrune(versions, policy, T0).sort()).toEqual([...expected].sort());
  });
});

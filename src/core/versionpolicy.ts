/**
 * What the server keeps of deleted and replaced files: the versioning policies of `[versions]`
 * and the pure decision of which kept versions to prune. No clock here: `now` comes in.
 *
 * - `trash`: every version is kept for `maxAgeDays`.
 * - `simple`: the newest `count` versions of each path are kept, none older than `maxAgeDays`.
 * - `staggered` (Syncthing's): the older a version, the sparser they are kept. Per path, one
 *   version per 30 s in the first hour, one per hour in the first day, one per day in the first
 *   30 days, then one per week up to `maxAgeDays`.
 * Then, with `maxBytes`, the oldest versions (of any path) go until the rest fit.
 */

export type KeepPolicy = 'trash' | 'simple' | 'staggered';

export interface VersionPolicy {
  keep: KeepPolicy;
  /** No version older than this many days is kept. */
  maxAgeDays: number;
  /** `simple`: versions kept per path. */
  count: number;
  /** Cap on the bytes of all kept versions of a folder; null: none. */
  maxBytes: number | null;
}

/** What the policy needs to know of one kept version. */
export interface KeptVersion {
  id: string;
  /** Folder-relative path the version was at. */
  path: string;
  /** When it was removed or replaced, milliseconds since the epoch. */
  time: number;
  /** Bytes it takes on disk (0 for a directory's record). */
  size: number;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Staggered intervals: below age `end`, keep one version per `step`. The last one ends at maxAge. */
export function staggeredIntervals(maxAgeDays: number): Array<{ end: number; step: number }> {
  return [
    { end: HOUR, step: 30 * SECOND },
    { end: DAY, step: HOUR },
    { end: 30 * DAY, step: DAY },
    { end: Math.max(maxAgeDays * DAY, 30 * DAY), step: 7 * DAY },
  ];
}

/** Ids of one path's versions that staggering removes (Syncthing's `toRemove`). */
function staggeredRemovals(versions: KeptVersion[], maxAgeDays: number, now: number): string[] {
  const intervals = staggeredIntervals(maxAgeDays);
  const maxAge = maxAgeDays * DAY;
  const remove: string[] = [];
  let previousAge: number | null = null;
  // Oldest first: each survivor must be at least one step younger than the previous survivor.
  for (const v of [...versions].sort((a, b) => a.time - b.time || (a.id < b.id ? -1 : 1))) {
    const age = now - v.time;
    if (age > maxAge) {
      remove.push(v.id);
      continue;
    }
    if (previousAge === null) {
      previousAge = age;
      continue;
    }
    const interval = intervals.find((i) => age < i.end) ?? intervals[intervals.length - 1]!;
    if (previousAge - age < interval.step) {
      remove.push(v.id);
      continue;
    }
    previousAge = age;
  }
  return remove;
}

/**
 * The ids of the versions to remove now under `policy`, in no particular order. Never removes a
 * version younger than the policy allows, except to honour `maxBytes` (oldest first, ties by id).
 * Versions with a time in the future (a clock set back) count as age 0.
 */
export function versionsToPrune(versions: readonly KeptVersion[], policy: VersionPolicy, now: number): string[] {
  const remove = new Set<string>();
  const maxAge = policy.maxAgeDays * DAY;
  const byPath = new Map<string, KeptVersion[]>();
  for (const v of versions) {
    const clamped = v.time > now ? { ...v, time: now } : v;
    const list = byPath.get(v.path);
    if (list === undefined) byPath.set(v.path, [clamped]);
    else list.push(clamped);
  }
  for (const list of byPath.values()) {
    switch (policy.keep) {
      case 'trash':
        for (const v of list) if (now - v.time > maxAge) remove.add(v.id);
        break;
      case 'simple': {
        const newestFirst = [...list].sort((a, b) => b.time - a.time || (a.id < b.id ? 1 : -1));
        newestFirst.forEach((v, i) => {
          if (i >= policy.count || now - v.time > maxAge) remove.add(v.id);
        });
        break;
      }
      case 'staggered':
        for (const id of staggeredRemovals(list, policy.maxAgeDays, now)) remove.add(id);
        break;
    }
  }
  if (policy.maxBytes !== null) {
    const left = versions.filter((v) => !remove.has(v.id)).sort((a, b) => a.time - b.time || (a.id < b.id ? -1 : 1));
    let total = left.reduce((sum, v) => sum + v.size, 0);
    for (const v of left) {
      if (total <= policy.maxBytes) break;
      remove.add(v.id);
      total -= v.size;
    }
  }
  return [...remove];
}

/** The checks of single config values, each throwing a `ConfigError` that names where the value stood. */
import path from 'node:path';
import { ConfigError } from './configtypes.js';

export type Where = { file: string; section: string | null; key: string | null };

export function oneOf<T extends string>(where: Where, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    const list = allowed.length === 2 ? `${allowed[0]} or ${allowed[1]}` : allowed.join(', ');
    throw new ConfigError(where, `expected ${list}, got ${quote(value)}`);
  }
  return value as T;
}

export function integer(where: Where, value: string, min: number, max: number): number {
  const n = /^\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) {
    throw new ConfigError(where, `expected an integer ${min}-${max}, got ${quote(value)}`);
  }
  return n;
}

/** A local path: absolute, or `~` / `~/…` expanded with `home`; returned normalised without a trailing slash. */
export function localPath(where: Where, value: string, home: string | undefined): string {
  let absolute: string;
  if (value === '~' || value.startsWith('~/')) {
    if (home === undefined) {
      throw new ConfigError(where, `expected a home directory to expand "~" in, got none (HOME is unknown); write an absolute path`);
    }
    absolute = path.posix.join(home, value.slice(1));
  } else if (path.posix.isAbsolute(value)) {
    absolute = value;
  } else {
    const tilde = value.startsWith('~') ? ' ("~user" is not supported)' : '';
    throw new ConfigError(where, `expected an absolute path or one starting with ~/${tilde}, got ${quote(value)}`);
  }
  const normalized = path.posix.normalize(absolute);
  return normalized.length > 1 && normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

/** Whether absolute normalised `inner` is strictly inside `outer`. */
export function isInside(inner: string, outer: string): boolean {
  const prefix = outer.endsWith('/') ? outer : `${outer}/`;
  return inner !== outer && inner.startsWith(prefix);
}

export function quote(value: string): string {
  return JSON.stringify(value);
}

/** " (did you mean x?)" when a known name is within two edits of `given`, else "". */
export function suggestion(given: string, known: readonly string[], show: (name: string) => string): string {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(given.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best === null ? '' : ` (did you mean ${show(best)}?)`;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}

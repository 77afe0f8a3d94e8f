/**
 * Path rules for folder-relative POSIX paths: the only form in which paths travel inside the
 * program and over the wire. Pure: no fs, no imports from outside `core/`.
 */
import { PathError, type PathErrorReason } from './errors.js';
import { isReservedName } from './reserved.js';

export { PathError } from './errors.js';

/** The per-folder directory that is never synced: marker, temp files, trash. */
export const RESERVED_DIR = '.systemsync';
/** Longest accepted segment, in UTF-8 bytes (NAME_MAX on Linux). */
export const MAX_SEGMENT_BYTES = 255;
/** Longest accepted path, in UTF-8 bytes (PATH_MAX on Linux). */
export const MAX_PATH_BYTES = 4096;

export interface PathCheckOptions {
  /** Accept paths under `.systemsync/` (internal use only: temp files, trash). Default false. */
  allowReserved?: boolean;
}

const LONE_SURROGATE = /\p{Surrogate}/u;

/** Length in UTF-8 bytes of a well-formed string. */
export function utf8Length(s: string): number {
  let n = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
}

/** The reason `p` is not a safe relative path, or null when it is. */
export function pathProblem(p: unknown, options: PathCheckOptions = {}): PathErrorReason | null {
  if (typeof p !== 'string') return 'not a string';
  if (p === '') return 'empty';
  if (p.includes('\0')) return 'NUL byte';
  if (p.includes('\\')) return 'backslash';
  if (p.startsWith('/')) return 'absolute';
  if (LONE_SURROGATE.test(p)) return 'invalid unicode';
  if (p.length > MAX_PATH_BYTES || utf8Length(p) > MAX_PATH_BYTES) return 'path too long';
  const parts = p.split('/');
  for (const part of parts) {
    if (part === '') return 'empty segment';
    if (part === '..') return 'dot-dot segment';
    if (part === '.') return 'dot segment';
    if (utf8Length(part) > MAX_SEGMENT_BYTES) return 'segment too long';
  }
  // Folded: on a case-folding or normalizing file system ".SystemSync", ".ſystemsync" or
  // ".system<ZWJ>sync" is the same directory (reserved.ts).
  if (options.allowReserved !== true && isReservedName(parts[0] as string)) return 'reserved';
  return null;
}

/**
 * Returns `p` unchanged if it is a safe folder-relative POSIX path: a non-empty string, not
 * absolute, no empty, "." or ".." segment, no NUL byte, no backslash, well-formed unicode,
 * segments ≤ 255 UTF-8 bytes, whole path ≤ 4096 bytes, not under `.systemsync/` (unless
 * `allowReserved`). Any other character (newlines included) is legal in a name.
 * @throws PathError (code 'BAD_PATH') whose `reason` names the first problem found.
 */
export function checkRelativePath(p: unknown, options: PathCheckOptions = {}): string {
  const problem = pathProblem(p, options);
  if (problem !== null) throw new PathError(problem, p);
  return p as string;
}

/** True when `checkRelativePath(p)` would accept `p`. */
export function isSafeRelativePath(p: unknown, options: PathCheckOptions = {}): p is string {
  return pathProblem(p, options) === null;
}

/** The segments of a relative path ("a/b/c" → ["a", "b", "c"]). */
export function segments(p: string): string[] {
  return p.split('/');
}

/** The parent of a relative path ("a/b" → "a"), or null when the parent is the folder root. */
export function parentOf(p: string): string | null {
  const i = p.lastIndexOf('/');
  return i < 0 ? null : p.slice(0, i);
}

/** The last segment of a relative path ("a/b.txt" → "b.txt"). */
export function baseNameOf(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

/**
 * `dir` and `name` joined with "/"; `dir` null or "" means the folder root. The result is
 * checked: a bad combination throws PathError.
 */
export function joinRelative(dir: string | null, name: string): string {
  return checkRelativePath(dir === null || dir === '' ? name : `${dir}/${name}`);
}

/**
 * True when `p` is `dir` or lies beneath it: "a/b" is inside "a", "ab" is not.
 * `dir` null or "" is the folder root, which holds every path.
 */
export function isSameOrInside(p: string, dir: string | null): boolean {
  if (dir === null || dir === '') return true;
  return p === dir || (p.length > dir.length && p.startsWith(dir) && p.charCodeAt(dir.length) === 0x2f);
}

/** Where `p`, at or under `from`, lands when `from` is renamed to `to`. */
export function movedPath(p: string, from: string, to: string): string {
  return to + p.slice(from.length);
}

/** The paths of `paths` that lie inside no other of them (a walk of these covers all), in their order. */
export function outermostPaths(paths: readonly string[]): string[] {
  return paths.filter((p) => !paths.some((other) => other !== p && isSameOrInside(p, other)));
}

/** The number of segments of a relative path ("a/b/c" → 3), without splitting it. */
function depthOf(p: string): number {
  let depth = 1;
  for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) depth++;
  return depth;
}

/**
 * `paths` shallowest first, and in code-unit order within one depth (so a parent comes before
 * its children). Bucketed by depth, then plain string sorts: a comparator that split both paths
 * took over a minute on a million paths.
 */
export function shallowestFirst(paths: Iterable<string>): string[] {
  const byDepth: string[][] = [];
  for (const p of paths) (byDepth[depthOf(p)] ??= []).push(p);
  const sorted: string[] = [];
  for (const bucket of byDepth) if (bucket !== undefined) for (const p of bucket.sort()) sorted.push(p);
  return sorted;
}

/** `paths` deepest first, and in reverse code-unit order within one depth (children before their parent). */
export function deepestFirst(paths: Iterable<string>): string[] {
  return shallowestFirst(paths).reverse();
}

/**
 * The paths of `paths` strictly inside one of `dirs` (not the folder root), in their order: one
 * pass, each path's ancestors looked up in a set, instead of one pass over `paths` per directory.
 */
export function pathsInsideAny(paths: Iterable<string>, dirs: Iterable<string>): string[] {
  const dirSet = new Set(dirs);
  const found: string[] = [];
  for (const p of paths) {
    for (let i = p.indexOf('/'); i !== -1; i = p.indexOf('/', i + 1)) {
      if (dirSet.has(p.slice(0, i))) {
        found.push(p);
        break;
      }
    }
  }
  return found;
}

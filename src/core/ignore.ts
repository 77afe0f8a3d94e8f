/**
 * Ignore rules of a synced folder: the `[ignore] patterns` of the config plus the folder's own
 * `.syncignore`, both in gitignore syntax, matched against folder-relative POSIX paths.
 * Pure: no fs. `.systemsync/` at the root is always ignored, whatever the patterns say.
 */
import ignore, { type Ignore } from 'ignore';
import { SyncError } from './errors.js';
import { isReservedFirstSegment } from './reserved.js';

export interface IgnoreMatcher {
  /**
   * True when `relPath` (folder-relative POSIX, not "") is ignored. `isDir` tells whether the
   * path is a directory, which matters for directory-only patterns like `node_modules/`.
   * A path under an ignored directory is ignored too. The folder root ("") is never ignored.
   * @throws SyncError 'BAD_PATH' when `relPath` is absolute or has "."/".." segments.
   */
  isIgnored(relPath: string, isDir: boolean): boolean;
}

/** Absolute, or with an empty, "." or ".." segment. */
const NOT_RELATIVE = /^\/|\/\/|\/$|(^|\/)\.\.?(\/|$)/;

/** Lookups after which a matcher drops the `ignore` package's result cache (see below). */
const CACHE_LOOKUPS = 8192;

/** The name of the per-folder ignore file; it syncs like any file unless a pattern names it. */
export const SYNCIGNORE_FILE = '.syncignore';

/** True when `relPath` is `.systemsync` or lies under it, under any alias of that name (reserved.ts). */
export function isReservedPath(relPath: string): boolean {
  return isReservedFirstSegment(relPath);
}

/**
 * Builds a matcher from config `patterns` (one gitignore line each) and the text of the
 * folder's `.syncignore` (null when there is none). Later lines win, so `.syncignore` can
 * re-include (`!pattern`) what the config excludes. Blank lines and `#` comments are skipped.
 * Matching is case-sensitive, as git does on Linux.
 */
export function createIgnoreMatcher(patterns: readonly string[], syncignoreText: string | null): IgnoreMatcher {
  const configLines = patterns.map((p) => p.trim()).filter((p) => p !== '');
  const syncignoreLines = syncignoreText === null ? [] : syncignoreText.split(/\r?\n/);
  // No rule at all (only blank lines and comments): nothing is ignored but `.systemsync/`.
  const hasRules = [...configLines, ...syncignoreLines].some((line) => line.trim() !== '' && !line.startsWith('#'));
  const build = (): Ignore => {
    const ig = ignore({ ignorecase: false });
    ig.add(configLines);
    ig.add(syncignoreLines);
    return ig;
  };
  // The `ignore` package caches the answer for every path (and parent) it is asked about, for
  // the life of the instance: ~90 bytes per indexed path. A fresh instance every
  // CACHE_LOOKUPS lookups bounds that, and keeps the cache warm for the paths of a scan.
  let ig = hasRules ? build() : null;
  let lookups = 0;
  return {
    isIgnored(relPath: string, isDir: boolean): boolean {
      if (relPath === '') return false;
      if (isReservedPath(relPath)) return true;
      if (NOT_RELATIVE.test(relPath)) {
        throw new SyncError('BAD_PATH', `ignore: expected a folder-relative POSIX path, got ${JSON.stringify(relPath)}`);
      }
      if (ig === null) return false;
      if (++lookups > CACHE_LOOKUPS) {
        ig = build();
        lookups = 0;
      }
      try {
        return ig.ignores(isDir ? `${relPath}/` : relPath);
      } catch (cause) {
        throw new SyncError('BAD_PATH', `ignore: cannot match ${JSON.stringify(relPath)}`, { cause });
      }
    },
  };
}

/**
 * Ignore rules of a synced folder: the `[ignore] patterns` of the config plus the folder's own
 * `.syncignore`, both in gitignore syntax, matched against folder-relative POSIX paths.
 * Pure: no fs. `.systemsync/` at the root is always ignored, whatever the patterns say.
 */
import ignore from 'ignore';
import { SyncError } from './errors.js';
import { RESERVED_DIR } from './paths.js';

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

/** The name of the per-folder ignore file; it syncs like any file unless a pattern names it. */
export const SYNCIGNORE_FILE = '.syncignore';

/** True when `relPath` is `.systemsync` or lies under it (case-insensitively, like paths.ts). */
export function isReservedPath(relPath: string): boolean {
  const slash = relPath.indexOf('/');
  const first = slash < 0 ? relPath : relPath.slice(0, slash);
  return first.toLowerCase() === RESERVED_DIR;
}

/**
 * Builds a matcher from config `patterns` (one gitignore line each) and the text of the
 * folder's `.syncignore` (null when there is none). Later lines win, so `.syncignore` can
 * re-include (`!pattern`) what the config excludes. Blank lines and `#` comments are skipped.
 * Matching is case-sensitive, as git does on Linux.
 */
export function createIgnoreMatcher(patterns: readonly string[], syncignoreText: string | null): IgnoreMatcher {
  const ig = ignore({ ignorecase: false });
  ig.add(patterns.map((p) => p.trim()).filter((p) => p !== ''));
  if (syncignoreText !== null) ig.add(syncignoreText.split(/\r?\n/));
  return {
    isIgnored(relPath: string, isDir: boolean): boolean {
      if (relPath === '') return false;
      if (isReservedPath(relPath)) return true;
      if (NOT_RELATIVE.test(relPath)) {
        throw new SyncError('BAD_PATH', `ignore: expected a folder-relative POSIX path, got ${JSON.stringify(relPath)}`);
      }
      try {
        return ig.ignores(isDir ? `${relPath}/` : relPath);
      } catch (cause) {
        throw new SyncError('BAD_PATH', `ignore: cannot match ${JSON.stringify(relPath)}`, { cause });
      }
    },
  };
}

/**
 * Reserved names, compared the way a case-folding or normalizing file system compares them
 * (git's CVE-2014-9390: on HFS+ or NTFS `.GIT`, `.gi\u200ct` or `.git.` all open `.git`).
 * Pure: no fs, no imports from outside `core/`.
 *
 * A name is folded before it is compared: default-ignorable code points removed (HFS+ drops
 * ZWJ, ZWNJ, the bidi marks and the BOM), NFKC (fullwidth and mathematical letters, `ſ` U+017F,
 * ligatures such as `ﬅ`, the one-dot leader), full case folding (`ẞ` and `ß` become `ss`, the
 * Kelvin sign `k`), NFKC again (folding can produce unnormalized text), and finally the trailing
 * dots and spaces that NTFS strips from a name.
 */

/** Top-level names that a folder never syncs, whatever their spelling on disk. */
export const RESERVED_NAMES: readonly string[] = ['.systemsync'];

const DEFAULT_IGNORABLE = /\p{Default_Ignorable_Code_Point}/gu;
const NOT_PLAIN_ASCII = /[^\x20-\x7e]/;
const TRAILING_DOTS_AND_SPACES = /[. ]+$/;

/**
 * JavaScript has no case-fold operation. Lower, upper, lower again gives the full (non-Turkic)
 * folding of every letter that matters here: `ſ`→`S`→`s`, `ß`→`SS`→`ss`, `ẞ`→`ß`→`SS`→`ss`,
 * Kelvin sign → `k`, Greek final sigma → `σ`. Upper-casing alone would miss `ẞ`, lower-casing
 * alone would miss `ſ` and `ß`.
 */
function caseFold(s: string): string {
  return s.toLowerCase().toUpperCase().toLowerCase();
}

/**
 * The comparison key of one path segment: ignorables removed, NFKC, full case folding, NFKC,
 * trailing dots and spaces removed. Plain printable ASCII skips the Unicode steps (same result).
 * Never throws; `name` may be any string.
 */
export function foldName(name: string): string {
  const folded = NOT_PLAIN_ASCII.test(name)
    ? caseFold(name.replace(DEFAULT_IGNORABLE, '').normalize('NFKC')).normalize('NFKC').replace(DEFAULT_IGNORABLE, '')
    : name.toLowerCase();
  return folded.replace(TRAILING_DOTS_AND_SPACES, '');
}

const RESERVED_KEYS = new Set(RESERVED_NAMES.map(foldName));
/** Folding never lengthens plain ASCII: a shorter ASCII name cannot match. */
const MIN_RESERVED_LENGTH = Math.min(...[...RESERVED_KEYS].map((k) => k.length));

/**
 * True when the path segment `name` aliases a reserved name (`.systemsync`, `.SystemSync`,
 * `.ſystemsync`, `.system\u200dsync`, `.systemsync.`, `．ｓｙｓｔｅｍｓｙｎｃ`, ...) on some
 * file system. Only the first segment of a folder-relative path is reserved.
 */
export function isReservedName(name: string): boolean {
  if (name.length < MIN_RESERVED_LENGTH && !NOT_PLAIN_ASCII.test(name)) return false;
  return RESERVED_KEYS.has(foldName(name));
}

/** True when the first segment of the folder-relative path `relPath` is a reserved name. */
export function isReservedFirstSegment(relPath: string): boolean {
  const slash = relPath.indexOf('/');
  return isReservedName(slash < 0 ? relPath : relPath.slice(0, slash));
}

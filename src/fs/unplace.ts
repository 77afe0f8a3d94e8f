/**
 * Removing a file for a pulled delete without destroying bytes the pull did not decide on.
 *
 * The delete was decided from a look at the file; a local write can land between that look and
 * the unlink, and a plain unlink loses it (found by the simulation: a write racing a pulled
 * delete). As for placing a pulled file (fs/place.ts), the file or link is renamed aside
 * into `.systemsync/tmp` (atomic), what was moved is compared with what the delete decided to
 * remove, and a local edit is put back with link() (if the path was taken meanwhile, it is kept
 * as a conflict copy). Only then is the moved file unlinked.
 */
import fs from 'node:fs';
import type { Entry, StatFingerprint } from '../core/types.js';
import { isSameEntry } from '../core/reconcile.js';
import { dropAside, entryOf, moveAside, putBack } from './place.js';
import { removeEmptyDir } from './apply.js';
import { checkPath } from './safefs.js';

export interface UnplaceExpectation {
  /** What the delete decided to remove. */
  entry: Entry;
  /** Its fingerprint when it was read (content taken as unchanged if ino, size and mtime match). */
  stat: StatFingerprint | null;
}

export type UnplaceResult =
  /** Removed (or already gone). A directory that still holds something is not removed: `removed` false, `copy` null. */
  | { removed: true }
  /** Not removed: the file changed since the decision. It is back at its path, or at `copy`. */
  | { removed: false; copy: string | null };

export interface UnplaceOptions {
  /** Name for a conflict copy of a local version whose path was taken meanwhile (folder-relative). */
  conflictName: (rel: string) => string;
  /** Test seam: runs between the decision and the move aside (a race is injected here). */
  beforeRemove?: () => void | Promise<void>;
}

/** Remove `rel` for a pulled delete, unless it is no longer what `expected` describes. */
export async function removePulledPath(root: string, rel: string, expected: UnplaceExpectation, options: UnplaceOptions): Promise<UnplaceResult> {
  await options.beforeRemove?.();
  const c = await checkPath(root, rel);
  const st = fs.lstatSync(c.abs, { throwIfNoEntry: false });
  if (st === undefined) return { removed: true };
  // A directory goes only when empty (one rmdir: never what took its place or came into it).
  if (st.isDirectory()) return (await removeEmptyDir(root, rel)) ? { removed: true } : { removed: false, copy: null };
  // A file or link is moved aside first: a file written where the link was is never unlinked.
  const aside = await moveAside(root, c, { expected, linkedIno: null });
  if (aside === null) return { removed: true };
  const moved = await entryOf(aside, expected);
  if (isSameEntry(moved, expected.entry)) {
    dropAside(aside);
    return { removed: true };
  }
  // A local edit landed since the decision: it stays, at its path if that is still free.
  return { removed: false, copy: await putBack(root, aside, c, options.conflictName) };
}

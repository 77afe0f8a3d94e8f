/**
 * Merge rules of a client with the server's listing, and the finishing of an interrupted pull.
 * Pure.
 */
import { isSameEntry } from './reconcile.js';
import type { BaseRecord, Change, Entry } from './types.js';

export type InterruptedPullStep =
  /** The disk holds exactly the change's version: record it as the base. */
  | 'record'
  /** The change deleted the path and it is gone here: forget the base. */
  | 'forget'
  /** Leave it: already applied, or the disk holds something else (the scan pushes it). */
  | 'none';

/**
 * A kill may fall between placing a pulled version on disk and saving its base. For one change
 * of the page that was being applied, `base` is the saved base and `local` what is on disk now.
 */
export function decideInterruptedPull(change: Change, base: BaseRecord | null, local: Entry | null): InterruptedPullStep {
  if (base !== null && base.seq >= change.seq) return 'none';
  if (change.entry === null) return local === null && base !== null ? 'forget' : 'none';
  return local !== null && isSameEntry(local, change.entry) ? 'record' : 'none';
}

/**
 * After a reset (the server no longer knows our place, or its numbering restarted), the client
 * forgets every base and merges the server's full listing as on a first sync: each listed path
 * goes through `decidePull` with no base (identical: recorded; different: kept and pushed, so
 * the server's rules keep both; absent here: fetched). A reset never deletes anything.
 *
 * This returns what is left to push afterwards: every path the client knew (`known`) that the
 * listing does not have, or that the merge did not record (`hasBaseAfter` false).
 */
export function pathsToPushAfterResync(known: readonly string[], listed: ReadonlySet<string>, hasBaseAfter: (path: string) => boolean): string[] {
  return known.filter((p) => !listed.has(p) || !hasBaseAfter(p));
}

/**
 * Hard links: each name is synced as its own file. When the file at `path`, with `links` names,
 * changed, every other indexed name on the same inode is looked at too (an edit through one name
 * changes them all). `namesOfInode` lists the base paths recorded on that inode.
 */
export function otherLinkNames(path: string, links: number, namesOfInode: readonly string[]): string[] {
  if (links < 2) return [];
  return namesOfInode.filter((p) => p !== path);
}

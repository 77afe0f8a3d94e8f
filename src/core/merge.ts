/**
 * Merge rules of a client with the server's listing, and the finishing of an interrupted pull.
 * Pure.
 */
import { movedPath } from './paths.js';
import { isSameEntry, isSameFingerprint } from './reconcile.js';
import type { BaseRecord, Change, Entry, StatFingerprint } from './types.js';

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

/** What a client read at one path, as far as hard links go. */
export interface LinkObservation {
  entry: Entry;
  stat: StatFingerprint | null;
  /** Names of the inode (regular files). */
  links?: number;
}

/**
 * The other names a client's push looks at along with `path` (hard links):
 * - the file there changed: every other indexed name of its inode (they hold the same bytes);
 * - the name left the inode its base was on (deleted, renamed away, replaced by another file, a
 *   link or a directory): every other indexed name of that inode, since a write through this
 *   name before it left changed them too, and no event about them ever comes (seed 1223: a
 *   write through `n`, a hard link of `X`, then `n` made a symlink; `X` kept its old base).
 * `namesOfInode` lists the base paths recorded on an inode.
 */
export function linkNamesToLookAt(path: string, base: BaseRecord | null, local: LinkObservation | null, namesOfInode: (ino: number) => readonly string[]): string[] {
  const names = new Set<string>();
  if (local?.entry.type === 'file' && local.stat !== null && !isSameFingerprint(base?.stat ?? null, local.stat)) {
    for (const other of otherLinkNames(path, local.links ?? 1, namesOfInode(local.stat.ino))) names.add(other);
  }
  const baseIno = base?.entry.type === 'file' ? (base.stat?.ino ?? null) : null;
  if (baseIno !== null && (local === null || local.stat?.ino !== baseIno)) {
    for (const other of namesOfInode(baseIno)) if (other !== path) names.add(other);
  }
  return [...names];
}

/** Base edits after a client applied a pulled rename by moving its local `from` to `to`. */
export interface PulledRenameBases {
  /** Base records to move, old path to new path (the children the server's rename carried). */
  moves: Array<[from: string, to: string]>;
  /** Paths to look at again from disk. */
  recheck: string[];
}

/**
 * A pulled directory rename moves the whole local directory, but the server's rename (at
 * `renameSeq`) carried only the children it held under `from` then. A child whose base is newer
 * than the rename was committed under the old name after it (its version is still there on the
 * server): its base stays at the old path, so the look that follows pushes the move as a delete
 * there and a new file at its new path, instead of taking the new path as synced (a child the
 * server never has under `to` would stay here only). `children` are the base records under
 * `from`; everything moved, carried or not, is looked at again.
 */
export function basesForPulledRename(from: string, to: string, renameSeq: number, children: ReadonlyArray<readonly [string, BaseRecord]>): PulledRenameBases {
  const out: PulledRenameBases = { moves: [], recheck: [to] };
  for (const [child, base] of children) {
    const target = movedPath(child, from, to);
    if (base.seq <= renameSeq) out.moves.push([child, target]);
    else out.recheck.push(child);
    out.recheck.push(target);
  }
  return out;
}

/** The base index as edited by `moveBases`. */
export interface BaseEdits {
  getBase(path: string): BaseRecord | null;
  setBase(path: string, record: BaseRecord): void;
  deleteBase(path: string): void;
}

/** Carry out `moves` (old path to new path) on a base index. */
export function moveBases(index: BaseEdits, moves: ReadonlyArray<readonly [string, string]>): void {
  for (const [from, to] of moves) {
    const record = index.getBase(from);
    if (record === null) continue;
    index.deleteBase(from);
    index.setBase(to, record);
  }
}

/**
 * A failed pull is retried with the change it failed on. By the time the retry runs (it waits
 * for the folder lock), a later page may have brought a newer version of the path, which cleared
 * that failure: the old change must not be applied again (its download fails for ever once the
 * server no longer has that version, or it brings back what the newer version replaced). Of
 * `changes`, only those whose failed pull is still recorded with the same seq are retried.
 */
export function pullsStillFailing(changes: readonly Change[], failed: ReadonlyArray<{ op: 'push' | 'pull'; path: string; change?: Change }>): Change[] {
  return changes.filter((c) => failed.some((t) => t.op === 'pull' && t.path === c.path && t.change?.seq === c.seq));
}

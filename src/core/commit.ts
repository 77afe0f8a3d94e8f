/**
 * The server's commit rules: may a pushed op be committed against what the server holds now,
 * and how. Pure. `decidePut`/`decideDelete`/`decideRename` (reconcile.ts) decide between two
 * versions of one path; the rules here add what spans paths (children of a directory, the target
 * of a rename) and what the upload says.
 */
import { isSameOrInside } from './paths.js';
import { decideDelete, decidePut, decideRename, hasSameContent, isSameEntry } from './reconcile.js';
import type { Entry, PushOp, Version } from './types.js';

export type CommitDecision =
  /** Commit the op as asked. For a rename, `restamp` is the metadata to set on the moved entry
   * when the client's entry differs from what the server moved only in mode or mtime, and
   * `clearTarget` says the target holds what rename(2) cannot replace (an empty directory for a
   * file or link, a file or link for a directory): it is removed first. */
  | { action: 'apply'; restamp?: Entry; clearTarget?: true }
  /** Nothing to change: the server already holds this content. */
  | { action: 'same' }
  /** Two edits met: keep the server's version, store the pushed one as a conflict copy. */
  | { action: 'conflict' }
  /** The server's version moved on: the client re-syncs the path from it. */
  | { action: 'stale' }
  /** The op can never succeed as sent. */
  | { action: 'refuse'; code: string; message: string };

/** What the server holds around one op: the current version(s) and how many live paths are inside. */
export interface CommitContext {
  /** The version at the op's path (a rename's source). */
  current: Version | null;
  /** A rename's target. */
  currentTo?: Version | null;
  /** Live paths strictly inside the op's path (a directory a put or delete would remove, a rename's source). */
  liveChildren?: number;
  /** Live paths strictly inside a rename's target. */
  liveChildrenOfTarget?: number;
  /** A file put carries content (an upload); without it only metadata is pushed. */
  hasUpload?: boolean;
  /**
   * The pushing node. A current version it made itself (an earlier push of its own whose answer
   * it never got: a kill or a cut in flight) is not another writer's edit: its newer put or
   * delete replaces it, as its writes replaced each other on its own disk.
   */
  node?: string;
}

function isOwnVersion(current: Version | null, node: string | undefined): boolean {
  return current !== null && node !== undefined && current.origin === node;
}

/**
 * Decide one op.
 * - put: decidePut; a metadata-only file put for content the server no longer holds is stale;
 *   a file or link that would replace a directory still holding live paths the client did not
 *   delete first is stale (as for a delete: the client re-syncs the path, and its version goes
 *   back as a put on the directory it now sees, which the conflict rule keeps as a copy).
 * - put and delete over a version the pushing node made itself (`node`): never a conflict nor
 *   stale, the node's later edit wins over its own earlier one; except a file or link put, on
 *   another base, over its own directory that holds live paths: a conflict (the put cannot be
 *   applied, and stale would loop: the client keeps its local version, which has no base).
 * - delete: decideDelete; a directory that still holds live paths the client did not delete
 *   first is stale (the client re-syncs it instead of losing them).
 * - rename: decideRename; into itself is refused; over a directory that holds live paths is
 *   stale; a file or directory whose pushed entry differs from the moved one only in metadata is
 *   applied with `restamp` (a chmod right after a rename must reach the server's disk too); over
 *   a target of the other kind (directory or not) with `clearTarget`.
 */
export function decideCommit(op: PushOp, ctx: CommitContext): CommitDecision {
  const current = ctx.current;
  if (op.op === 'put') {
    const decision = decidePut(current, op.base, op.entry);
    const isMetadataOnly = op.entry.type === 'file' && ctx.hasUpload !== true;
    if (isMetadataOnly && !hasSameContent(current?.entry ?? null, op.entry)) return { action: 'stale' };
    if (decision === 'same' && current !== null) return { action: 'same' };
    const replacesFullDirectory = current?.entry?.type === 'dir' && op.entry.type !== 'dir' && (ctx.liveChildren ?? 0) > 0;
    // Our own earlier version gives way to our later edit, but not a directory that still holds
    // live paths: that put cannot be applied, and stale would only bring the directory back to a
    // client that keeps its local version and pushes it again, for ever. Both are kept.
    if (decision === 'conflict' && current !== null && (!isOwnVersion(current, ctx.node) || replacesFullDirectory)) return { action: 'conflict' };
    if (replacesFullDirectory) return { action: 'stale' };
    return { action: 'apply' };
  }
  if (op.op === 'delete') {
    const decision = decideDelete(current, op.base);
    if (decision === 'same' || (decision === 'stale' && !isOwnVersion(current, ctx.node))) return { action: decision };
    if (current?.entry?.type === 'dir' && (ctx.liveChildren ?? 0) > 0) return { action: 'stale' };
    return { action: 'apply' };
  }
  const currentTo = ctx.currentTo ?? null;
  if (decideRename(current, currentTo, op.base, op.toBase) === 'stale' || current?.entry == null) return { action: 'stale' };
  if (isSameOrInside(op.to, op.from)) return { action: 'refuse', code: 'BAD_OP', message: 'cannot move a directory into itself' };
  if (currentTo?.entry?.type === 'dir' && (ctx.liveChildrenOfTarget ?? 0) > 0) return { action: 'stale' };
  const moved = current.entry;
  const apply: CommitDecision & { action: 'apply' } = { action: 'apply' };
  // Seed 3681: a file renamed over the empty directory the client saw failed with EISDIR, for ever.
  if (currentTo?.entry != null && (currentTo.entry.type === 'dir') !== (moved.type === 'dir')) apply.clearTarget = true;
  // The client's entry is not what the server holds under the old name: move what is there.
  if (moved.type !== op.entry.type || !hasSameContent(moved, op.entry)) return apply;
  if (moved.type !== 'symlink' && !isSameEntry(moved, op.entry)) apply.restamp = op.entry;
  return apply;
}

/**
 * The entry a committed rename records at its target: the pushed entry when the server could
 * give the moved entry its metadata (`restamp`) or it already had it, else what was moved.
 */
export function renamedEntry(moved: Entry, pushed: Entry, restamped: boolean): Entry {
  if (isSameEntry(moved, pushed) || restamped) return pushed;
  return moved;
}

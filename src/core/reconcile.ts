/**
 * The decisions of systemsync, as pure functions. No fs, no network, no clock.
 *
 * Vocabulary (see types.ts): `base` is what a client last agreed on with the server for a path,
 * `local` is what is on the local disk now, `current` is the server's version now. Sequence
 * numbers are the only order; clocks of different machines are never compared.
 */
import type { BaseRecord, Change, Entry, PushOp, StatFingerprint, Version } from './types.js';

/** Same content and type (a file's hash, a link's target; any two directories). */
export function hasSameContent(a: Entry | null, b: Entry | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.type !== b.type) return false;
  if (a.type === 'file' && b.type === 'file') return a.hash === b.hash && a.size === b.size;
  if (a.type === 'symlink' && b.type === 'symlink') return a.target === b.target;
  return true;
}

/** Same content and the metadata that travels with it (mode and mtime of files, mode of dirs). */
export function isSameEntry(a: Entry | null, b: Entry | null): boolean {
  if (!hasSameContent(a, b)) return false;
  if (a === null || b === null) return true;
  if (a.type === 'file' && b.type === 'file') return a.mode === b.mode && a.mtime === b.mtime;
  if (a.type === 'dir' && b.type === 'dir') return a.mode === b.mode;
  return true;
}

/** True when two fingerprints are the same (both non-null and equal in every field): the file was not touched since the first was taken. */
export function isSameFingerprint(a: StatFingerprint | null | undefined, b: StatFingerprint | null | undefined): boolean {
  return (
    a !== null && a !== undefined && b !== null && b !== undefined &&
    a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs
  );
}

function isLive(version: Version | null): version is Version & { entry: Entry } {
  return version !== null && version.entry !== null;
}

// ---------------------------------------------------------------------------------------------
// Server side: may a pushed op be committed?

export type PutDecision = 'apply' | 'same' | 'conflict';

/**
 * A client pushes `entry` for a path it last agreed on at `base` (null: it never had it).
 * - Nothing there, or a tombstone: apply (an edit wins over a delete).
 * - The client's base is the current version: apply.
 * - Same content as the current version: `same` (identical content is never a conflict), unless
 *   the client is up to date and only metadata moved, which is an ordinary `apply`.
 * - Otherwise two edits met: `conflict`.
 */
export function decidePut(current: Version | null, base: number | null, entry: Entry): PutDecision {
  if (!isLive(current)) return 'apply';
  if (base === current.seq) return isSameEntry(current.entry, entry) ? 'same' : 'apply';
  if (hasSameContent(current.entry, entry)) return 'same';
  return 'conflict';
}

export type DeleteDecision = 'apply' | 'same' | 'stale';

/** A delete only removes the version the client saw; an edit it did not see wins (`stale`). */
export function decideDelete(current: Version | null, base: number | null): DeleteDecision {
  if (!isLive(current)) return 'same';
  return base === current.seq ? 'apply' : 'stale';
}

export type RenameDecision = 'apply' | 'stale';

/**
 * A rename commits only if the source is still the version the client saw and the target is
 * free or still the version the client saw there; otherwise the client falls back to put+delete,
 * which go through the ordinary conflict rules.
 */
export function decideRename(
  currentFrom: Version | null,
  currentTo: Version | null,
  base: number | null,
  toBase: number | null,
): RenameDecision {
  if (!isLive(currentFrom) || currentFrom.seq !== base) return 'stale';
  if (isLive(currentTo) && currentTo.seq !== toBase) return 'stale';
  return 'apply';
}

// ---------------------------------------------------------------------------------------------
// Client side: what does a local path need?

/**
 * The op that brings the server to the local state of one path, or null when the path is clean.
 * Renames are found by the caller (they need the inode index) and are not produced here.
 */
export function decidePush(path: string, base: BaseRecord | null, local: Entry | null): PushOp | null {
  if (local === null) return base === null ? null : { op: 'delete', path, base: base.seq };
  if (base !== null && isSameEntry(base.entry, local)) return null;
  return { op: 'put', path, base: base?.seq ?? null, entry: local, upload: null };
}

export type PullDecision =
  /** The client already holds this version or a later one. */
  | { action: 'skip' }
  /** Local disk already matches the change: only record it as the base. */
  | { action: 'record' }
  /** Nothing local and nothing to create: forget the base. */
  | { action: 'forget' }
  /** Local holds an edit the server has not seen: leave it; its push meets the server's rules. */
  | { action: 'keep-local' }
  | { action: 'delete' }
  /** Rename the local `from` (which holds exactly the expected content) to the path. */
  | { action: 'rename'; from: string }
  /** Create or replace the local path from the server (download, mkdir, symlink). */
  | { action: 'fetch' }
  /**
   * One of this client's own versions (`isOwnVersion`) that its disk has moved on from: the
   * disk is the truth. Take the version as the base (a delete: no base) and look at the path
   * again, so the difference is pushed over it instead of the version being brought back.
   */
  | { action: 'adopt' };

/**
 * Which versions in the feed a client made itself: those naming it as origin above `since`, the
 * server's head when its state first pushed (persisted with the state, started again by a
 * reset, since the server's numbering may have restarted).
 */
export interface OwnVersions {
  node: string;
  since: number;
}

/**
 * True for a version this client's own pushes made (a commit, or a parent the server recorded for
 * one). The client held it on its disk when it pushed it; if it has no base for it, the answer
 * to that push was lost (a kill or a cut while it was in flight), and whatever the disk holds
 * now is a later local change, never something to replace with that version. A version that
 * moved with a directory rename (it has `from`) is not one, even when the rename was ours: its
 * content is whatever the server held under the old name, which may be an edit made elsewhere
 * that we never had (seed 870: it is fetched, not overwritten).
 */
export function isOwnVersion(change: Change, own: OwnVersions | null): boolean {
  return own !== null && change.origin === own.node && change.seq > own.since && change.from === undefined;
}

/**
 * How a client applies one change from the feed.
 * `fromBase`/`fromLocal` describe the change's `from` path, when it has one: a rename moves the
 * local `from` only when it holds, clean, a version older than the rename (a failed pull of an
 * old rename is retried; a newer `from` was made after the rename and keeps its name). `isOwn`: the change
 * is one of this client's own versions (`isOwnVersion`): what would change the disk, or push
 * the local state against an older base, adopts it instead.
 */
export function decidePull(
  change: Change,
  base: BaseRecord | null,
  local: Entry | null,
  fromBase: BaseRecord | null = null,
  fromLocal: Entry | null = null,
  isOwn = false,
): PullDecision {
  const decision = decidePullFromDisk(change, base, local, fromBase, fromLocal);
  if (!isOwn) return decision;
  switch (decision.action) {
    case 'fetch':
    case 'delete':
    case 'rename':
    case 'keep-local':
      return { action: 'adopt' };
    default:
      return decision;
  }
}

function decidePullFromDisk(change: Change, base: BaseRecord | null, local: Entry | null, fromBase: BaseRecord | null, fromLocal: Entry | null): PullDecision {
  if (base !== null && base.seq >= change.seq) return { action: 'skip' };
  const isLocalClean = base === null ? local === null : isSameEntry(base.entry, local);
  if (change.entry === null) {
    if (local === null) return { action: 'forget' };
    return isLocalClean ? { action: 'delete' } : { action: 'keep-local' };
  }
  if (local !== null && isSameEntry(local, change.entry)) return { action: 'record' };
  if (local !== null && local.type === 'dir' && change.entry.type === 'dir') return { action: 'fetch' };
  if (!isLocalClean && local !== null) return { action: 'keep-local' };
  if (
    change.from !== undefined &&
    local === null &&
    fromLocal !== null &&
    change.entry.type === fromLocal.type &&
    hasSameContent(fromLocal, change.entry) &&
    fromBase !== null &&
    fromBase.seq < change.seq &&
    isSameEntry(fromBase.entry, fromLocal)
  ) {
    return { action: 'rename', from: change.from };
  }
  return { action: 'fetch' };
}

// ---------------------------------------------------------------------------------------------
// Ordering

function depth(path: string): number {
  let n = 0;
  for (const ch of path) if (ch === '/') n++;
  return n;
}

/**
 * Of a batch of ops: is `op` a delete under a directory that the batch replaces, by a file or
 * link put or by a rename onto it? Such a delete must be committed before what replaces the
 * directory: the server puts or renames over a directory only once it holds no live paths
 * (core/commit.ts: stale otherwise), and a stale put of our own version came back as a conflict
 * copy of our own directory (seed 3122).
 */
export function isDeleteUnderReplaced(ops: readonly PushOp[]): (op: PushOp) => boolean {
  const replaced = new Set(ops.flatMap((op) => (op.op === 'put' && op.entry.type !== 'dir' ? [op.path] : op.op === 'rename' ? [op.to] : [])));
  return (op) => {
    if (op.op !== 'delete') return false;
    const p = op.path;
    for (let slash = p.lastIndexOf('/'); slash > 0; slash = p.lastIndexOf('/', slash - 1)) {
      if (replaced.has(p.slice(0, slash))) return true;
    }
    return false;
  };
}

/**
 * The order in which a batch of ops is sent: directories are created parents first, then the
 * deletes under a directory that a file, a link or a rename replaces (`isDeleteUnderReplaced`),
 * then renames, then files and links, then the other deletes, children first. Within a group the
 * input order holds, so the result is deterministic.
 */
export function orderPushOps(ops: PushOp[]): PushOp[] {
  const isUnderReplaced = isDeleteUnderReplaced(ops);
  const rank = (op: PushOp): number => {
    if (op.op === 'put') return op.entry.type === 'dir' ? 0 : 3;
    if (op.op === 'rename') return 2;
    return isUnderReplaced(op) ? 1 : 4;
  };
  return ops
    .map((op, index) => ({ op, index }))
    .sort((a, b) => {
      const byRank = rank(a.op) - rank(b.op);
      if (byRank !== 0) return byRank;
      if (a.op.op === 'put' && a.op.entry.type === 'dir' && b.op.op === 'put') {
        const byDepth = depth(a.op.path) - depth(b.op.path);
        if (byDepth !== 0) return byDepth;
      }
      if (a.op.op === 'delete' && b.op.op === 'delete') {
        const byDepth = depth(b.op.path) - depth(a.op.path);
        if (byDepth !== 0) return byDepth;
      }
      return a.index - b.index;
    })
    .map(({ op }) => op);
}

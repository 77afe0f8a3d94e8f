/**
 * Push planning: from what a client observed on its disk for a batch of paths, and its base
 * index, to the ops it sends. Pure: no fs, no network, no clock.
 *
 * The rules that span paths live here:
 * - a vanished base path and a new path on the same inode (same type, same content) are a rename;
 * - what lies under a renamed directory moves with it: paths the server already holds under the
 *   old name are folded into the directory's rename;
 * - anything else under a renamed directory (a file the server never had, an edited or chmodded
 *   child, something new at the old name) is not folded and not dropped: it is returned in
 *   `recheck`, to be looked at again from disk once the rename is committed;
 * - the delete of a directory waits while a path inside it waits for a second look, and nothing
 *   is sent into a directory that waits;
 * - a path whose base only lost its fingerprint (same entry, new stat) gets its base re-stamped.
 */
import { isSameOrInside } from './paths.js';
import { decidePush, hasSameContent, isDeleteUnderReplaced, isSameEntry, isSameFingerprint, orderPushOps } from './reconcile.js';
import type { BaseRecord, Entry, PushOp, StatFingerprint } from './types.js';

/** One path as read from the local disk: its entry and its stat fingerprint (null for symlinks). */
export interface Observed {
  entry: Entry;
  stat: StatFingerprint | null;
}

/** Read-only view of a client's base index. */
export interface BaseView {
  get(path: string): BaseRecord | null;
  /** A base path whose recorded local inode is `ino`, or null. */
  pathOfInode(ino: number): string | null;
}

/** A plain-data BaseView over a map (tests, the simulation). */
export function baseViewOf(bases: ReadonlyMap<string, BaseRecord>): BaseView & { under(dir: string): string[] } {
  return {
    get: (p) => bases.get(p) ?? null,
    pathOfInode: (ino) => {
      for (const [p, b] of bases) if (b.stat?.ino === ino && b.entry.type !== 'symlink') return p;
      return null;
    },
    under: (dir) => [...bases.keys()].filter((p) => p !== dir && isSameOrInside(p, dir)),
  };
}

/** The `upload` of a file put whose content is still to be uploaded: the caller fills in the temp name. */
export const UPLOAD_PENDING = '';

export interface PushPlan {
  /** In the order they are to be committed (see orderPushOps). A file put whose content must be
   * uploaded has `upload: UPLOAD_PENDING` (the caller fills in the temp name); `upload: null` is metadata only. */
  ops: PushOp[];
  /** Bases to record as they are: the entry is unchanged, only the local fingerprint moved. */
  restat: Array<[string, BaseRecord]>;
  /** Paths left out of this batch that must be looked at again from disk after it. */
  recheck: string[];
}

/**
 * Plan the push of a batch.
 * - `observed`: every path looked at in this batch, with what is on disk now (null: nothing).
 *   A rename is only found when both its ends were looked at (the caller expands a new inode to
 *   the path it was at).
 * - `noRename`: paths whose last rename was stale; they go as put + delete.
 * The ops never carry an observation taken later than `observed`: the caller records bases from
 * these same observations.
 */
export function planPush(observed: ReadonlyMap<string, Observed | null>, bases: BaseView, noRename: ReadonlySet<string> = new Set()): PushPlan {
  const ops: PushOp[] = [];
  const consumed = new Set<string>();
  const recheck: string[] = [];
  const renamedDirs: Array<[string, string]> = [];
  // Parents before children, so that a directory's rename is known before its children are seen.
  const ordered = [...observed.keys()].sort(byDepthThenName);
  for (const p of ordered) {
    const local = observed.get(p) ?? null;
    if (local === null || local.stat === null || local.entry.type === 'symlink' || noRename.has(p)) continue;
    const base = bases.get(p);
    if (base !== null && base.stat?.ino === local.stat.ino) continue;
    const from = bases.pathOfInode(local.stat.ino);
    if (from === null || from === p || consumed.has(from) || !observed.has(from) || observed.get(from) !== null) continue;
    const fromBase = bases.get(from);
    if (fromBase === null || fromBase.entry.type !== local.entry.type || !hasSameContent(fromBase.entry, local.entry)) continue;
    if (isSameOrInside(p, from)) continue; // a directory cannot move into itself: put + delete
    const carrier = renamedDirs.find(([f, t]) => isSameOrInside(from, f) && isSameOrInside(p, t));
    if (carrier !== undefined && from.slice(carrier[0].length) === p.slice(carrier[1].length)) {
      // Moved along with its directory: the server moves it too. Its metadata may have changed.
      consumed.add(from).add(p);
      if (!isSameEntry(fromBase.entry, local.entry)) recheck.push(p);
      continue;
    }
    if (carrier !== undefined || renamedDirs.some(([f, t]) => isSameOrInside(p, t) || isSameOrInside(from, f))) {
      // Moved within or out of a renamed directory: only after the directory's rename can this
      // one be described to the server. Look at both ends again then.
      consumed.add(from).add(p);
      recheck.push(from, p);
      continue;
    }
    ops.push({ op: 'rename', from, to: p, base: fromBase.seq, toBase: base?.seq ?? null, entry: local.entry });
    consumed.add(from).add(p);
    if (local.entry.type === 'dir') renamedDirs.push([from, p]);
  }
  const restat: Array<[string, BaseRecord]> = [];
  for (const p of ordered) {
    if (consumed.has(p)) continue;
    const local = observed.get(p) ?? null;
    const base = bases.get(p);
    const carrier = renamedDirs.find(([f, t]) => isSameOrInside(p, f) || isSameOrInside(p, t));
    if (carrier !== undefined) {
      const [f, t] = carrier;
      if (isSameOrInside(p, f) && local === null) {
        // Gone from under the old name: moved with the directory (its new place is looked at
        // again after the rename) or deleted, which the look at the new place finds.
        recheck.push(t + p.slice(f.length));
        continue;
      }
      // New under the new name, or new again under the old one: the rename cannot carry it.
      recheck.push(p);
      continue;
    }
    const op = decidePush(p, base, local?.entry ?? null);
    if (op === null) {
      if (base !== null && local !== null && local.stat !== null && !isSameFingerprint(base.stat, local.stat)) restat.push([p, { ...base, stat: local.stat }]);
      continue;
    }
    if (op.op === 'put' && op.entry.type === 'file' && !(base?.entry.type === 'file' && hasSameContent(base.entry, op.entry))) {
      ops.push({ ...op, upload: UPLOAD_PENDING }); // filled in after the upload
    } else {
      ops.push(op); // directories, links, deletes, and metadata-only file puts
    }
  }
  // A directory cannot be deleted before what was inside it is accounted for: while a path under
  // it waits for a second look, the delete waits too (sent now, the server would refuse it, as
  // the directory still holds that path, and the client would restore the directory). And
  // nothing goes into a place that waits: the server would create that directory on its own.
  const deferred = new Set(recheck);
  let sent = ops;
  for (let changed = true; changed; ) {
    changed = false;
    const waiting = [...new Set(recheck)];
    const places = [...deferred];
    const isHoldingBack = (dir: string): boolean => waiting.some((q) => q !== dir && isSameOrInside(q, dir));
    const isIntoWaiting = (p: string): boolean => places.some((q) => q !== p && isSameOrInside(p, q));
    sent = sent.filter((op) => {
      const held = op.op === 'delete' ? isHoldingBack(op.path) : isIntoWaiting(op.op === 'put' ? op.path : op.to);
      if (!held) return true;
      if (op.op === 'rename') (recheck.push(op.from, op.to), deferred.add(op.to));
      else if (op.op === 'put') (recheck.push(op.path), deferred.add(op.path));
      else recheck.push(op.path);
      changed = true;
      return false;
    });
  }
  // Progress first: if everything would wait, nothing would ever unblock it; send the plan whole
  // (the server's rules then answer stale where it cannot apply, and that is re-synced).
  if (sent.length === 0 && ops.length > 0) return { ops: orderPushOps(ops), restat, recheck: [...new Set(recheck)] };
  return { ops: orderPushOps(sent), restat, recheck: [...new Set(recheck)] };
}

function byDepthThenName(a: string, b: string): number {
  const da = a.split('/').length;
  const db = b.split('/').length;
  if (da !== db) return da - db;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Do the children in the base go into the batch with this path? Yes when the base holds a directory
 * that is no directory on disk any more: gone, or replaced by a file or link. The deletes of the
 * children must be committed with (and before) what replaces the directory; looked at in a later
 * batch, they came after it, the server answered the put stale as the directory still held them,
 * and our own link came back as a conflict copy of our own directory (seed 3956).
 */
export function bringsBaseChildren(base: Entry | null, local: Entry | null): boolean {
  return base?.type === 'dir' && local?.type !== 'dir';
}

/** A planned batch split into the three phases in which the client commits it. */
export interface PushPhases {
  /** Committed first, in order: directories, the deletes under a directory the batch replaces, renames, metadata-only puts and links. */
  first: PushOp[];
  /** File puts whose content is uploaded first (committed as their uploads finish). */
  uploads: Array<Extract<PushOp, { op: 'put' }>>;
  /** The other deletes, children first. */
  last: PushOp[];
}

/**
 * Split ops (in `orderPushOps` order) into the phases the client commits them in. The deletes
 * under a directory that a file, link or rename of the batch replaces (`isDeleteUnderReplaced`)
 * go in the first phase, ahead of whatever replaces it: left with the other deletes, after the
 * uploads, they came too late, the server found the directory still full and answered the put
 * stale, and our own file came back as a conflict copy of our own directory (seed 3122).
 */
export function pushPhases(ops: readonly PushOp[]): PushPhases {
  const isUnderReplaced = isDeleteUnderReplaced(ops);
  const needsUpload = (op: PushOp): op is Extract<PushOp, { op: 'put' }> => op.op === 'put' && op.upload === UPLOAD_PENDING;
  return {
    first: ops.filter((op) => (op.op === 'delete' ? isUnderReplaced(op) : !needsUpload(op))),
    uploads: ops.filter(needsUpload),
    last: ops.filter((op) => op.op === 'delete' && !isUnderReplaced(op)),
  };
}

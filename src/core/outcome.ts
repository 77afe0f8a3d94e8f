/**
 * Outcome handling: what a client does with the server's answer to one pushed op. Pure: the
 * answer, the op, the observation the op was planned from and the base index in, edits of the
 * base index and follow-up work out. The caller carries them out in the order of the fields
 * below: `moveAside`, then the base edits, then `pull`, then marks `recheck` and walks
 * `rescanTrees`.
 *
 * The rule that keeps the base honest: a base records what was sent and the fingerprint observed
 * when the op was planned, never a later stat. Whatever changed on disk since then differs from
 * that fingerprint, so the next look finds it. And whatever the op moved on disk, or could not
 * carry, is looked at again (`recheck`, `rescanTrees`) until the base matches the disk.
 */
import { movedPath } from './paths.js';
import { isSameEntry } from './reconcile.js';
import type { BaseRecord, Change, PushOp, PushResult } from './types.js';
import type { Observed } from './plan.js';

/** Read-only base index, with the paths strictly inside a directory. */
export interface BaseTree {
  get(path: string): BaseRecord | null;
  under(dir: string): string[];
}

export interface PushOutcome {
  /** Rename the local file at `from` to `to` first (our version becomes the conflict copy). */
  moveAside: { from: string; to: string } | null;
  /** Base edits, applied in order: deletes first, then sets. */
  deleteBases: string[];
  setBases: Array<[string, BaseRecord]>;
  /** Re-apply the server's version of a path (forced: the local base no longer counts). */
  pull: Change | null;
  /** Paths to look at again from disk (they go back in the outbox). */
  recheck: string[];
  /** Directories whose whole subtree on disk is to be looked at again. */
  rescanTrees: string[];
  /** The op failed: record a task for `path`. */
  failure: { path: string; message: string; code: string; permanent: boolean } | null;
  /** A stale rename: push these paths as put + delete next time. */
  noRename: string[];
  /** One line for the log, or null. */
  log: { level: 'info' | 'warn'; message: string } | null;
}

function none(): PushOutcome {
  return { moveAside: null, deleteBases: [], setBases: [], pull: null, recheck: [], rescanTrees: [], failure: null, noRename: [], log: null };
}

/** The path an op is about (the target of a rename). */
export function pathOfOp(op: PushOp): string {
  return op.op === 'rename' ? op.to : op.path;
}

/**
 * Decide what to do with the answer `result` to `op`.
 * `observed` is what the op was planned from (the local state at `pathOfOp(op)`; null for a
 * delete). `bases` is the base index before this answer. `show` formats a path for the log.
 */
export function decidePushOutcome(
  op: PushOp,
  result: PushResult,
  observed: Observed | null,
  bases: BaseTree,
  show: (path: string) => string = (path) => path,
): PushOutcome {
  const out = decideOutcome(op, result, observed, bases, show);
  // A push that was taken (ok, same): every path it touched is looked at again from disk. The op
  // was planned from an observation that may be old by now (the path edited, renamed on or
  // deleted while the push was in flight), and the watcher may never report that (it drops a
  // create followed by a delete). A path whose disk still matches its new base is read once and
  // leaves the outbox. (A conflict or stale answer already re-checks what it leaves behind, and
  // its pull decides the path.)
  if (result.status !== 'ok' && result.status !== 'same') return out;
  const touched = op.op === 'rename' ? [op.to, op.from] : [op.path];
  out.recheck = [...new Set([...out.recheck, ...touched])];
  return out;
}

/**
 * The base of a child that moved with a directory rename we pushed, at its new path `target`.
 * The server moved its own version of the child, which need not be the one we agreed on: we may
 * have missed a change to it (made elsewhere while we were away). So the new seq is adopted only
 * when the version moved is the one our base records (`before`); otherwise the base keeps its
 * old seq, so the feed's version of the moved child is not skipped as already had: the pull
 * records it if the disk holds it, or brings the server's content. A child the server did not
 * move (it deleted the child meanwhile) loses its base: the look that follows pushes it as new.
 * Without a `moved` list (left out for its size) every child keeps its old seq. `moved` is what
 * the list says of `target` (null: not listed), undefined when there is no list.
 */
function movedChildBase(childBase: BaseRecord, moved: { seq: number; before?: number } | null | undefined): BaseRecord | null {
  if (moved === undefined) return childBase;
  if (moved === null) return null;
  return moved.before === childBase.seq ? { ...childBase, seq: moved.seq } : childBase;
}

function decideOutcome(
  op: PushOp,
  result: PushResult,
  observed: Observed | null,
  bases: BaseTree,
  show: (path: string) => string,
): PushOutcome {
  const p = pathOfOp(op);
  const out = none();
  const stat = observed?.stat ?? null;
  if (result.status === 'error') {
    out.failure = { path: p, code: result.code, message: result.message, permanent: result.permanent };
    return out;
  }
  if (result.status === 'ok') {
    if (op.op === 'delete') {
      out.deleteBases.push(op.path);
      out.log = { level: 'info', message: `pushed delete ${show(op.path)}` };
      return out;
    }
    if (op.op === 'rename') {
      out.deleteBases.push(op.from);
      const moved = result.moved === undefined ? null : new Map(result.moved.map(([path, seq, before]) => [path, { seq, before }]));
      for (const child of bases.under(op.from)) {
        const childBase = bases.get(child)!;
        const target = movedPath(child, op.from, op.to);
        out.deleteBases.push(child);
        const record = movedChildBase(childBase, moved === null ? undefined : (moved.get(target) ?? null));
        if (record !== null) out.setBases.push([target, record]);
        out.recheck.push(target); // verify what moved
      }
      out.setBases.push([p, { seq: result.seq, entry: op.entry, stat }]);
      // A directory that moved may hold what the rename could not carry (files new since the
      // plan, or moved in meanwhile): its subtree on disk is the truth.
      if (op.entry.type === 'dir') out.rescanTrees.push(op.to);
      out.log = { level: 'info', message: `pushed rename ${show(op.from)} -> ${show(op.to)}` };
      return out;
    }
    out.setBases.push([p, { seq: result.seq, entry: op.entry, stat }]);
    out.log = { level: 'info', message: `pushed ${show(p)}` };
    return out;
  }
  if (result.status === 'same') {
    if (op.op === 'delete') {
      out.deleteBases.push(op.path);
      return out;
    }
    if (result.entry === null) {
      // Nothing at the path on the server any more (an old server answers so): push it again.
      out.deleteBases.push(p);
      out.recheck.push(p);
      return out;
    }
    out.setBases.push([p, { seq: result.seq, entry: result.entry, stat }]);
    if (!isSameEntry(result.entry, op.entry)) out.recheck.push(p); // metadata still differs: push it
    if (op.op === 'rename') out.recheck.push(op.from);
    return out;
  }
  if (result.status === 'conflict') {
    // The server kept its version at the path; ours lives on as the conflict copy. Its base is
    // what we sent, with the fingerprint we planned from: an edit made since (even during the
    // move) differs from it, and the look at the copy that follows pushes that edit.
    const sent = op.op === 'delete' ? result.current.entry : op.entry;
    if (op.op !== 'delete') out.moveAside = { from: p, to: result.copy };
    out.deleteBases.push(p);
    if (sent !== null) out.setBases.push([result.copy, { seq: result.copySeq, entry: sent, stat }]);
    out.pull = { path: p, ...result.current };
    out.recheck.push(result.copy);
    if (op.op === 'rename') out.recheck.push(op.from);
    out.log = { level: 'warn', message: `conflict on ${show(p)}: the server had another version; ours is now ${show(result.copy)}` };
    return out;
  }
  // stale: the server's version moved on.
  if (op.op === 'rename') {
    out.noRename.push(op.to);
    out.recheck.push(op.to, op.from);
    return out;
  }
  out.deleteBases.push(p);
  if (result.current !== null) out.pull = { path: p, ...result.current };
  else out.recheck.push(p);
  out.log = { level: 'info', message: `${show(p)} changed on the server meanwhile: took the server's version` };
  return out;
}

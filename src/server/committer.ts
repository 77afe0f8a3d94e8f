/**
 * Committing a client's push on the server: the uploads are checked first (server/uploads.ts,
 * outside the folder lock), then under the lock each op is decided by the core
 * (`core/commit`: decideCommit) against what is on disk now (read first, as a local change),
 * placed on disk (fs/apply.ts, replaced versions kept), and recorded in the change log. The
 * answer goes back once the log is durable. It sees its folder only through a CommitContext.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Entry, MovedChild, PushOp, PushResult, StatFingerprint, Version } from '../core/types.js';
import { conflictCopyPath } from '../core/conflict.js';
import { decideCommit, renamedEntry } from '../core/commit.js';
import { hasSameContent } from '../core/reconcile.js';
import { otherLinkNames } from '../core/merge.js';
import { movedPath, parentOf } from '../core/paths.js';
import { permissionBits } from '../core/modes.js';
import { isPermanentFailure } from '../core/errors.js';
import { forEachLimited, type SerialLock } from '../node/lock.js';
import type { Logger } from '../node/log.js';
import { showPath } from '../node/log.js';
import { describeFsError } from '../node.js';
import { readLocal } from '../fs/scan.js';
import { movePath, placeDir, placeFile, placeSymlink, removePath, restampFile } from '../fs/apply.js';
import { safeChmod } from '../fs/safefs.js';
import type { ChangeLog, ServerRecord } from './changelog.js';
import type { ServerBlocks } from './delta.js';
import type { VersionStore } from './versions.js';
import { OpError, UploadChecks } from './uploads.js';

const VERIFY_CONCURRENCY = 8;
const APPLY_CONCURRENCY = 16;

/** What a commit needs of its folder. */
export interface CommitContext {
  readonly name: string;
  readonly root: string;
  readonly log: ChangeLog;
  readonly lock: SerialLock;
  readonly logger: Logger;
  readonly kept: VersionStore;
  readonly blocks: ServerBlocks;
  readonly paused: string | null;
  refreshPresence(): Promise<string | null>;
  /** Record what is on disk at `p` now (under the lock): a pushed op is decided against it. */
  absorbLocal(p: string): Promise<number>;
  /** Record what is on disk strictly under directory `dir` now, and what is recorded there (under the lock). */
  absorbLocalUnder(dir: string): Promise<number>;
  /** `.syncignore` was committed: read the rules again. */
  reloadIgnore(): Promise<void>;
  /** Flush the log, move the durable head, tell the clients. */
  commitDurably(): Promise<void>;
}

/** Strip the server-private fields from a record before it goes on the wire. */
function toWire(record: ServerRecord | null): Version | null {
  if (record === null) return null;
  const version: Version = { seq: record.seq, entry: record.entry, origin: record.origin };
  if (record.from !== undefined) version.from = record.from;
  return version;
}

export class Committer {
  private readonly uploads: UploadChecks;

  constructor(private readonly ctx: CommitContext) {
    this.uploads = new UploadChecks(ctx.root, ctx.blocks, ctx.log);
  }

  /**
   * A restamp (chmod, mtime) changes the inode under every name: the other recorded names of a
   * hard-linked file are read again, and recorded as local changes (no event names them).
   */
  private async absorbOtherLinks(p: string, stat: StatFingerprint | null): Promise<void> {
    if (stat === null) return;
    const links = (await fs.lstat(path.join(this.ctx.root, p)).catch(() => null))?.nlink ?? 1;
    if (links < 2) return;
    for (const other of otherLinkNames(p, links, this.ctx.log.livePathsOnInode(stat.ino))) await this.ctx.absorbLocal(other);
  }

  /** Record versions for parent directories that exist on disk but not (live) in the log. */
  async recordParents(p: string, origin: string): Promise<void> {
    const missing: string[] = [];
    for (let dir = parentOf(p); dir !== null; dir = parentOf(dir)) {
      if (this.ctx.log.get(dir)?.entry != null) break;
      missing.unshift(dir);
    }
    for (const dir of missing) {
      const st = await fs.lstat(path.join(this.ctx.root, dir));
      this.ctx.log.assign(dir, { type: 'dir', mode: permissionBits(st.mode) }, origin);
    }
  }

  private async placeEntry(p: string, entry: Entry, tmpAbs: string | null, node: string): Promise<StatFingerprint | null> {
    const keep = this.ctx.kept.keeper(node, 'replaced');
    if (entry.type === 'file') {
      if (tmpAbs !== null) return placeFile(this.ctx.root, tmpAbs, p, entry, keep);
      const stat = await restampFile(this.ctx.root, p, entry);
      await this.absorbOtherLinks(p, stat);
      return stat;
    }
    if (entry.type === 'dir') await placeDir(this.ctx.root, p, entry, keep);
    else await placeSymlink(this.ctx.root, p, entry.target, keep);
    return null;
  }

  private async commitPut(op: Extract<PushOp, { op: 'put' }>, node: string, tmpAbs: string | null): Promise<PushResult> {
    await this.ctx.absorbLocal(op.path);
    const current = this.ctx.log.get(op.path);
    const liveChildren = current?.entry?.type === 'dir' ? this.ctx.log.liveUnder(op.path).length : 0;
    const decision = decideCommit(op, { current, hasUpload: tmpAbs !== null, liveChildren, node });
    if (decision.action === 'stale') {
      // Only metadata was pushed, for content the server no longer holds: the server's wins.
      return { status: 'stale', current: toWire(current) };
    }
    if (decision.action === 'same' && current !== null) {
      if (tmpAbs !== null) await fs.rm(tmpAbs, { force: true });
      return { status: 'same', seq: current.seq, entry: current.entry };
    }
    if (decision.action === 'conflict' && current !== null) {
      const copy = conflictCopyPath(op.path, new Date(), node, (c) => this.ctx.log.get(c)?.entry != null);
      const stat = await this.placeEntry(copy, op.entry, tmpAbs, node);
      await this.recordParents(copy, node);
      const copySeq = this.ctx.log.assign(copy, op.entry, node, { stat });
      this.ctx.logger.warn(`conflict on ${showPath(op.path)}: kept the server's version, stored ${node}'s as ${showPath(copy)}`);
      return { status: 'conflict', copy, copySeq, current: toWire(current)! };
    }
    const stat = await this.placeEntry(op.path, op.entry, tmpAbs, node);
    await this.recordParents(op.path, node);
    const seq = this.ctx.log.assign(op.path, op.entry, node, { stat });
    return { status: 'ok', seq };
  }

  private async commitDelete(op: Extract<PushOp, { op: 'delete' }>, node: string): Promise<PushResult> {
    await this.ctx.absorbLocal(op.path);
    const current = this.ctx.log.get(op.path);
    const liveChildren = current?.entry?.type === 'dir' ? this.ctx.log.liveUnder(op.path).length : 0;
    const decision = decideCommit(op, { current, liveChildren, node });
    if (decision.action === 'same') return { status: 'same', seq: current?.seq ?? 0, entry: current?.entry ?? null };
    if (decision.action !== 'apply') return { status: 'stale', current: toWire(current) };
    const removed = await removePath(this.ctx.root, op.path, this.ctx.kept.keeper(node, 'deleted'));
    if (!removed) return { status: 'stale', current: toWire(current) };
    // A directory's version brings back what was deleted with it.
    if (current?.entry?.type === 'dir') this.ctx.kept.keepDir(op.path, current.entry.mode, node, new Date());
    const seq = this.ctx.log.assign(op.path, null, node);
    return { status: 'ok', seq };
  }

  private async commitRename(op: Extract<PushOp, { op: 'rename' }>, node: string): Promise<PushResult> {
    await this.ctx.absorbLocal(op.from);
    // A directory moves with everything on disk under it: what the hub's user put there and no
    // look has recorded yet is recorded first, so it moves in the log too (seed 8144: a file
    // written into the directory just before the move stayed on the hub's disk only).
    if (this.ctx.log.get(op.from)?.entry?.type === 'dir') await this.ctx.absorbLocalUnder(op.from);
    await this.ctx.absorbLocal(op.to);
    const currentFrom = this.ctx.log.get(op.from);
    const currentTo = this.ctx.log.get(op.to);
    const decision = decideCommit(op, {
      current: currentFrom,
      currentTo,
      liveChildrenOfTarget: currentTo?.entry?.type === 'dir' ? this.ctx.log.liveUnder(op.to).length : 0,
    });
    if (decision.action === 'refuse') throw new OpError(decision.code, decision.message, true);
    if (decision.action !== 'apply' || currentFrom?.entry == null) return { status: 'stale', current: toWire(currentFrom) };
    const children = currentFrom.entry.type === 'dir' ? this.ctx.log.liveUnder(op.from).reverse() : [];
    // What rename(2) cannot replace goes first (a directory that still holds something is no target).
    if (decision.clearTarget === true && !(await removePath(this.ctx.root, op.to, this.ctx.kept.keeper(node, 'replaced')))) return { status: 'stale', current: toWire(currentFrom) };
    await movePath(this.ctx.root, op.from, op.to, this.ctx.kept.keeper(node, 'replaced'));
    await this.recordParents(op.to, node);
    // A chmod (or touch) made right after the rename travels with it: the moved entry gets it.
    let restamped = false;
    let stat: StatFingerprint | null = null;
    if (decision.restamp?.type === 'file') {
      stat = await restampFile(this.ctx.root, op.to, decision.restamp).catch(() => null);
      restamped = stat !== null;
      await this.absorbOtherLinks(op.to, stat);
    }
    if (decision.restamp?.type === 'dir') restamped = await safeChmod(this.ctx.root, op.to, decision.restamp.mode).then(() => true, () => false);
    // A file written around the move (after the look before this commit) keeps no fingerprint that
    // would pass its new bytes for the moved version; they are recorded as the hub's edit below.
    let changedWhileMoved = false;
    if (currentFrom.entry.type === 'file' && stat === null) {
      const read = await readLocal(this.ctx.root, op.to, {}).then((l) => (l !== null && l !== 'unsupported' ? l : null));
      changedWhileMoved = !hasSameContent(read?.entry ?? null, currentFrom.entry);
      stat = changedWhileMoved ? null : (read?.stat ?? null);
    }
    // The new paths come before the tombstones, so a client applying the feed in order renames
    // its local copy instead of deleting it.
    const seq = this.ctx.log.assign(op.to, renamedEntry(currentFrom.entry, op.entry, restamped), node, { from: op.from, stat });
    // Each moved child with the seq it had before: the client adopts the new seq only for a child
    // it knew in that version (core/outcome.ts). A directory's list is sent even when empty: a
    // child the client has a base for and that is not listed was deleted here meanwhile.
    const moved: MovedChild[] = [];
    for (const child of children) {
      const childRecord = this.ctx.log.get(child)!;
      const target = movedPath(child, op.from, op.to);
      moved.push([target, this.ctx.log.assign(target, childRecord.entry, node, { from: child, stat: childRecord.stat }), childRecord.seq]);
    }
    for (const child of [...children].reverse()) this.ctx.log.assign(child, null, node);
    this.ctx.log.assign(op.from, null, node);
    if (changedWhileMoved) await this.ctx.absorbLocal(op.to);
    return currentFrom.entry.type === 'dir' ? { status: 'ok', seq, moved } : { status: 'ok', seq };
  }

  /** Commit a client's ops in order. Slow checks (hashing uploads) run before taking the lock. */
  async commit(ops: PushOp[], node: string): Promise<PushResult[]> {
    const started = Date.now();
    const verified: Array<string | Error | null> = ops.map(() => null);
    const bundles = new Map<string, number[]>();
    for (const [i, op] of ops.entries()) {
      if (op.op === 'put' && op.upload !== null && op.part !== undefined) bundles.set(op.upload, [...(bundles.get(op.upload) ?? []), i]);
    }
    for (const [upload, indexes] of bundles) await this.uploads.splitBundle(upload, indexes, ops, verified);
    await forEachLimited(ops.keys(), VERIFY_CONCURRENCY, async (i) => {
      const op = ops[i]!;
      if (op.op !== 'put' || op.upload === null || op.part !== undefined) return;
      try {
        verified[i] = op.delta === true ? await this.uploads.assembleDelta(op.upload, op) : await this.uploads.verifyUpload(op.upload, op.entry);
      } catch (err) {
        verified[i] = err as Error;
      }
    });
    const verifiedAt = Date.now();
    const applied = await this.ctx.lock.run(async () => {
      const lockedAt = Date.now();
      const results: PushResult[] = [];
      if ((await this.ctx.refreshPresence()) !== null) {
        for (const _ of ops) results.push({ status: 'error', code: 'FOLDER_PAUSED', message: `folder ${this.ctx.name} is paused on the server: ${this.ctx.paused}`, permanent: false });
        return { results, lockedAt, appliedAt: lockedAt };
      }
      // Puts of files and links on distinct paths are independent: they run side by side.
      // Anything else (directories, deletes, renames) waits for what came before it.
      const inFlight = new Map<string, Promise<void>>();
      const settleAll = async (): Promise<void> => {
        await Promise.all(inFlight.values());
      };
      const commitOne = async (i: number, op: PushOp): Promise<void> => {
        const upload = verified[i] ?? null;
        try {
          if (upload instanceof Error) throw upload;
          const result =
            op.op === 'put' ? await this.commitPut(op, node, upload) : op.op === 'delete' ? await this.commitDelete(op, node) : await this.commitRename(op, node);
          results[i] = result;
          if (result.status === 'ok' || result.status === 'conflict') {
            const what = op.op === 'rename' ? `rename ${showPath(op.from)} -> ${showPath(op.to)}` : `${op.op} ${showPath(op.path)}`;
            this.ctx.logger.debug(`committed ${what} from ${node}`);
          }
          if (op.op === 'put' && op.path === '.syncignore') await this.ctx.reloadIgnore();
        } catch (err) {
          results[i] = toErrorResult(err);
          const where = op.op === 'rename' ? `${showPath(op.from)} -> ${showPath(op.to)}` : showPath(op.path);
          this.ctx.logger.warn(`${op.op} ${where} from ${node} failed: ${(err as Error).message}`);
          if (upload !== null && !(upload instanceof Error)) await fs.rm(upload, { force: true });
        }
      };
      for (const [i, op] of ops.entries()) {
        const isIndependent = op.op === 'put' && op.entry.type !== 'dir' && !inFlight.has(op.path);
        if (!isIndependent) {
          await settleAll();
          await commitOne(i, op);
          continue;
        }
        while (inFlight.size >= APPLY_CONCURRENCY) await Promise.race(inFlight.values());
        inFlight.set(op.path, commitOne(i, op).finally(() => inFlight.delete(op.path)));
      }
      await settleAll();
      const appliedAt = Date.now();
      return { results, lockedAt, appliedAt };
    });
    // Answered only once durable; the lock is free meanwhile for the next commit.
    await this.ctx.commitDurably();
    this.ctx.logger.debug(
      `push of ${ops.length} op(s) from ${node}: verify ${verifiedAt - started} ms, wait ${applied.lockedAt - verifiedAt} ms, ` +
        `apply ${applied.appliedAt - applied.lockedAt} ms, flush ${Date.now() - applied.appliedAt} ms`,
    );
    return applied.results;
  }
}

/**
 * The wire allows 4096 bytes per message; an fs error naming a long absolute path can exceed
 * that, and one invalid result would fail the whole push. 1000 code points are at most 4000 bytes.
 */
function boundMessage(message: string): string {
  const points = [...message];
  return points.length <= 1000 ? message : `${points.slice(0, 999).join('')}…`;
}

function toErrorResult(err: unknown): PushResult {
  if (err instanceof OpError) return { status: 'error', code: err.code, message: boundMessage(err.message), permanent: err.permanent };
  const code = (err as { code?: unknown }).code;
  const message = boundMessage(describeFsError(err));
  return {
    status: 'error',
    code: typeof code === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(code) ? code : 'INTERNAL',
    message,
    permanent: isPermanentFailure(code, 'commit'),
  };
}

/**
 * The pusher of a client's folder: takes paths off the outbox, reads them (widening to subtrees
 * and rename partners), asks the core what to push (`core/plan`), uploads (client/upload.ts),
 * commits in chunks pipelined with the uploads, and applies the server's answers
 * (`core/outcome`). What could not be carried, and every subtree that moved meanwhile, goes back
 * in the outbox to be read from disk again (DESIGN: Convergence). It sees its folder only
 * through a PushContext.
 */
import type { BaseRecord, PushOp, PushResult, StatFingerprint } from '../core/types.js';
import { bringsBaseChildren, planPush, pushPhases, UPLOAD_PENDING } from '../core/plan.js';
import { decidePushOutcome, pathOfOp } from '../core/outcome.js';
import { linkNamesToLookAt } from '../core/merge.js';
import { outermostPaths } from '../core/paths.js';
import { DELTA_MIN_SIZE } from '../core/blocks.js';
import { DelayedBatch, forEachLimited } from '../node/lock.js';
import { showPath } from '../node/log.js';
import { BUNDLE_FILE_MAX } from '../rpc.js';
import { walkTree, type LocalState } from '../fs/scan.js';
import { movePath } from '../fs/apply.js';
import { lstatUnderRoot } from '../fs/presence.js';
import { readInFolder } from '../folder/base.js';
import { groupBySize } from '../wire/bundles.js';
import { MAX_PAGE_BYTES, jsonBytes } from '../wire/budget.js';
import { unsendableReason } from '../wire/unsendable.js';
import { freeConflictTarget } from './conflictmove.js';
import { classify, type FolderConnection, type PushContext } from './context.js';
import { uploadBundle, uploadOne, type UploadContext } from './upload.js';

/**
 * What `readPath` found at a path: a state to compare with the base, nothing (absent, or only
 * reachable through a symlinked parent), a socket, FIFO or device (never synced), or a path the
 * ignore rules exclude.
 */
export type PathReading =
  | { kind: 'present'; state: LocalState }
  | { kind: 'absent' }
  | { kind: 'unsupported' }
  | { kind: 'ignored' };

const PUSH_BATCH = 2000;
const COMMIT_CHUNK = 500;
const TRANSFER_CONCURRENCY = 32;
const READ_CONCURRENCY = 32;
/**
 * A subtree that moved or appeared during a push, and every path a push recorded as synced, is
 * looked at again this long after: well after the watcher has delivered the batch that was open
 * when it was read (@parcel/watcher closes a batch 50 ms after the last event, or 500 ms after
 * the previous batch, and drops a path created and removed within one batch without a word).
 */
const SECOND_LOOK_MS = 1500;
/** Small files per bundle, and bytes: a bundle is one SFTP transfer and one commit (push). */
const PUSH_BUNDLE_FILES = 256;
const PUSH_BUNDLE_BYTES = 4 * 1024 * 1024;
const BUNDLE_CONCURRENCY = 2;

function opsBytes(ops: PushOp[]): number {
  return ops.reduce((sum, op) => sum + jsonBytes(op), 0);
}

export class Pusher {
  private pushScheduled = false;
  private pushing = false;
  /** Paths whose last rename attempt was stale: push them as put + delete. */
  private readonly noRename = new Set<string>();
  /** What the uploads need: the folder, and where to record a failure. */
  private readonly uploads: UploadContext;

  constructor(private readonly ctx: PushContext) {
    this.uploads = {
      name: ctx.name,
      root: ctx.root,
      state: ctx.state,
      logger: ctx.logger,
      beginTransfer: (p, direction, total) => ctx.beginTransfer(p, direction, total),
      recordPushFailure: (p, err) => this.recordPushFailure(p, err),
    };
  }

  /** Cancel the timers (the second look); the folder is stopping. */
  stop(): void {
    this.secondLook.cancel();
  }

  schedulePush(delayMs = 0): void {
    if (this.pushScheduled) return;
    this.pushScheduled = true;
    setTimeout(() => {
      this.pushScheduled = false;
      void this.pushLoop();
    }, delayMs);
  }

  private async pushLoop(): Promise<void> {
    if (this.pushing) {
      this.pushScheduled = false;
      setTimeout(() => this.schedulePush(), 20);
      return;
    }
    this.pushing = true;
    try {
      for (;;) {
        const conn = this.ctx.connection();
        if (conn === null) return;
        const batch = this.ctx.state.takeDirty(PUSH_BATCH);
        if (batch.length === 0) break;
        const progressed = await this.ctx.lock.run(() => this.pushBatch(conn, batch));
        if (!progressed) {
          this.ctx.scheduleRetry();
          return;
        }
      }
      // What is left waits for its backoff.
      if (this.ctx.state.pendingCount > 0) this.ctx.scheduleRetry();
    } catch (err) {
      this.ctx.logger.warn(`push: ${(err as Error).message}`);
      this.ctx.scheduleRetry();
    } finally {
      this.pushing = false;
    }
  }

  /**
   * Read a path and check the ignore rules. With `deferHash`, a changed file whose content cannot
   * equal its base nor the base of the path its inode was at (the sizes differ) is not hashed:
   * its hash is DEFERRED_HASH and the upload, which reads it anyway, supplies it.
   */
  async readPath(p: string, base: BaseRecord | null, deferHash = false): Promise<PathReading> {
    const mayMatch = (fp: StatFingerprint): boolean => {
      // A large edit of a file is read once, by its delta upload, which also finds out if it changed.
      if (base?.entry.type === 'file' && fp.size >= DELTA_MIN_SIZE) return false;
      if (base?.entry.type === 'file' && base.entry.size === fp.size) return true;
      const from = this.ctx.state.pathOfInode(fp.ino);
      const fromEntry = from === null ? null : this.ctx.state.getBase(from)?.entry;
      return fromEntry?.type === 'file' && fromEntry.size === fp.size;
    };
    const local = await readInFolder(this.ctx.root, p, {
      knownStat: base?.stat ?? null,
      knownHash: base?.entry.type === 'file' ? base.entry.hash : null,
      deferHash: deferHash ? (fp) => !mayMatch(fp) : undefined,
    });
    if (local === 'unsupported') return { kind: 'unsupported' };
    if (local === null) return this.ctx.ignore.isIgnored(p, base?.entry.type === 'dir') ? { kind: 'ignored' } : { kind: 'absent' };
    return this.ctx.ignore.isIgnored(p, local.entry.type === 'dir') ? { kind: 'ignored' } : { kind: 'present', state: local };
  }

  /**
   * Look at a batch of dirty paths, push what differs from the base, apply the answers.
   * Returns false when nothing could be pushed (link down, paused): the caller backs off.
   */
  private async pushBatch(conn: FolderConnection, batch: Array<[string, number]>): Promise<boolean> {
    if ((await this.ctx.refreshPresence()) !== null) return false;
    const startedAt = Date.now();
    const generations = new Map(batch);
    // A deleted directory takes its whole subtree with it; a new one brings its subtree.
    const seen = new Set<string>(generations.keys());
    const appeared: string[] = [];
    const locals = new Map<string, LocalState | null>();
    let wave = [...generations.keys()];
    while (wave.length > 0) {
      const next: string[] = [];
      const expand = (p: string): void => {
        if (!seen.has(p)) (seen.add(p), next.push(p));
      };
      const newDirs: string[] = [];
      await forEachLimited(wave, READ_CONCURRENCY, async (p) => {
        // A name the wire rejects never goes into a push (it would fail the whole batch).
        if (await this.refuseUnsendable(p)) return;
        const base = this.ctx.state.getBase(p);
        let reading: PathReading;
        try {
          reading = await this.readPath(p, base, true);
        } catch (err) {
          this.recordPushFailure(p, err);
          return;
        }
        if (reading.kind === 'ignored') return;
        if (reading.kind === 'unsupported') {
          this.ctx.logger.warn(`skipped ${showPath(p)}: sockets, FIFOs and devices are not synced`);
          return;
        }
        const local = reading.kind === 'present' ? reading.state : null;
        locals.set(p, local);
        if (bringsBaseChildren(base?.entry ?? null, local?.entry ?? null)) for (const child of this.ctx.state.baseUnder(p)) expand(child);
        // A path on a known inode may be the far end of a rename: look at where that inode was.
        if (local !== null && local.stat !== null && base?.stat?.ino !== local.stat.ino) {
          const from = this.ctx.state.pathOfInode(local.stat.ino);
          if (from !== null) expand(from);
        }
        if (local?.entry.type === 'dir' && base === null) newDirs.push(p);
        // Hard links: an edit through one name changes every other name of the inode.
        for (const other of linkNamesToLookAt(p, base, local, (ino) => this.ctx.state.pathsOfInode(ino))) expand(other);
      });
      // Only the outermost new directories need a walk: it covers the ones inside them.
      for (const dir of outermostPaths(newDirs)) {
        for await (const item of walkTree(this.ctx.root, { ignore: this.ctx.ignore, under: dir })) if (item.path !== dir) expand(item.path);
        // What a walk found, no event may ever report again (the watcher learns of a new
        // directory late, and drops a create followed by a delete): look at it once more.
        appeared.push(dir);
      }
      wave = next;
    }

    const readAt = Date.now();
    const plan = planPush(locals, this.bases, this.noRename);
    this.noRename.clear();
    for (const [p, record] of plan.restat) this.ctx.state.setBase(p, record);
    const ops = plan.ops;
    // A path looked at that needs no op has nothing left to retry: an old failure of it is over
    // (else it stays failed, and in the outbox, for ever: the push loop takes it again and again).
    const opPaths = new Set(ops.flatMap((op) => (op.op === 'rename' ? [op.from, op.to] : [op.path])));
    for (const p of locals.keys()) if (!opPaths.has(p)) this.ctx.state.clearFailure(p, 'push');
    this.ctx.logger.debug(`push batch: ${batch.length} hinted, ${locals.size} read in ${readAt - startedAt} ms, ${ops.length} op(s)`);
    let progressed = ops.length === 0;
    if (ops.length > 0) progressed = await this.runOps(conn, ops, locals);
    for (const [p, generation] of batch) {
      if (!this.ctx.state.failed.some((t) => t.path === p && t.op === 'push' && !t.permanent)) this.ctx.state.clearDirty(p, generation);
    }
    // What the plan could not carry, and every subtree that moved or appeared, is looked at
    // again from disk: now, and once more a moment later (events about it may never come).
    this.ctx.state.markDirty(plan.recheck);
    if (progressed) for (const dir of appeared) this.movedTrees.add(dir);
    const trees = await this.rescanMovedTrees();
    if (trees.length > 0) this.secondLook.add(trees);
    await this.ctx.state.flush();
    return progressed;
  }

  /** The base index as the core sees it. */
  private readonly bases = {
    get: (p: string) => this.ctx.state.getBase(p),
    pathOfInode: (ino: number) => this.ctx.state.pathOfInode(ino),
    under: (dir: string) => this.ctx.state.baseUnder(dir),
  };

  /** Subtrees that moved during this batch: what is on disk under them goes back in the outbox. */
  private readonly movedTrees = new Set<string>();

  /** Mark every path under the moved trees, on disk or in the base, dirty. Returns the trees. */
  private async rescanMovedTrees(): Promise<string[]> {
    const trees = [...this.movedTrees];
    this.movedTrees.clear();
    const outermost = outermostPaths(trees);
    for (const tree of outermost) {
      const found: string[] = [tree, ...this.ctx.state.baseUnder(tree)];
      try {
        for await (const item of walkTree(this.ctx.root, { ignore: this.ctx.ignore, under: tree })) found.push(item.path);
      } catch (err) {
        this.ctx.logger.debug(`rescan of ${showPath(tree)}: ${(err as Error).message}`);
      }
      this.ctx.state.markDirty(found);
    }
    return outermost;
  }

  /** The second look at trees that moved or appeared, and at what pushes recorded, a moment after the first. */
  private readonly secondLook = new DelayedBatch<string>(SECOND_LOOK_MS, (due) => {
    void this.ctx.lock
      .run(async () => {
        for (const tree of due) this.movedTrees.add(tree);
        await this.rescanMovedTrees();
      })
      .then(() => this.schedulePush(), (err: unknown) => this.ctx.logger.debug(`rescan: ${(err as Error).message}`));
  });

  /**
   * Upload what needs uploading and commit in chunks, applying the answers. Commits are
   * pipelined with uploads: whenever no commit is in flight, everything uploaded so far is
   * committed, so the other clients start pulling while this one is still pushing. Small files
   * go in bundles; the ops of one bundle are always committed together (the server reads the
   * bundle once and removes it).
   */
  private async runOps(conn: FolderConnection, ops: PushOp[], locals: Map<string, LocalState | null>): Promise<boolean> {
    // Durable before anything is committed: an answer lost to a kill or a cut then still leaves
    // the versions this push makes recognisable as ours (core/reconcile `isOwnVersion`).
    await this.ctx.state.beginOwnVersions(conn.sessionHead);
    let anyDone = false;
    const ready: PushOp[][] = [];
    const running = new Set<Promise<void>>();
    // One commit at a time while order matters (directories, renames, deletes); two while file
    // puts on distinct paths are committed, so the server applies one while it writes the other.
    let maxRunning = 1;
    const pump = (): void => {
      while (running.size < maxRunning && ready.length > 0) {
        const chunk = ready.shift()!;
        // Bounded by bytes too: ops of long control-character names would pass the line limit.
        let bytes = opsBytes(chunk);
        while (ready.length > 0 && chunk.length + ready[0]!.length <= COMMIT_CHUNK && bytes + opsBytes(ready[0]!) <= MAX_PAGE_BYTES) {
          bytes += opsBytes(ready[0]!);
          chunk.push(...ready.shift()!);
        }
        const commit: Promise<void> = this.commitChunk(conn, chunk, locals)
          .then(
            (done) => {
              anyDone ||= done;
            },
            (err: unknown) => this.ctx.logger.warn(`commit: ${(err as Error).message}`),
          )
          .finally(() => {
            running.delete(commit);
            pump();
          });
        running.add(commit);
      }
    };
    const drain = async (): Promise<void> => {
      for (pump(); running.size > 0; pump()) await Promise.race(running);
    };
    const isBundled = (op: Extract<PushOp, { op: 'put' }>): boolean => op.entry.type === 'file' && op.entry.size <= BUNDLE_FILE_MAX;
    // Directories, the deletes under a directory this batch replaces, and renames first (parents
    // exist before children arrive, a replaced directory is empty before it is replaced); the
    // uploaded files; the other deletes last (core/plan.ts: pushPhases).
    const phases = pushPhases(ops);
    for (const op of phases.first) ready.push([op]);
    await drain();
    const uploads = phases.uploads;
    const bundles = groupBySize(uploads.filter(isBundled), (op) => (op.entry.type === 'file' ? op.entry.size : 0), PUSH_BUNDLE_FILES, PUSH_BUNDLE_BYTES);
    maxRunning = 2;
    await Promise.all([
      forEachLimited(bundles, BUNDLE_CONCURRENCY, async (group) => {
        const uploaded = await uploadBundle(this.uploads, conn, group, locals);
        if (uploaded.length === 0) return;
        ready.push(uploaded);
        pump();
      }),
      forEachLimited(
        uploads.filter((op) => !isBundled(op)),
        TRANSFER_CONCURRENCY,
        async (op) => {
          const uploaded = await uploadOne(this.uploads, conn, op, locals);
          if (uploaded === null) return;
          ready.push([uploaded]);
          pump();
        },
      ),
    ]);
    await drain();
    maxRunning = 1;
    for (const op of phases.last) ready.push([op]);
    await drain();
    return anyDone;
  }

  /**
   * True when `p` is a name the wire rejects (see wire/unsendable): one permanent failed task
   * while it is on disk and not ignored, none once it is gone.
   */
  private async refuseUnsendable(p: string): Promise<boolean> {
    const reason = unsendableReason(p);
    if (reason === null) return false;
    const st = await lstatUnderRoot(this.ctx.root, p);
    if (st === null || this.ctx.ignore.isIgnored(p, st.isDirectory())) this.ctx.state.clearFailure(p, 'push');
    else if (!this.ctx.state.failed.some((t) => t.path === p && t.op === 'push')) this.recordPushTask(p, reason, true, 'not sent');
    return true;
  }

  recordPushFailure(p: string, err: unknown): void {
    const { message, permanent } = classify(err, 'push');
    this.recordPushTask(p, message, permanent, 'failed');
  }

  /**
   * A push that failed: a task with its backoff, and, unless it is permanent, the path back in
   * the outbox (it may have come from a walk, not from the outbox): the outbox keeps the retry
   * timer armed, and `takeDirty` holds the path back until its backoff is over.
   */
  private recordPushTask(p: string, lastError: string, permanent: boolean, how: string, shown = lastError): void {
    const task = this.ctx.state.recordFailure({ path: p, op: 'push', lastError, permanent }, Date.now());
    if (!permanent) this.ctx.state.markDirty([p]);
    this.ctx.logger.warn(`push ${showPath(p)} ${how} (attempt ${task.attempts}${permanent ? ', permanent' : ''}): ${shown}`);
  }

  private async commitChunk(conn: FolderConnection, ops: PushOp[], locals: Map<string, LocalState | null>): Promise<boolean> {
    let results: PushResult[];
    const sentAt = Date.now();
    this.ctx.unanswered.sending(ops, conn);
    try {
      ({ results } = await conn.peer.request('push', { folder: this.ctx.name, ops }, 600_000));
      this.ctx.unanswered.answered(ops);
      this.ctx.logger.debug(`commit of ${ops.length} op(s) took ${Date.now() - sentAt} ms`);
    } catch (err) {
      for (const op of ops) this.ctx.state.markDirty([op.op === 'rename' ? op.to : op.path]);
      for (const op of ops) if (op.op === 'rename') this.ctx.state.markDirty([op.from]);
      this.ctx.logger.warn(`push to server failed: ${(err as Error).message}`);
      return false;
    }
    for (const [i, op] of ops.entries()) {
      const result = results[i];
      if (result === undefined) continue;
      try {
        await this.applyPushResult(conn, op, result, locals);
      } catch (err) {
        this.recordPushFailure(op.op === 'rename' ? op.to : op.path, err);
      }
    }
    this.ctx.state.touchLastSync();
    return true;
  }

  private async applyPushResult(conn: FolderConnection, op: PushOp, result: PushResult, locals: Map<string, LocalState | null>): Promise<void> {
    const p = pathOfOp(op);
    const out = decidePushOutcome(op, result, locals.get(p) ?? null, this.bases, showPath);
    if (out.failure !== null) {
      const { code, message, permanent } = out.failure;
      this.recordPushTask(p, `${code}: ${message}`, permanent, 'refused by the server', message);
      return;
    }
    this.ctx.state.clearFailure(p, 'push');
    if (out.moveAside !== null) {
      // The server names the copy: never replace what is at that name here (client/conflictmove).
      const { from, to } = out.moveAside;
      const target = await freeConflictTarget(this.ctx.root, to);
      await movePath(this.ctx.root, from, target);
      if (target !== to) {
        out.setBases = out.setBases.filter(([q]) => q !== to);
        out.recheck.push(target);
        this.ctx.logger.warn(`conflict copy of ${showPath(from)}: the server named ${showPath(to)}, which exists here and is kept; ours is ${showPath(target)}`);
      }
    }
    for (const q of out.deleteBases) this.ctx.state.deleteBase(q);
    for (const [q, record] of out.setBases) this.ctx.state.setBase(q, record);
    // It may have been found by a walk before the watcher reported its creation: were it removed
    // within that same batch of events, no event would ever come. Read it once more, later.
    this.secondLook.add(out.setBases.map(([q]) => q));
    for (const q of out.noRename) this.noRename.add(q);
    this.ctx.state.markDirty(out.recheck);
    for (const tree of out.rescanTrees) this.movedTrees.add(tree);
    if (out.log !== null) this.ctx.logger[out.log.level](out.log.message);
    if (out.pull !== null) await this.ctx.pullIgnoringBase(conn, out.pull);
  }
}

/**
 * A client's shell in the simulation: what src/client.ts (SyncedFolder, SyncClient) does around
 * the pure core, step by step, yielding wherever the real code awaits a disk or network call.
 * Push: take dirty paths, read them (widening to subtrees and rename partners), plan ops,
 * upload, commit, apply the results. Pull: page through the feed, decide with decidePull, place
 * files through a temp file. Plus start-up (temp cleanup, finishing an interrupted pull, scan
 * against the base), reconnects with backoff, failure backoff and retries.
 */
import { isPermanentFailure } from '../../src/core/errors.js';
import type { BaseRecord, Change, Entry, PushOp, PushResult, StatFingerprint } from '../../src/core/types.js';
import { decidePull, hasSameContent, isOwnVersion, isSameEntry } from '../../src/core/reconcile.js';
import { bringsBaseChildren, planPush, pushPhases } from '../../src/core/plan.js';
import { decidePushOutcome, pathOfOp } from '../../src/core/outcome.js';
import { basesForPulledRename, decideInterruptedPull, linkNamesToLookAt, moveBases, pullsStillFailing, otherLinkNames, pathsToPushAfterResync } from '../../src/core/merge.js';
import { conflictCopyPath, conflictTargetCandidates } from '../../src/core/conflict.js';
import { outermostPaths } from '../../src/core/paths.js';
import { UnansweredPushes } from '../../src/core/unanswered.js';
import { FsError, type MemFs } from './fs.js';
import {
  cleanTempDir,
  hashOf,
  isReachedThroughLink,
  isRecordedFile,
  checkParents,
  movePath,
  placeDirIfFree,
  removeEmptyDir,
  readLocal,
  restampFile,
  sameFp,
  writeTemp,
  type LocalState,
} from './apply.js';
import { movePulledPath, placePulledFile, placePulledSymlink, recoverAsides, removePulledPath } from './place.js';
import type { PlaceExpectation, PlaceResult } from '../../src/fs/place.js';
import type { Link, Network } from './network.js';
import { type Persisted, SimClientState } from './clientstate.js';
import { type Proc, type Scheduler, SimDelayedBatch, SimLock, pause, sleep, waitUntil } from './scheduler.js';
import type { ServerShell } from './server.js';

const PUSH_BATCH = 2000;
/** A subtree that moved or appeared during a push is looked at again this long after (SECOND_LOOK_MS). */
const SECOND_LOOK_MS = 1500;
const PULL_PAGE = 2000;
function classify(err: unknown, op: 'push' | 'pull'): { message: string; permanent: boolean } {
  return { message: (err as Error).message, permanent: isPermanentFailure((err as { code?: unknown }).code, op) };
}

/** Hooks the world gives a shell: a place where a racing local write may land, and a log line. */
export interface ShellHooks {
  /** Called at the windows named in the issue (between a pull's check and its replace, ...). */
  window(node: string, path: string, where: string): void;
  log(node: string, line: string): void;
}

export class ClientShell {
  up = false;
  state!: SimClientState;
  link: Link | null = null;
  private lock = new SimLock();
  private pushScheduled = false;
  private pushing = false;
  private pullWanted = false;
  private pulling = false;
  private retryTimer = false;
  private readonly noRename = new Set<string>();
  /** The server's head when this connection began (hello): everything committed over it is above. */
  private sessionHead = Number.MAX_SAFE_INTEGER;
  /** What pushes sent that no answer has settled yet (in memory, as SyncedFolder's). */
  private unanswered = new UnansweredPushes<Link>();
  /** The second look at trees that moved or appeared, a moment after the first. */
  private readonly secondLook: SimDelayedBatch<string>;
  private secondLookOf(due: string[]): void {
    const look = function* (this: ClientShell): Proc {
      yield* this.locked(
        (function* (this: ClientShell): Proc {
          for (const tree of due) this.movedTrees.add(tree);
          yield* this.rescanMovedTrees();
        }).call(this),
      );
      this.schedulePush();
    };
    this.sched.spawn(this.name, 'secondLook', look.call(this));
  }

  constructor(
    readonly name: string,
    readonly fs: MemFs,
    readonly disk: Persisted,
    private readonly sched: Scheduler,
    private readonly net: Network,
    private readonly server: ServerShell,
    private readonly hooks: ShellHooks,
  ) {
    this.secondLook = new SimDelayedBatch<string>(this.sched, this.name, SECOND_LOOK_MS, (due) => this.secondLookOf(due));
  }

  // -- lifecycle -------------------------------------------------------------------------------

  /** Start from the persisted state only (a fresh process). */
  start(): void {
    this.up = true;
    this.state = new SimClientState(this.disk, this.sched, this.name);
    this.lock = new SimLock(this.sched);
    this.link = null;
    this.pushScheduled = this.pushing = this.pullWanted = this.pulling = this.retryTimer = false;
    this.noRename.clear();
    this.movedTrees.clear();
    this.secondLook.cancel();
    this.sessionHead = Number.MAX_SAFE_INTEGER;
    this.unanswered = new UnansweredPushes<Link>();
    this.sched.spawn(this.name, 'start', this.startFolder());
  }

  kill(): void {
    this.up = false;
    this.link?.cut();
    this.link = null;
    this.sched.kill(this.name);
  }

  private *startFolder(): Proc {
    // As SyncedFolder.start: a local version a kill left moved aside by a pull goes back first.
    const recovered = yield* recoverAsides(this.fs, this.conflictName);
    if (recovered.length > 0) {
      this.hooks.log(this.name, `put back what a pull had moved aside: ${recovered.join(', ')}`);
      this.state.markDirty(recovered);
    }
    cleanTempDir(this.fs);
    yield* this.locked(this.finishInterruptedPull());
    yield* this.scanAgainstBase();
    this.schedulePush();
    this.sched.spawn(this.name, 'connect', this.connectLoop());
    this.presenceTick();
  }

  private presenceTick(): void {
    this.sched.after(2000, this.name, () => {
      this.retryDue();
      this.presenceTick();
    });
  }

  private *locked<T>(body: Proc<T>): Proc<T> {
    yield* this.lock.acquire();
    try {
      return yield* body;
    } finally {
      this.lock.release();
    }
  }

  private *connectLoop(): Proc {
    let backoff = 250;
    for (;;) {
      const link = this.net.open(this.name, this.server.serve);
      try {
        if (!this.server.up) throw new Error('server down');
        const hello = (yield* link.request('hello', { node: this.name })) as { head: number };
        this.sessionHead = hello.head;
        link.onNotify = (method) => {
          if (method === 'changed') this.requestPull();
        };
        this.link = link;
        backoff = 250;
        this.requestPull();
        this.schedulePush();
        yield* waitUntil(() => !link.up);
      } catch {
        // cannot reach the server
      } finally {
        link.cut();
        if (this.link === link) this.link = null;
      }
      yield* sleep(backoff);
      backoff = Math.min(backoff * 2, 4000);
    }
  }

  private *finishInterruptedPull(): Proc {
    for (const change of this.state.pendingApply()) {
      const base = this.state.getBase(change.path);
      if (base !== null && base.seq >= change.seq) continue;
      yield* pause();
      const local = this.readPath(change.path, base);
      const step = decideInterruptedPull(change, base, local?.entry ?? null);
      if (step === 'forget') this.state.deleteBase(change.path);
      if (step === 'record' && local !== null) this.state.setBase(change.path, { seq: change.seq, entry: change.entry!, stat: local.stat });
    }
    if (this.state.pendingApply().length > 0) {
      this.state.endApply();
      this.state.flush();
    }
  }

  private *scanAgainstBase(): Proc {
    yield* pause();
    const seen = new Set<string>();
    const dirty: string[] = [];
    for (const p of this.fs.walk()) {
      seen.add(p);
      const st = this.fs.lstat(p)!;
      const base = this.state.getBase(p);
      const isClean =
        base !== null &&
        base.stat !== null &&
        (st.kind === 'dir'
          ? base.entry.type === 'dir' && base.entry.mode === st.mode
          : base.stat.ino === st.ino && base.stat.size === st.size && base.stat.mtimeMs === st.mtime && base.stat.ctimeMs === st.ctime);
      if (!isClean) dirty.push(p);
    }
    for (const p of this.state.basePaths()) if (!seen.has(p)) dirty.push(p);
    if (dirty.length > 0) this.state.markDirty(dirty);
  }

  /** Watcher hints (delivered by the world a little after a local change). */
  onHints(paths: string[]): void {
    if (!this.up) return;
    const changed = paths.filter((p) => !isRecordedFile(this.fs, p, this.state.getBase(p)));
    if (changed.length === 0) return;
    this.state.markDirty(changed);
    this.schedulePush();
  }

  // -- push ------------------------------------------------------------------------------------

  schedulePush(delay = 0): void {
    if (this.pushScheduled) return;
    this.pushScheduled = true;
    this.sched.after(delay, this.name, () => {
      this.pushScheduled = false;
      this.sched.spawn(this.name, 'pushLoop', this.pushLoop());
    });
  }

  private *pushLoop(): Proc {
    if (this.pushing) {
      this.sched.after(20, this.name, () => this.schedulePush());
      return;
    }
    this.pushing = true;
    try {
      for (;;) {
        const link = this.link;
        if (link === null) return;
        const batch = this.state.takeDirty(PUSH_BATCH, this.sched.now);
        if (batch.length === 0) break;
        const progressed = yield* this.locked(this.pushBatch(link, batch));
        if (!progressed) {
          this.scheduleRetry();
          return;
        }
      }
      if (this.state.pendingCount > 0) this.scheduleRetry();
    } catch (err) {
      this.hooks.log(this.name, `push: ${(err as Error).message}`);
      this.scheduleRetry();
    } finally {
      this.pushing = false;
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    this.retryTimer = true;
    const now = this.sched.now;
    const next = Math.min(...this.state.failed.filter((t) => !t.permanent).map((t) => t.retryAt), now + 2000);
    this.sched.after(Math.max(50, next - now), this.name, () => {
      this.retryTimer = false;
      this.retryDue();
    });
  }

  private retryDue(): void {
    const due = this.state.dueFailures(this.sched.now);
    this.state.markDirty(due.filter((t) => t.op === 'push' && !t.permanent).map((t) => t.path));
    const pulls = due.filter((t) => t.op === 'pull' && !t.permanent).map((t) => t.change!).filter(Boolean);
    if (pulls.length > 0) this.sched.spawn(this.name, 'retryPulls', this.locked(this.retryPulls(pulls)));
    this.schedulePush();
  }

  private readPath(p: string, base: BaseRecord | null): LocalState | null {
    if (isReachedThroughLink(this.fs, p)) return null;
    return readLocal(this.fs, p, { stat: base?.stat ?? null, hash: base?.entry.type === 'file' ? base.entry.hash : null });
  }

  private *pushBatch(link: Link, batch: Array<[string, number]>): Proc<boolean> {
    const seen = new Set(batch.map(([p]) => p));
    const appeared: string[] = [];
    const locals = new Map<string, LocalState | null>();
    let wave = [...seen];
    while (wave.length > 0) {
      const next: string[] = [];
      const expand = (p: string): void => {
        if (!seen.has(p)) (seen.add(p), next.push(p));
      };
      const newDirs: string[] = [];
      for (const p of wave) {
        yield* pause();
        const base = this.state.getBase(p);
        const local = this.readPath(p, base);
        locals.set(p, local);
        if (bringsBaseChildren(base?.entry ?? null, local?.entry ?? null)) for (const child of this.state.baseUnder(p)) expand(child);
        if (local !== null && local.stat !== null && base?.stat?.ino !== local.stat.ino) {
          const from = this.state.pathOfInode(local.stat.ino);
          if (from !== null) expand(from);
        }
        if (local?.entry.type === 'dir' && base === null) newDirs.push(p);
        // Hard links: an edit through one name changes every other name of the inode.
        for (const other of linkNamesToLookAt(p, base, local, (ino) => this.state.pathsOfInode(ino))) expand(other);
      }
      for (const dir of outermostPaths(newDirs)) {
        yield* pause();
        if (this.fs.lstat(dir)?.kind === 'dir') for (const p of this.fs.walk(dir)) if (p !== dir) expand(p);
        appeared.push(dir);
      }
      wave = next;
    }
    const plan = planPush(locals, this.bases, this.noRename);
    this.noRename.clear();
    for (const [p, record] of plan.restat) this.state.setBase(p, record);
    const ops = plan.ops;
    // A path looked at that needs no op has nothing left to retry: an old failure of it is over.
    const opPaths = new Set(ops.flatMap((op) => (op.op === 'rename' ? [op.from, op.to] : [op.path])));
    for (const p of locals.keys()) if (!opPaths.has(p)) this.state.clearFailure(p, 'push');
    let progressed = ops.length === 0;
    if (ops.length > 0) progressed = yield* this.runOps(link, ops, locals);
    for (const [p, generation] of batch) {
      if (!this.state.failed.some((t) => t.path === p && t.op === 'push' && !t.permanent)) this.state.clearDirty(p, generation);
    }
    // What the plan could not carry, and every subtree that moved or appeared, is looked at
    // again from disk: now, and once more a moment later.
    this.state.markDirty(plan.recheck);
    if (progressed) for (const dir of appeared) this.movedTrees.add(dir);
    const trees = yield* this.rescanMovedTrees();
    if (trees.length > 0) this.secondLook.add(trees);
    this.state.flush();
    return progressed;
  }

  /** The base index as the core sees it. */
  private readonly bases = {
    get: (p: string): BaseRecord | null => this.state.getBase(p),
    pathOfInode: (ino: number): string | null => this.state.pathOfInode(ino),
    under: (dir: string): string[] => this.state.baseUnder(dir),
  };

  /** Subtrees that moved during a batch: what is on disk under them goes back in the outbox. */
  private readonly movedTrees = new Set<string>();

  /** Mark every path under the moved trees, on disk or in the base, dirty. Returns the trees. */
  private *rescanMovedTrees(): Proc<string[]> {
    const trees = [...this.movedTrees];
    this.movedTrees.clear();
    const outermost = outermostPaths(trees);
    for (const tree of outermost) {
      yield* pause();
      const found = [tree, ...this.state.baseUnder(tree)];
      if (this.fs.lstat(tree)?.kind === 'dir' && !isReachedThroughLink(this.fs, tree)) found.push(...this.fs.walk(tree));
      this.state.markDirty(found);
    }
    return outermost;
  }

  private *runOps(link: Link, ops: PushOp[], locals: Map<string, LocalState | null>): Proc<boolean> {
    // Durable before anything is committed (as Pusher.runOps).
    this.state.beginOwnVersions(this.sessionHead);
    let anyDone = false;
    const phases = pushPhases(ops);
    if (phases.first.length > 0) anyDone = (yield* this.commitChunk(link, phases.first, locals)) || anyDone;
    const uploaded: PushOp[] = [];
    for (const op of phases.uploads) {
      const done = yield* this.uploadOne(link, op, locals);
      if (done !== null) uploaded.push(done);
    }
    if (uploaded.length > 0) anyDone = (yield* this.commitChunk(link, uploaded, locals)) || anyDone;
    if (phases.last.length > 0) anyDone = (yield* this.commitChunk(link, phases.last, locals)) || anyDone;
    return anyDone;
  }

  /** Upload one file: its bytes must still be the ones read (fingerprint and hash), else it is busy. */
  private *uploadOne(link: Link, op: Extract<PushOp, { op: 'put' }>, locals: Map<string, LocalState | null>): Proc<PushOp | null> {
    if (op.entry.type !== 'file') return op;
    yield* pause();
    const read = locals.get(op.path) ?? null;
    let data: string;
    let isAsRead = false;
    try {
      data = this.fs.readFile(op.path);
      const st = this.fs.lstat(op.path);
      isAsRead = read !== null && st !== null && sameFp(read.stat, { ino: st.ino, size: st.size, mtimeMs: st.mtime, ctimeMs: st.ctime });
    } catch (err) {
      this.recordPushFailure(op.path, err);
      return null;
    }
    if (!isAsRead || hashOf(data) !== op.entry.hash) {
      this.state.markDirty([op.path]);
      this.recordPushFailure(op.path, Object.assign(new Error('changed while it was being sent'), { code: 'FILE_BUSY' }));
      return null;
    }
    try {
      const { name } = (yield* link.request('upload', { data })) as { name: string };
      return { ...op, upload: name };
    } catch (err) {
      this.recordPushFailure(op.path, err);
      return null;
    }
  }

  private recordPushFailure(p: string, err: unknown): void {
    const { message, permanent } = classify(err, 'push');
    this.recordPushTask(p, message, permanent);
  }

  private recordPushTask(p: string, lastError: string, permanent: boolean): void {
    this.state.recordFailure({ path: p, op: 'push', lastError, permanent }, this.sched.now);
    if (!permanent) this.state.markDirty([p]);
    this.hooks.log(this.name, `push ${p} failed: ${lastError}`);
  }

  private *commitChunk(link: Link, ops: PushOp[], locals: Map<string, LocalState | null>): Proc<boolean> {
    let results: PushResult[];
    this.unanswered.sending(ops, link);
    try {
      ({ results } = (yield* link.request('push', { ops })) as { results: PushResult[] });
      this.unanswered.answered(ops);
    } catch (err) {
      for (const op of ops) this.state.markDirty([op.op === 'rename' ? op.to : op.path]);
      for (const op of ops) if (op.op === 'rename') this.state.markDirty([op.from]);
      this.hooks.log(this.name, `push to server failed: ${(err as Error).message}`);
      return false;
    }
    for (const [i, op] of ops.entries()) {
      const result = results[i];
      if (result === undefined) continue;
      try {
        yield* this.applyPushResult(link, op, result, locals);
      } catch (err) {
        this.recordPushFailure(op.op === 'rename' ? op.to : op.path, err);
      }
    }
    return true;
  }

  private *applyPushResult(link: Link, op: PushOp, result: PushResult, locals: Map<string, LocalState | null>): Proc {
    const p = pathOfOp(op);
    const out = decidePushOutcome(op, result, locals.get(p) ?? null, this.bases);
    if (out.failure !== null) {
      const { code, message, permanent } = out.failure;
      this.recordPushTask(p, `${code}: ${message}`, permanent);
      return;
    }
    this.state.clearFailure(p, 'push');
    if (out.moveAside !== null) {
      // The server names the copy: never replace what is at that name here (client/conflictmove).
      const { from, to } = out.moveAside;
      this.hooks.window(this.name, from, 'conflict-rename');
      yield* pause();
      let target: string | null = null;
      for (const c of conflictTargetCandidates(to)) {
        if (this.fs.lstat(c) !== null) continue;
        target = c;
        break;
      }
      if (target === null) throw new Error(`no free name beside ${to} for a conflict copy`);
      yield* pause();
      movePath(this.fs, from, target);
      if (target !== to) {
        out.setBases = out.setBases.filter(([q]) => q !== to);
        out.recheck.push(target);
      }
    }
    for (const q of out.deleteBases) this.state.deleteBase(q);
    for (const [q, record] of out.setBases) this.state.setBase(q, record);
    // Found by a walk before the watcher reported it, it may vanish without an event: read it once more, later.
    this.secondLook.add(out.setBases.map(([q]) => q));
    for (const q of out.noRename) this.noRename.add(q);
    this.state.markDirty(out.recheck);
    for (const tree of out.rescanTrees) this.movedTrees.add(tree);
    if (out.log !== null) this.hooks.log(this.name, out.log.message + (result.status === 'ok' ? ` seq ${result.seq}` : ''));
    if (out.pull !== null) yield* this.applyChange(link, out.pull, true);
  }

  // -- pull ------------------------------------------------------------------------------------

  requestPull(): void {
    this.pullWanted = true;
    if (!this.pulling) {
      this.pulling = true;
      this.sched.spawn(this.name, 'pullLoop', this.pullLoop());
    }
  }

  private *pullLoop(): Proc {
    try {
      while (this.pullWanted) {
        this.pullWanted = false;
        const link = this.link;
        if (link === null) return;
        for (;;) {
          // The page is asked for under the folder lock: a page listed before one of our own
          // commits would bring back, over it, what that commit replaced.
          const page = yield* this.locked(
            (function* (this: ClientShell): Proc<{ changes: Change[]; head: number } | null> {
              const listed = (yield* link.request('changes', { after: this.state.cursor, limit: PULL_PAGE })) as {
                changes: Change[];
                head: number;
                reset: boolean;
              };
              if (listed.reset) {
                yield* this.fullResync(link);
                return null;
              }
              if (listed.changes.length > 0) {
                this.state.beginApply(listed.changes);
                yield* this.applyPage(link, listed.changes);
              }
              return listed;
            }).call(this),
          );
          if (page === null) continue;
          if (this.state.cursor >= this.sessionHead) this.unanswered.settleBefore(link);
          if (page.changes.length === 0) break;
          const last = page.changes[page.changes.length - 1]!.seq;
          this.state.setCursor(last);
          this.state.flush();
          this.state.endApply();
          // Not awaited (the daemon's ack is fire-and-forget).
          this.sched.spawn(
            this.name,
            'ack',
            (function* (): Proc {
              try {
                yield* link.request('ack', { seq: last });
              } catch {
                // the next connection acks again
              }
            })(),
          );
        }
      }
    } catch (err) {
      this.hooks.log(this.name, `pull: ${(err as Error).message}`);
      this.pullWanted = true;
      this.sched.after(1000, this.name, () => this.requestPull());
    } finally {
      this.pulling = false;
    }
  }

  private *fullResync(link: Link): Proc {
    // As on a first sync: bases mean nothing now; each page is applied as it arrives.
    const known = this.state.basePaths();
    for (const p of known) this.state.deleteBase(p);
    this.state.restartOwnVersions(this.sessionHead);
    const listed = new Set<string>();
    let after = 0;
    let head = 0;
    for (;;) {
      const page = (yield* link.request('changes', { after, limit: PULL_PAGE })) as { changes: Change[]; head: number };
      head = page.head;
      if (page.changes.length === 0) break;
      for (const c of page.changes) listed.add(c.path);
      after = page.changes[page.changes.length - 1]!.seq;
      yield* this.applyPage(link, page.changes);
    }
    this.state.markDirty(pathsToPushAfterResync(known, listed, (p) => this.state.getBase(p) !== null));
    this.state.setCursor(head);
    this.state.flush();
    this.schedulePush();
  }

  private *applyPage(link: Link, changes: Change[]): Proc {
    for (const change of changes) {
      this.state.clearFailure(change.path, 'pull');
      yield* this.applyChange(link, change, false);
    }
  }

  private *retryPulls(changes: Change[]): Proc {
    const link = this.link;
    if (link === null) return;
    for (const change of pullsStillFailing(changes, this.state.failed)) yield* this.applyChange(link, change, false);
    this.state.flush();
  }

  private *applyChange(link: Link, change: Change, force: boolean): Proc {
    try {
      yield* this.applyChangeOrThrow(link, change, force);
      this.state.clearFailure(change.path, 'pull');
    } catch (err) {
      const { message, permanent } = classify(err, 'pull');
      this.state.recordFailure({ path: change.path, op: 'pull', lastError: message, permanent, change }, this.sched.now);
      this.hooks.log(this.name, `pull ${change.path} failed: ${message}`);
      this.scheduleRetry();
    }
  }

  private readForPull(p: string, base: BaseRecord | null): LocalState | null {
    return this.readPath(p, base);
  }

  private conflictName = (p: string): string =>
    conflictCopyPath(p, new Date(Date.UTC(2026, 10, 23, 14, 0, 0) + this.sched.now), this.name, (c) => this.fs.exists(c));

  private *applyChangeOrThrow(link: Link, change: Change, force: boolean): Proc {
    const p = change.path;
    const base = force ? null : this.state.getBase(p);
    yield* pause();
    const localState = this.readForPull(p, this.state.getBase(p));
    const local = localState?.entry ?? null;
    let fromBase: BaseRecord | null = null;
    let fromLocal: LocalState | null = null;
    if (change.from !== undefined) {
      fromBase = this.state.getBase(change.from);
      yield* pause();
      fromLocal = this.readForPull(change.from, fromBase);
    }
    const isOwn = !force && (isOwnVersion(change, this.state.ownVersions(this.name)) || this.unanswered.isWhatWasSent(change));
    this.unanswered.settle(p);
    const decision = decidePull(change, base, local, fromBase, fromLocal?.entry ?? null, isOwn);
    // The base gets the fingerprint read when deciding, never a later stat.
    const record = (entry: Entry, stat: StatFingerprint | null): void => {
      this.state.setBase(p, { seq: change.seq, entry, stat });
    };
    switch (decision.action) {
      case 'skip':
        return;
      case 'record':
        record(change.entry!, localState?.stat ?? null);
        return;
      case 'forget':
        this.state.deleteBase(p);
        return;
      case 'keep-local':
        this.state.markDirty([p]);
        this.schedulePush();
        // The local version goes to the server first. The server's version is still to be had:
        // kept as a failed pull and tried again, for were the local edit gone before it is
        // pushed, nothing else would ever bring it (the cursor is past it).
        if (change.entry !== null) throw Object.assign(new Error('kept the local version, pushed first; the server\'s is pulled after'), { code: 'LOCAL_CHANGE' });
        return;
      case 'delete': {
        const result = yield* removePulledPath(this.fs, p, { entry: local!, stat: null }, {
          conflictName: this.conflictName,
          beforeReplace: () => this.hooks.window(this.name, p, 'pull-delete'),
        });
        if (!result.removed && result.copy !== null) this.state.markDirty([result.copy]);
        this.state.deleteBase(p);
        if (!result.removed) {
          this.state.markDirty([p]);
          this.schedulePush();
        }
        this.hooks.log(this.name, `pulled delete ${p}${result.removed ? '' : ' (kept: changed or not empty)'}`);
        return;
      }
      case 'rename': {
        // As Puller.pullRename: never over what a local write put at the path since the decision.
        const result = yield* movePulledPath(this.fs, decision.from, p, { conflictName: this.conflictName, beforeReplace: () => this.hooks.window(this.name, decision.from, 'pull-rename') });
        if (!result.moved) {
          this.state.markDirty([p, decision.from]);
          this.schedulePush();
          throw Object.assign(new Error('changed locally while it was being pulled'), { code: 'LOCAL_CHANGE' });
        }
        const children = this.state.baseUnder(decision.from).map((c) => [c, this.state.getBase(c)!] as const);
        const after = basesForPulledRename(decision.from, p, change.seq, children);
        moveBases(this.state, after.moves);
        this.state.deleteBase(decision.from);
        yield* pause(); // walkTree
        const movedHere = [...after.recheck];
        if (this.fs.lstat(p)?.kind === 'dir') movedHere.push(...this.fs.walk(p).filter((q) => q !== p));
        // A rename may carry new metadata (a chmod right after it): give it to what moved.
        const wanted = change.entry!;
        const moved = fromLocal?.entry ?? null;
        let stat = fromLocal?.stat ?? null;
        if (moved !== null && !isSameEntry(moved, wanted)) {
          yield* pause();
          if (wanted.type === 'file') this.markOtherLinks(p, restampFile(this.fs, p, wanted), fromLocal?.links ?? 1);
          if (wanted.type === 'dir') {
            checkParents(this.fs, p, false);
            if (this.fs.lstat(p)?.kind === 'dir') this.fs.chmod(p, wanted.mode);
          }
          stat = null;
        }
        record(wanted, stat);
        if (result.kept !== null) movedHere.push(result.kept);
        this.state.markDirty(movedHere);
        this.schedulePush();
        this.hooks.log(this.name, `pulled rename ${decision.from} -> ${p}`);
        return;
      }
      case 'adopt':
        // Our own version (its push's answer was lost), that our disk has moved on from: the
        // disk is the truth. Based on it, the next look pushes the difference over it.
        if (change.entry === null) this.state.deleteBase(p);
        else this.state.setBase(p, { seq: change.seq, entry: change.entry, stat: null });
        this.state.markDirty([p]);
        this.schedulePush();
        this.hooks.log(this.name, `own version of ${p} (seq ${change.seq}, from ${change.origin}) adopted: the disk moved on`);
        return;
      case 'fetch':
        yield* this.fetch(link, change, localState);
        return;
    }
  }

  /** As Puller.keepFullDirectory: a directory a pulled file or link replaces keeps what the server never had, as a conflict copy. */
  private *keepFullDirectory(p: string): Proc {
    yield* pause();
    if (this.fs.lstat(p)?.kind !== 'dir' || this.fs.children(p).length === 0) return;
    const copy = this.conflictName(p);
    movePath(this.fs, p, copy);
    yield* pause();
    this.state.markDirty([copy, ...(this.fs.lstat(copy)?.kind === 'dir' ? this.fs.walk(copy) : []), ...this.state.baseUnder(p)]);
    this.schedulePush();
  }

  /** As SyncedFolder.markOtherLinks: a restamp changed every name of a hard-linked file. */
  private markOtherLinks(p: string, stat: StatFingerprint, links: number): void {
    const others = otherLinkNames(p, links, this.state.pathsOfInode(stat.ino));
    if (others.length === 0) return;
    this.state.markDirty(others);
    this.schedulePush();
  }

  private *fetch(link: Link, change: Change, localState: LocalState | null): Proc {
    const localBefore = localState?.entry ?? null;
    const p = change.path;
    const entry = change.entry!;
    const localChanged = (): Error => {
      this.state.markDirty([p]);
      this.schedulePush();
      return Object.assign(new Error('changed locally while it was being pulled'), { code: 'LOCAL_CHANGE' });
    };
    const hooks = { conflictName: this.conflictName, beforeReplace: () => this.hooks.window(this.name, p, 'pull-replace') };
    const notPlaced = (result: Extract<PlaceResult, { placed: false }>): Error => {
      if (result.reason === 'changed' && result.copy !== null) this.state.markDirty([result.copy]);
      return localChanged();
    };
    if (entry.type === 'dir') {
      // As Puller.fetchVersion: a file or link there goes only if still as decided; mkdir never replaces.
      if (localBefore !== null && localBefore.type !== 'dir') {
        const cleared = yield* removePulledPath(this.fs, p, { entry: localBefore, stat: localState?.stat ?? null }, hooks);
        if (!cleared.removed) throw notPlaced({ placed: false, reason: 'changed', copy: cleared.copy });
      }
      yield* pause();
      if (!placeDirIfFree(this.fs, p, entry.mode)) throw localChanged();
      yield* pause();
      const after = readLocal(this.fs, p);
      this.state.setBase(p, { seq: change.seq, entry, stat: after?.stat ?? null });
      return;
    }
    if (localBefore?.type === 'dir') yield* this.keepFullDirectory(p);
    if (entry.type === 'symlink') {
      // As Puller.fetchVersion: never over something the decision did not see.
      const expected = yield* this.expectAtPath(p, localState, localChanged);
      const placed = yield* placePulledSymlink(this.fs, p, entry.target, expected, hooks);
      if (!placed.placed) throw notPlaced(placed);
      this.state.setBase(p, { seq: change.seq, entry, stat: null });
      this.hooks.log(this.name, `pulled link ${p}`);
      return;
    }
    if (localBefore?.type === 'file' && hasSameContent(localBefore, entry)) {
      yield* pause();
      const stat = restampFile(this.fs, p, entry);
      this.state.setBase(p, { seq: change.seq, entry, stat });
      this.markOtherLinks(p, stat, localState?.links ?? 1);
      return;
    }
    const { data } = (yield* link.request('download', { path: p })) as { data: string };
    if (hashOf(data) !== entry.hash) throw new FsError('HASH_MISMATCH', `${p}: the server's file is no longer this version`);
    yield* pause();
    const tmp = writeTemp(this.fs, data, 'down');
    // Never destroys local bytes the decision did not see (src/fs/place.ts).
    let expected: PlaceExpectation;
    try {
      expected = yield* this.expectAtPath(p, localState, localChanged);
    } catch (err) {
      this.fs.unlink(tmp);
      throw err;
    }
    const placed = yield* placePulledFile(this.fs, tmp, p, entry, expected, hooks);
    if (!placed.placed) throw notPlaced(placed);
    this.state.setBase(p, { seq: change.seq, entry, stat: placed.stat });
    this.hooks.log(this.name, `pulled ${p}`);
  }

  /** As Puller.expectAtPath: what the decision read, or an empty path once an empty directory there is removed. */
  private *expectAtPath(p: string, localState: LocalState | null, localChanged: () => Error): Proc<PlaceExpectation> {
    const localBefore = localState?.entry ?? null;
    if (localBefore?.type !== 'dir') return { entry: localBefore, stat: localState?.stat ?? null };
    yield* pause();
    if (!removeEmptyDir(this.fs, p)) throw localChanged();
    return { entry: null, stat: null };
  }

  /** One line of state, for failure reports. */
  describe(): string {
    if (!this.up) return `${this.name}: down`;
    const failed = this.state.failed.map((t) => `${t.op} ${t.path} (${t.lastError}${t.permanent ? ', permanent' : ''})`);
    return `${this.name}: link ${this.link === null ? 'down' : 'up'}, cursor ${this.state.cursor}, outbox [${this.state.dirtyPaths().slice(0, 5).join(', ')}], failed [${failed.slice(0, 4).join('; ')}], pushing ${this.pushing}, pulling ${this.pulling}, lock ${this.lock.holder}`;
  }

  /** Nothing left to do: connected, outbox empty, no failed task, cursor at the server's head. */
  isIdle(serverHead: number): boolean {
    return this.up && this.link !== null && this.state.pendingCount === 0 && this.state.failed.length === 0 && this.state.cursor >= serverHead && !this.pushing && !this.pulling;
  }
}

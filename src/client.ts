/**
 * The client session: one SSH connection (one SFTP session, one RPC stream to the server's
 * `rpc.sock`), reconnecting with backoff; per folder an outbox that is pushed and a feed that is
 * pulled. Decisions come from `core/reconcile`; this file does the I/O around them.
 */
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Config } from './cli/config.js';
import type { BaseRecord, Change, Entry, PushOp, PushResult, StatFingerprint } from './core/types.js';
import { decidePull, hasSameContent, isSameEntry } from './core/reconcile.js';
import { planPush } from './core/plan.js';
import { decidePushOutcome, pathOfOp } from './core/outcome.js';
import { basesForPulledRename, decideInterruptedPull, moveBases, otherLinkNames, pathsToPushAfterResync } from './core/merge.js';
import { isSameOrInside, outermostPaths } from './core/paths.js';
import { ClientFolderState } from './client/clientstate.js';
import { FolderBase, readInFolder } from './folder/base.js';
import { SyncError, isPermanentFailure } from './core/errors.js';
import { DelayedBatch, forEachLimited, sleep } from './node/lock.js';
import type { Logger } from './node/log.js';
import { createProgress, showPath } from './node/log.js';
import { BUNDLE_FILE_MAX, createRpcPeer, MAX_BUNDLE_BYTES, type RpcPeer } from './rpc.js';
import { DEFERRED_HASH, isRecordedFile, readLocal, readSmallFile, walkTree, fingerprint, isSameFingerprint, type LocalState } from './fs/scan.js';
import { BundlePrefetcher, groupBySize, type WantedFile } from './wire/bundles.js';
import { writeSnapshot, changesSince } from './fs/watch.js';
import { connectSsh, type SshSession } from './ssh/transfer.js';
import { safeChmod } from './fs/safefs.js';
import { removePulledPath } from './fs/unplace.js';
import { conflictCopyPath } from './core/conflict.js';
import { tempFilePath } from './fs/reserved.js';
import { openRpcStream } from './client/rpcstream.js';
import { unsendableReason } from './wire/unsendable.js';
import { lstatUnderRoot } from './fs/presence.js';
import { freeConflictTarget } from './client/conflictmove.js';
import { permissionBits } from './core/modes.js';
import { MAX_PAGE_BYTES, jsonBytes } from './wire/budget.js';
import { cleanTempDir, movePath, newTempName, placeDir, placeFile, placeSymlink, removePath, restampFile } from './fs/apply.js';
import { placePulledFile } from './fs/place.js';
import type { ConflictsParams, ParamsOf, ResolveParams, RestoreParams, ResultOf, VersionsParams } from './rpc.js';
import { NodeBase, describeFsError, type FolderStatus, type StatusReport, type TaskInfo } from './node.js';
import { pullDelta, pushDelta } from './client/delta.js';
import { DELTA_MIN_SIZE } from './core/blocks.js';
import { FileChangedError } from './fs/blocks.js';

const PUSH_BATCH = 2000;
const COMMIT_CHUNK = 500;
const TRANSFER_CONCURRENCY = 32;
const READ_CONCURRENCY = 32;
/** How long a stop waits for work in flight before cutting the connection. */
const STOP_GRACE_MS = 5000;
/**
 * Events are hints: a full comparison with the base index catches anything they missed.
 * SYSTEMSYNC_RESCAN_INTERVAL_MS changes the period; 0 turns the periodic rescan off (the churn
 * test does, so that it cannot hide a missed change).
 */
const RESCAN_INTERVAL_MS = rescanIntervalMs(process.env.SYSTEMSYNC_RESCAN_INTERVAL_MS);

function rescanIntervalMs(text: string | undefined): number {
  const fallback = 30 * 60 * 1000;
  if (text === undefined || text === '') return fallback;
  const ms = Number(text);
  return Number.isSafeInteger(ms) && ms >= 0 ? ms : fallback;
}
const PULL_PAGE = 2000;
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
const PULL_BUNDLE_FILES = 256;
const PULL_BUNDLE_BYTES = 4 * 1024 * 1024;
const BUNDLE_CONCURRENCY = 2;

interface RemoteFolder {
  root: string;
  tmp: string;
}

interface Link {
  ssh: SshSession;
  peer: RpcPeer;
}

/** Words for a failure, and whether retrying can help. */
function classify(err: unknown, op: 'push' | 'pull'): { message: string; permanent: boolean } {
  return { message: describeFsError(err), permanent: isPermanentFailure((err as { code?: unknown }).code, op) };
}

function opsBytes(ops: PushOp[]): number {
  return ops.reduce((sum, op) => sum + jsonBytes(op), 0);
}

class SyncedFolder extends FolderBase {
  remote: RemoteFolder | null = null;
  /** Why the server does not sync this folder with us (not served there, or not in our [access]); null when it does. */
  refused: string | null = null;
  /** The server's head when this connection began: versions above it that name us as origin
   * were made by this client's own commits since. */
  sessionHead = Number.MAX_SAFE_INTEGER;
  private pushScheduled = false;
  private pushing = false;
  private pullWanted = false;
  private pulling = false;
  /** Paths whose last rename attempt was stale: push them as put + delete. */
  private readonly noRename = new Set<string>();
  private retryTimer: NodeJS.Timeout | null = null;
  pendingPull = 0;

  constructor(
    name: string,
    root: string,
    readonly state: ClientFolderState,
    private readonly client: SyncClient,
    logger: Logger,
    patterns: string[],
  ) {
    super(name, root, logger, patterns);
  }

  private get snapshotFile(): string {
    return path.join(this.client.config.node.stateDir, 'client', this.name, 'watcher.snapshot');
  }

  async start(): Promise<void> {
    if ((await this.checkPresence()) !== null) return;
    await this.loadSyncignore();
    const removed = await cleanTempDir(this.root);
    if (removed > 0) this.logger.info(`removed ${removed} leftover temp file(s)`);
    const offline = await changesSince(this.root, this.snapshotFile, this.ignore).catch(() => null);
    if (offline !== null && offline.length > 0) {
      this.logger.info(`${offline.length} path(s) changed while the daemon was stopped`);
      this.state.markDirty(offline);
    }
    await this.watch({
      onHints: (paths) => this.onHints(paths),
      onError: (err) => {
        this.logger.warn(`watcher: ${err.message}; rescanning`);
        this.rescan();
      },
      onBurstSettled: (events) => {
        this.logger.info(`a burst of ${events} file events: rescanning for any the kernel dropped`);
        this.rescan();
      },
    });
    await this.finishInterruptedPull();
    await this.scanAgainstBase();
    this.schedulePush();
  }

  /**
   * A kill may fall between placing a pulled version on disk and saving its base. Such a path
   * now holds exactly the version of the change being applied: record that, so the path is not
   * pushed back as a local edit (a needless conflict when the server has moved on since).
   */
  private async finishInterruptedPull(): Promise<void> {
    let recorded = 0;
    for (const change of this.state.pendingApply()) {
      const base = this.state.getBase(change.path);
      if (base !== null && base.seq >= change.seq) continue;
      const local = await this.readPath(change.path, base).catch(() => 'unsupported' as const);
      if (local === 'unsupported' || local === 'ignored') continue;
      const step = decideInterruptedPull(change, base, local?.entry ?? null);
      if (step === 'forget') (this.state.deleteBase(change.path), recorded++);
      if (step === 'record' && local !== null) {
        this.state.setBase(change.path, { seq: change.seq, entry: change.entry!, stat: local.stat });
        recorded++;
      }
    }
    if (this.state.pendingApply().length > 0) {
      if (recorded > 0) this.logger.info(`recorded ${recorded} path(s) pulled just before the daemon stopped`);
      this.state.endApply();
      await this.state.flush();
    }
  }

  async stop(): Promise<void> {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.secondLook.cancel();
    await this.closeWatcher();
    await this.lock.run(async () => {
      if (this.paused === null) await writeSnapshot(this.root, this.snapshotFile).catch(() => undefined);
      await this.state.close();
    });
  }

  protected hasHistory(): boolean {
    return this.state.hasHistory;
  }

  /** Back after a pause: start again (a fresh watcher, a scan against the base), and pull what was missed. */
  protected async whenBack(): Promise<void> {
    await this.closeWatcher();
    await this.start();
    this.requestPull();
  }

  private onHints(paths: string[]): void {
    // A name the wire rejects holds a permanent failed task (never retried): drop it once the name is gone.
    for (const p of paths) {
      if (unsendableReason(p) !== null) void lstatUnderRoot(this.root, p).then((st) => st === null && this.state.clearFailure(p, 'push'));
    }
    // Files still exactly as last agreed with the server are the echo of our own pulls: one
    // lstat each here instead of a push batch under the folder lock.
    const changed = paths.filter((p) => !isRecordedFile(this.root, p, this.state.getBase(p)));
    if (changed.length === 0) return;
    this.state.markDirty(changed);
    this.schedulePush();
  }

  /** A full comparison with the base in the background; what differs is pushed. */
  rescan(): void {
    if (this.paused !== null) return;
    void this.scanAgainstBase()
      .then(() => this.schedulePush())
      .catch((err) => this.logger.warn(`rescan: ${(err as Error).message}`));
  }

  /** Compare the whole folder with the base index: the truth behind the watcher's hints. */
  async scanAgainstBase(): Promise<void> {
    const seen = new Set<string>();
    const dirty: string[] = [];
    for await (const item of walkTree(this.root, { ignore: this.ignore })) {
      seen.add(item.path);
      const base = this.state.getBase(item.path);
      const fp = fingerprint(item.stat);
      const isClean =
        base !== null &&
        base.stat !== null &&
        (item.type === 'dir'
          ? base.entry.type === 'dir' && base.entry.mode === permissionBits(item.stat.mode)
          : base.stat.ino === fp.ino && base.stat.size === fp.size && base.stat.mtimeMs === fp.mtimeMs && base.stat.ctimeMs === fp.ctimeMs);
      if (!isClean) dirty.push(item.path);
    }
    for (const p of this.state.basePaths()) if (!seen.has(p)) dirty.push(p);
    if (dirty.length > 0) {
      this.logger.info(`start-up scan: ${dirty.length} path(s) to check`);
      this.state.markDirty(dirty);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Push

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
        const link = this.client.link;
        if (link === null || this.remote === null || this.client.isStopping) return;
        const batch = this.state.takeDirty(PUSH_BATCH);
        if (batch.length === 0) break;
        const progressed = await this.lock.run(() => this.pushBatch(link, batch));
        if (!progressed) {
          this.scheduleRetry();
          return;
        }
      }
      // What is left waits for its backoff.
      if (this.state.pendingCount > 0) this.scheduleRetry();
    } catch (err) {
      this.logger.warn(`push: ${(err as Error).message}`);
      this.scheduleRetry();
    } finally {
      this.pushing = false;
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null) return;
    const now = Date.now();
    const next = Math.min(...this.state.failed.filter((t) => !t.permanent).map((t) => t.retryAt), now + 2000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryDue(false);
    }, Math.max(50, next - now));
    this.retryTimer.unref();
  }

  /** Put due failed tasks back in the outbox (or all of them, for `retry`). */
  retryDue(all: boolean): number {
    const now = Date.now();
    if (all) this.state.resetRetryTimes(now);
    const due = this.state.dueFailures(now, all);
    const pushes = due.filter((t) => t.op === 'push' && !t.permanent).map((t) => t.path);
    this.state.markDirty(pushes);
    const pulls = due.filter((t) => t.op === 'pull' && !t.permanent);
    if (pulls.length > 0) void this.lock.run(() => this.retryPulls(pulls.map((t) => t.change!).filter(Boolean))).catch(() => undefined);
    this.schedulePush();
    return due.length;
  }

  /**
   * Read a path and check the ignore rules. With `deferHash`, a changed file whose content cannot
   * equal its base nor the base of the path its inode was at (the sizes differ) is not hashed:
   * its hash is DEFERRED_HASH and the upload, which reads it anyway, supplies it.
   */
  private async readPath(p: string, base: BaseRecord | null, deferHash = false): Promise<LocalState | null | 'unsupported' | 'ignored'> {
    const mayMatch = (fp: StatFingerprint): boolean => {
      // A large edit of a file is read once, by its delta upload, which also finds out if it changed.
      if (base?.entry.type === 'file' && fp.size >= DELTA_MIN_SIZE) return false;
      if (base?.entry.type === 'file' && base.entry.size === fp.size) return true;
      const from = this.state.pathOfInode(fp.ino);
      const fromEntry = from === null ? null : this.state.getBase(from)?.entry;
      return fromEntry?.type === 'file' && fromEntry.size === fp.size;
    };
    const local = await readInFolder(this.root, p, {
      knownStat: base?.stat ?? null,
      knownHash: base?.entry.type === 'file' ? base.entry.hash : null,
      deferHash: deferHash ? (fp) => !mayMatch(fp) : undefined,
    });
    if (local !== null && local !== 'unsupported' && this.ignore.isIgnored(p, local.entry.type === 'dir')) return 'ignored';
    if (local === null && this.ignore.isIgnored(p, base?.entry.type === 'dir')) return 'ignored';
    return local;
  }

  /**
   * Look at a batch of dirty paths, push what differs from the base, apply the answers.
   * Returns false when nothing could be pushed (link down, paused): the caller backs off.
   */
  private async pushBatch(link: Link, batch: Array<[string, number]>): Promise<boolean> {
    if ((await this.checkPresence()) !== null) return false;
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
        const base = this.state.getBase(p);
        let local;
        try {
          local = await this.readPath(p, base, true);
        } catch (err) {
          this.recordPushFailure(p, err);
          return;
        }
        if (local === 'ignored') return;
        if (local === 'unsupported') {
          this.logger.warn(`skipped ${showPath(p)}: sockets, FIFOs and devices are not synced`);
          return;
        }
        locals.set(p, local);
        if (local === null && base?.entry.type === 'dir') for (const child of this.state.baseUnder(p)) expand(child);
        // A path on a known inode may be the far end of a rename: look at where that inode was.
        if (local !== null && local.stat !== null && base?.stat?.ino !== local.stat.ino) {
          const from = this.state.pathOfInode(local.stat.ino);
          if (from !== null) expand(from);
        }
        if (local?.entry.type === 'dir' && base === null) newDirs.push(p);
        // Hard links: an edit through one name changes every other name of the inode.
        if (local?.entry.type === 'file' && local.stat !== null && !isSameFingerprint(base?.stat ?? null, local.stat)) {
          for (const other of otherLinkNames(p, local.links ?? 1, this.state.pathsOfInode(local.stat.ino))) expand(other);
        }
      });
      // Only the outermost new directories need a walk: it covers the ones inside them.
      for (const dir of outermostPaths(newDirs)) {
        for await (const item of walkTree(this.root, { ignore: this.ignore, under: dir })) if (item.path !== dir) expand(item.path);
        // What a walk found, no event may ever report again (the watcher learns of a new
        // directory late, and drops a create followed by a delete): look at it once more.
        appeared.push(dir);
      }
      wave = next;
    }

    const readAt = Date.now();
    const plan = planPush(locals, this.bases, this.noRename);
    this.noRename.clear();
    for (const [p, record] of plan.restat) this.state.setBase(p, record);
    const ops = plan.ops;
    // A path looked at that needs no op has nothing left to retry: an old failure of it is over
    // (else it stays failed, and in the outbox, for ever: the push loop takes it again and again).
    const opPaths = new Set(ops.flatMap((op) => (op.op === 'rename' ? [op.from, op.to] : [op.path])));
    for (const p of locals.keys()) if (!opPaths.has(p)) this.state.clearFailure(p, 'push');
    this.logger.debug(`push batch: ${batch.length} hinted, ${locals.size} read in ${readAt - startedAt} ms, ${ops.length} op(s)`);
    let progressed = ops.length === 0;
    if (ops.length > 0) progressed = await this.runOps(link, ops, locals);
    for (const [p, generation] of batch) {
      if (!this.state.failed.some((t) => t.path === p && t.op === 'push' && !t.permanent)) this.state.clearDirty(p, generation);
    }
    // What the plan could not carry, and every subtree that moved or appeared, is looked at
    // again from disk: now, and once more a moment later (events about it may never come).
    this.state.markDirty(plan.recheck);
    if (progressed) for (const dir of appeared) this.movedTrees.add(dir);
    const trees = await this.rescanMovedTrees();
    if (trees.length > 0) this.secondLook.add(trees);
    await this.state.flush();
    return progressed;
  }

  /** The base index as the core sees it. */
  private readonly bases = {
    get: (p: string) => this.state.getBase(p),
    pathOfInode: (ino: number) => this.state.pathOfInode(ino),
    under: (dir: string) => this.state.baseUnder(dir),
  };

  /** Subtrees that moved during this batch: what is on disk under them goes back in the outbox. */
  private readonly movedTrees = new Set<string>();

  /** Mark every path under the moved trees, on disk or in the base, dirty. Returns the trees. */
  private async rescanMovedTrees(): Promise<string[]> {
    const trees = [...this.movedTrees];
    this.movedTrees.clear();
    const outermost = outermostPaths(trees);
    for (const tree of outermost) {
      const found: string[] = [tree, ...this.state.baseUnder(tree)];
      try {
        for await (const item of walkTree(this.root, { ignore: this.ignore, under: tree })) found.push(item.path);
      } catch (err) {
        this.logger.debug(`rescan of ${showPath(tree)}: ${(err as Error).message}`);
      }
      this.state.markDirty(found);
    }
    return outermost;
  }

  /** The second look at trees that moved or appeared, and at what pushes recorded, a moment after the first. */
  private readonly secondLook = new DelayedBatch<string>(SECOND_LOOK_MS, (due) => {
    void this.lock
      .run(async () => {
        for (const tree of due) this.movedTrees.add(tree);
        await this.rescanMovedTrees();
      })
      .then(() => this.schedulePush(), (err: unknown) => this.logger.debug(`rescan: ${(err as Error).message}`));
  });

  /**
   * Upload what needs uploading and commit in chunks, applying the answers. Commits are
   * pipelined with uploads: whenever no commit is in flight, everything uploaded so far is
   * committed, so the other clients start pulling while this one is still pushing. Small files
   * go in bundles; the ops of one bundle are always committed together (the server reads the
   * bundle once and removes it).
   */
  private async runOps(link: Link, ops: PushOp[], locals: Map<string, LocalState | null>): Promise<boolean> {
    const remote = this.remote!;
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
        const commit: Promise<void> = this.commitChunk(link, chunk, locals)
          .then(
            (done) => {
              anyDone ||= done;
            },
            (err: unknown) => this.logger.warn(`commit: ${(err as Error).message}`),
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
    const needsUpload = (op: PushOp): op is Extract<PushOp, { op: 'put' }> => op.op === 'put' && op.upload === '';
    const isBundled = (op: Extract<PushOp, { op: 'put' }>): boolean => op.entry.type === 'file' && op.entry.size <= BUNDLE_FILE_MAX;
    // Directories and renames first (parents exist before children arrive), deletes last.
    for (const op of ops) if (!needsUpload(op) && op.op !== 'delete') ready.push([op]);
    await drain();
    const uploads = ops.filter(needsUpload);
    const bundles = groupBySize(uploads.filter(isBundled), (op) => (op.entry.type === 'file' ? op.entry.size : 0), PUSH_BUNDLE_FILES, PUSH_BUNDLE_BYTES);
    maxRunning = 2;
    await Promise.all([
      forEachLimited(bundles, BUNDLE_CONCURRENCY, async (group) => {
        const uploaded = await this.uploadBundle(link, remote, group, locals);
        if (uploaded.length === 0) return;
        ready.push(uploaded);
        pump();
      }),
      forEachLimited(
        uploads.filter((op) => !isBundled(op)),
        TRANSFER_CONCURRENCY,
        async (op) => {
          const uploaded = await this.uploadOne(link, remote, op, locals);
          if (uploaded === null) return;
          ready.push([uploaded]);
          pump();
        },
      ),
    ]);
    await drain();
    maxRunning = 1;
    for (const op of ops) if (op.op === 'delete') ready.push([op]);
    await drain();
    return anyDone;
  }

  /**
   * Upload small files as one bundle: each is read whole (synchronously: a few microseconds) and
   * must still have the fingerprint it was read with, so content and entry agree. Returns their
   * put ops naming the bundle and their part of it; a file that changed meanwhile is re-queued.
   */
  private async uploadBundle(
    link: Link,
    remote: RemoteFolder,
    group: Array<Extract<PushOp, { op: 'put' }>>,
    locals: Map<string, LocalState | null>,
  ): Promise<PushOp[]> {
    const name = newTempName('bundle');
    const contents: Buffer[] = [];
    const built: PushOp[] = [];
    let offset = 0;
    for (const op of group) {
      if (op.entry.type !== 'file') continue; // isBundled let only files in
      const localAbs = path.join(this.root, op.path);
      const read = locals.get(op.path) ?? null;
      let data: Buffer;
      let after: StatFingerprint | null;
      try {
        data = readSmallFile(localAbs, BUNDLE_FILE_MAX);
        after = fingerprint(fsSync.lstatSync(localAbs));
      } catch (err) {
        this.recordPushFailure(op.path, err);
        continue;
      }
      const hash = createHash('sha256').update(data).digest('hex');
      const isAsRead = read !== null && isSameFingerprint(read.stat, after) && data.length === after.size;
      if (!isAsRead || (op.entry.hash !== DEFERRED_HASH && op.entry.hash !== hash)) {
        this.state.markDirty([op.path]);
        this.recordPushFailure(op.path, new SyncError('FILE_BUSY', 'changed while it was being sent; sent again once it is still'));
        continue;
      }
      const entry: Entry = { ...op.entry, hash };
      locals.set(op.path, { entry, stat: read.stat });
      built.push({ ...op, entry, upload: name, part: { offset, length: data.length } });
      contents.push(data);
      offset += data.length;
    }
    if (built.length === 0) return [];
    const transfer = this.client.beginTransfer(this.name, `${group[0]!.path} (bundle of ${built.length})`, 'push', offset);
    let localTmp: string | null = null;
    try {
      localTmp = await tempFilePath(this.root, name);
      fsSync.writeFileSync(localTmp, Buffer.concat(contents, offset), { flag: 'wx', mode: 0o600 });
      await link.ssh.uploadFile(localTmp, `${remote.tmp}/${name}`, { onProgress: (done) => transfer.progress(done) });
      return built;
    } catch (err) {
      for (const op of built) if (op.op === 'put') this.recordPushFailure(op.path, err);
      await link.ssh.unlink(`${remote.tmp}/${name}`).catch(() => undefined);
      return [];
    } finally {
      transfer.end();
      if (localTmp !== null) fsSync.rmSync(localTmp, { force: true });
    }
  }

  /**
   * Upload one file to the server's temp dir; null when it failed (recorded) or changed meanwhile
   * (re-queued). A file read without its hash (DEFERRED_HASH) gets the hash of the bytes sent,
   * provided its fingerprint after the upload is still the one it was read with.
   */
  private async uploadOne(link: Link, remote: RemoteFolder, op: Extract<PushOp, { op: 'put' }>, locals: Map<string, LocalState | null>): Promise<PushOp | null> {
    if (op.entry.type !== 'file') return op;
    const name = newTempName('up');
    const localAbs = path.join(this.root, op.path);
    const transfer = this.client.beginTransfer(this.name, op.path, 'push', op.entry.size);
    try {
      const base = this.state.getBase(op.path)?.entry;
      const delta = base?.type === 'file'
        ? await pushDelta({ ssh: link.ssh, peer: link.peer, folder: this.name, rel: op.path, localAbs, size: op.entry.size, base, remotePath: `${remote.tmp}/${name}`, onProgress: (done) => transfer.progress(done) })
        : null;
      const sent = delta ?? (await link.ssh.uploadFile(localAbs, `${remote.tmp}/${name}`, { onProgress: (done) => transfer.progress(done) }));
      // Content as agreed (only its metadata changed): a metadata-only put.
      const extra = delta === null ? {} : delta.sentBytes === 0 ? { upload: null } : { delta: true };
      if (delta !== null) this.logger.debug(`push ${showPath(op.path)}: delta of ${delta.sentBlocks}/${delta.blocks} blocks, ${delta.sentBytes} bytes sent`);
      if (op.entry.hash === DEFERRED_HASH) {
        const read = locals.get(op.path) ?? null;
        let after: StatFingerprint | null = null;
        try {
          after = fingerprint(fsSync.lstatSync(localAbs));
        } catch {
          // gone: not the file that was read
        }
        if (read !== null && sent.size === op.entry.size && isSameFingerprint(read.stat, after)) {
          const entry: Entry = { ...op.entry, hash: sent.hash };
          locals.set(op.path, { entry, stat: read.stat });
          return { ...op, entry, upload: name, ...extra };
        }
      }
      if (sent.hash !== op.entry.hash) {
        // Changed while being sent: never commit a mix. A file still being written is busy: look
        // at it again after a backoff rather than sending it over and over while it grows.
        await link.ssh.unlink(`${remote.tmp}/${name}`).catch(() => undefined);
        this.state.markDirty([op.path]);
        this.recordPushFailure(op.path, new SyncError('FILE_BUSY', 'changed while it was being sent; sent again once it is still'));
        return null;
      }
      return { ...op, upload: name, ...extra };
    } catch (err) {
      if (err instanceof FileChangedError) {
        this.state.markDirty([op.path]);
        this.recordPushFailure(op.path, new SyncError('FILE_BUSY', 'changed while it was being sent; sent again once it is still'));
        return null;
      }
      this.recordPushFailure(op.path, err);
      await link.ssh.unlink(`${remote.tmp}/${name}`).catch(() => undefined);
      return null;
    } finally {
      transfer.end();
    }
  }

  /**
   * True when `p` is a name the wire rejects (see wire/unsendable): one permanent failed task
   * while it is on disk and not ignored, none once it is gone.
   */
  private async refuseUnsendable(p: string): Promise<boolean> {
    const reason = unsendableReason(p);
    if (reason === null) return false;
    const st = await lstatUnderRoot(this.root, p);
    if (st === null || this.ignore.isIgnored(p, st.isDirectory())) this.state.clearFailure(p, 'push');
    else if (!this.state.failed.some((t) => t.path === p && t.op === 'push')) this.recordPushTask(p, reason, true, 'not sent');
    return true;
  }

  private recordPushFailure(p: string, err: unknown): void {
    const { message, permanent } = classify(err, 'push');
    this.recordPushTask(p, message, permanent, 'failed');
  }

  /**
   * A push that failed: a task with its backoff, and, unless it is permanent, the path back in
   * the outbox (it may have come from a walk, not from the outbox): the outbox keeps the retry
   * timer armed, and `takeDirty` holds the path back until its backoff is over.
   */
  private recordPushTask(p: string, lastError: string, permanent: boolean, how: string, shown = lastError): void {
    const task = this.state.recordFailure({ path: p, op: 'push', lastError, permanent }, Date.now());
    if (!permanent) this.state.markDirty([p]);
    this.logger.warn(`push ${showPath(p)} ${how} (attempt ${task.attempts}${permanent ? ', permanent' : ''}): ${shown}`);
  }

  private async commitChunk(link: Link, ops: PushOp[], locals: Map<string, LocalState | null>): Promise<boolean> {
    let results: PushResult[];
    const sentAt = Date.now();
    try {
      ({ results } = await link.peer.request('push', { folder: this.name, ops }, 600_000));
      this.logger.debug(`commit of ${ops.length} op(s) took ${Date.now() - sentAt} ms`);
    } catch (err) {
      for (const op of ops) this.state.markDirty([op.op === 'rename' ? op.to : op.path]);
      for (const op of ops) if (op.op === 'rename') this.state.markDirty([op.from]);
      this.logger.warn(`push to server failed: ${(err as Error).message}`);
      return false;
    }
    for (const [i, op] of ops.entries()) {
      const result = results[i];
      if (result === undefined) continue;
      try {
        await this.applyPushResult(link, op, result, locals);
      } catch (err) {
        this.recordPushFailure(op.op === 'rename' ? op.to : op.path, err);
      }
    }
    this.state.touchLastSync();
    return true;
  }

  private async applyPushResult(link: Link, op: PushOp, result: PushResult, locals: Map<string, LocalState | null>): Promise<void> {
    const p = pathOfOp(op);
    const out = decidePushOutcome(op, result, locals.get(p) ?? null, this.bases, showPath);
    if (out.failure !== null) {
      const { code, message, permanent } = out.failure;
      this.recordPushTask(p, `${code}: ${message}`, permanent, 'refused by the server', message);
      return;
    }
    this.state.clearFailure(p, 'push');
    if (out.moveAside !== null) {
      // The server names the copy: never replace what is at that name here (client/conflictmove).
      const { from, to } = out.moveAside;
      const target = await freeConflictTarget(this.root, to);
      await movePath(this.root, from, target);
      if (target !== to) {
        out.setBases = out.setBases.filter(([q]) => q !== to);
        out.recheck.push(target);
        this.logger.warn(`conflict copy of ${showPath(from)}: the server named ${showPath(to)}, which exists here and is kept; ours is ${showPath(target)}`);
      }
    }
    for (const q of out.deleteBases) this.state.deleteBase(q);
    for (const [q, record] of out.setBases) this.state.setBase(q, record);
    // It may have been found by a walk before the watcher reported its creation: were it removed
    // within that same batch of events, no event would ever come. Read it once more, later.
    this.secondLook.add(out.setBases.map(([q]) => q));
    for (const q of out.noRename) this.noRename.add(q);
    this.state.markDirty(out.recheck);
    for (const tree of out.rescanTrees) this.movedTrees.add(tree);
    if (out.log !== null) this.logger[out.log.level](out.log.message);
    if (out.pull !== null) await this.applyChange(link, out.pull, true);
  }

  // ---------------------------------------------------------------------------------------------
  // Pull

  requestPull(): void {
    this.pullWanted = true;
    if (!this.pulling) void this.pullLoop();
  }

  private async pullLoop(): Promise<void> {
    this.pulling = true;
    try {
      while (this.pullWanted) {
        this.pullWanted = false;
        const link = this.client.link;
        if (link === null || this.remote === null || this.paused !== null || this.client.isStopping) return;
        for (;;) {
          // The page is asked for under the folder lock: a page listed before one of our own
          // commits would bring back, over it, what that commit replaced (a directory renamed
          // away after the page was listed would be recreated at its old path).
          const page = await this.lock.run(async () => {
            const listed = await link.peer.request('changes', { folder: this.name, after: this.state.cursor, limit: PULL_PAGE }, 120_000);
            this.pendingPull = Math.max(0, listed.head - this.state.cursor);
            if (listed.reset) {
              await this.fullResync(link);
              return null;
            }
            if (listed.changes.length > 0) {
              await this.state.beginApply(listed.changes);
              await this.applyPage(link, listed.changes);
            }
            return listed;
          });
          if (page === null) continue;
          if (page.changes.length === 0) break;
          const last = page.changes[page.changes.length - 1]!.seq;
          this.state.setCursor(last);
          await this.state.flush();
          this.state.endApply();
          link.peer.request('ack', { folder: this.name, seq: last }, 30_000).catch(() => undefined);
        }
        this.pendingPull = 0;
      }
    } catch (err) {
      this.logger.warn(`pull: ${(err as Error).message}`);
      this.pullWanted = true;
      setTimeout(() => this.requestPull(), 1000).unref();
    } finally {
      this.pulling = false;
    }
  }

  /** The server forgot what we had seen (or never knew us): compare everything. */
  private async fullResync(link: Link): Promise<void> {
    this.logger.warn('the server no longer has this client\'s place in its log: merging with its full listing');
    // The server's numbering may have restarted and its listing may miss what it lost: base
    // versions mean nothing now. Merge as on a first sync (promise 10) instead of reading "not on
    // the server" as "deleted": identical files are recorded, differing ones kept both, and
    // files only here are pushed back. A reset never deletes anything. Each page is applied as
    // it arrives: one page is held at a time, never the whole listing (a server could send any
    // number of them); only the listed paths are kept, as the base index keeps them anyway.
    const known = [...this.state.basePaths()];
    for (const p of known) this.state.deleteBase(p);
    const listed = new Set<string>();
    let after = 0;
    let head = 0;
    for (;;) {
      const page = await link.peer.request('changes', { folder: this.name, after, limit: PULL_PAGE }, 120_000);
      head = page.head;
      if (page.changes.length === 0) break;
      for (const c of page.changes) listed.add(c.path);
      after = page.changes[page.changes.length - 1]!.seq;
      await this.applyPage(link, page.changes);
    }
    this.state.markDirty(pathsToPushAfterResync(known, listed, (p) => this.state.getBase(p) !== null));
    this.state.setCursor(head);
    await this.state.flush();
    this.schedulePush();
  }

  /**
   * Small files this page brings that are not here yet: fetched in bundles, ahead of the loop
   * that applies the changes one by one. Versions this node made are skipped (nothing to fetch).
   */
  private prefetchSmallFiles(link: Link, changes: Change[]): BundlePrefetcher {
    const wanted: WantedFile[] = [];
    const sizes = new Map<number, number>();
    for (const change of changes) {
      const entry = change.entry;
      if (entry?.type !== 'file' || entry.size > BUNDLE_FILE_MAX || change.origin === this.client.config.node.name) continue;
      if (this.ignore.isIgnored(change.path, false)) continue;
      const base = this.state.getBase(change.path)?.entry;
      if (base?.type === 'file' && base.hash === entry.hash) continue;
      wanted.push({ key: change.seq, path: change.path, hash: entry.hash });
      sizes.set(change.seq, entry.size);
    }
    const limits = { maxFiles: PULL_BUNDLE_FILES, maxBytes: PULL_BUNDLE_BYTES };
    return new BundlePrefetcher(wanted, (f) => sizes.get(f.key) ?? 0, limits, (group) => this.fetchBundle(link, group));
  }

  /** Ask the server for one bundle, download it, and return the contents that match their hashes. */
  private async fetchBundle(link: Link, group: WantedFile[]): Promise<Map<number, Buffer>> {
    const contents = new Map<number, Buffer>();
    const remote = this.remote;
    if (remote === null) return contents;
    let made;
    try {
      made = await link.peer.request('bundle', { folder: this.name, files: group.map(({ path: p, hash }) => ({ path: p, hash })) }, 120_000);
    } catch (err) {
      this.logger.warn(`bundle of ${group.length} file(s): ${(err as Error).message}; fetching them one by one`);
      return contents;
    }
    if (made.bundle === null) return contents;
    const remotePath = `${remote.tmp}/${made.bundle}`;
    let localTmp: string | null = null;
    const total = made.parts.reduce((sum, part) => sum + (part?.length ?? 0), 0);
    // The bundle holds the parts and nothing more: never download past the furthest part's end
    // (a server cannot make this client fetch more than MAX_BUNDLE_BYTES); each part is then
    // checked against the hash this client expects.
    const extent = Math.min(MAX_BUNDLE_BYTES, made.parts.reduce((end, part) => Math.max(end, part === null ? 0 : part.offset + part.length), 0));
    const transfer = this.client.beginTransfer(this.name, `${group[0]!.path} (bundle of ${group.length})`, 'pull', total);
    try {
      localTmp = await tempFilePath(this.root, newTempName('bundle'));
      await link.ssh.downloadFile(remotePath, localTmp, { maxSize: extent, onProgress: (done) => transfer.progress(done) });
      const data = readSmallFile(localTmp, MAX_BUNDLE_BYTES);
      for (const [i, file] of group.entries()) {
        const part = made.parts[i];
        if (part == null || part.offset + part.length > data.length) continue;
        const bytes = data.subarray(part.offset, part.offset + part.length);
        if (createHash('sha256').update(bytes).digest('hex') === file.hash) contents.set(file.key, bytes);
      }
    } catch (err) {
      this.logger.warn(`bundle of ${group.length} file(s): ${(err as Error).message}; fetching them one by one`);
    } finally {
      transfer.end();
      if (localTmp !== null) fsSync.rmSync(localTmp, { force: true });
      void link.ssh.unlink(remotePath).catch(() => undefined);
    }
    return contents;
  }

  private async applyPage(link: Link, changes: Change[]): Promise<void> {
    if ((await this.checkPresence()) !== null) throw new Error(`folder paused: ${this.paused}`);
    const prefetched = this.prefetchSmallFiles(link, changes);
    const inFlight = new Map<string, Promise<void>>();
    const waitAll = async (): Promise<void> => {
      await Promise.all(inFlight.values());
    };
    let syncignoreChanged = false;
    for (const change of changes) {
      if (this.ignore.isIgnored(change.path, change.entry?.type === 'dir')) continue;
      if (change.path === '.syncignore') syncignoreChanged = true;
      this.state.clearFailure(change.path, 'pull');
      const isDownload = change.entry?.type === 'file';
      if (!isDownload || inFlight.has(change.path)) await waitAll();
      if (isDownload) {
        while (inFlight.size >= TRANSFER_CONCURRENCY) await Promise.race(inFlight.values());
        const job = this.applyChange(link, change, false, prefetched).finally(() => inFlight.delete(change.path));
        inFlight.set(change.path, job);
      } else {
        await this.applyChange(link, change, false, prefetched);
      }
    }
    await waitAll();
    if (syncignoreChanged) await this.loadSyncignore();
  }

  private async retryPulls(changes: Change[]): Promise<void> {
    const link = this.client.link;
    if (link === null) return;
    for (const change of changes) await this.applyChange(link, change, false);
    await this.state.flush();
  }

  /** Apply one change from the feed to the local disk, recording failures as tasks. */
  async applyChange(link: Link, change: Change, force: boolean, prefetched: BundlePrefetcher | null = null): Promise<void> {
    try {
      await this.applyChangeOrThrow(link, change, force, prefetched);
      this.state.clearFailure(change.path, 'pull');
    } catch (err) {
      const { message, permanent } = classify(err, 'pull');
      const task = this.state.recordFailure({ path: change.path, op: 'pull', lastError: message, permanent, change }, Date.now());
      this.logger.warn(`pull ${showPath(change.path)} failed (attempt ${task.attempts}${permanent ? ', permanent' : ''}): ${message}`);
      this.scheduleRetry();
    }
  }

  private async readForPull(p: string, base: BaseRecord | null): Promise<LocalState | null> {
    const local = await readInFolder(this.root, p, {
      knownStat: base?.stat ?? null,
      knownHash: base?.entry.type === 'file' ? base.entry.hash : null,
    });
    if (local === 'unsupported') throw Object.assign(new Error('a socket, FIFO or device stands at this path'), { code: 'EINVAL' });
    return local;
  }

  private async applyChangeOrThrow(link: Link, change: Change, force: boolean, prefetched: BundlePrefetcher | null): Promise<void> {
    const p = change.path;
    const base = force ? null : this.state.getBase(p);
    const localState = await this.readForPull(p, this.state.getBase(p));
    const local = localState?.entry ?? null;
    let fromBase: BaseRecord | null = null;
    let fromLocal: LocalState | null = null;
    if (change.from !== undefined) {
      fromBase = this.state.getBase(change.from);
      fromLocal = await this.readForPull(change.from, fromBase).catch(() => null);
    }
    const decision = decidePull(change, base, local, fromBase, fromLocal?.entry ?? null);
    // The base gets the fingerprint read when deciding, never a later stat: an edit made since
    // then differs from it, so the next look pushes that edit instead of taking it as synced.
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
        return;
      case 'delete': {
        // Never unlinks bytes the decision did not see (a local write racing the delete).
        const result = await removePulledPath(this.root, p, { entry: local!, stat: null }, {
          conflictName: (rel) => conflictCopyPath(rel, new Date(), this.client.config.node.name, (c) => fsSync.existsSync(path.join(this.root, c))),
        });
        const removed = result.removed;
        if (!result.removed && result.copy !== null) this.state.markDirty([result.copy]);
        if (removed) {
          this.state.deleteBase(p);
          this.logger.info(`pulled delete ${showPath(p)}`);
        } else {
          // Something we never pushed is still inside: keep the directory, push what is there.
          this.state.deleteBase(p);
          this.state.markDirty([p]);
          this.schedulePush();
        }
        return;
      }
      case 'rename': {
        await movePath(this.root, decision.from, p);
        // What moved with a directory keeps what we agreed on, under its new path: the feed's
        // versions of the moved children then find them clean (or fetch a newer content),
        // instead of taking them for local edits.
        // A child committed under the old name after the rename was not carried by it (core/merge.ts).
        const children = this.state.baseUnder(decision.from).map((c) => [c, this.state.getBase(c)!] as const);
        const after = basesForPulledRename(decision.from, p, change.seq, children);
        moveBases(this.state, after.moves);
        this.state.deleteBase(decision.from);
        // What moved here that the base never knew (a local file not pushed yet) is only found by a walk.
        const movedHere = [...after.recheck];
        try {
          if (change.entry!.type === 'dir') for await (const item of walkTree(this.root, { ignore: this.ignore, under: p })) movedHere.push(item.path);
        } catch (err) {
          this.logger.debug(`walk of ${showPath(p)}: ${(err as Error).message}`); // moved on again: its own events follow
        }
        // Bases from the look before the move; what moved is looked at again (an edit made just
        // before the move has no hint at its new path; the rename moved its ctime anyway).
        // A rename may carry new metadata (a chmod right after it): give it to what moved. The
        // base then has no fingerprint, so the look that follows hashes it once.
        const wanted = change.entry!;
        const moved = fromLocal?.entry ?? null;
        let stat = fromLocal?.stat ?? null;
        if (moved !== null && !isSameEntry(moved, wanted)) {
          if (wanted.type === 'file') await restampFile(this.root, p, wanted);
          if (wanted.type === 'dir') await safeChmod(this.root, p, wanted.mode);
          stat = null;
        }
        record(wanted, stat);
        this.state.markDirty(movedHere);
        this.schedulePush();
        this.logger.info(`pulled rename ${showPath(decision.from)} -> ${showPath(p)}`);
        return;
      }
      case 'fetch':
        if (!force && change.origin === this.client.config.node.name && change.seq > this.sessionHead) {
          // Our own version, made during this connection (by a commit, or a parent the server
          // recorded for it), that our disk no longer holds: the disk is the truth. Take it as
          // the base and look again, so the difference is pushed instead of fetched back.
          this.state.setBase(p, { seq: change.seq, entry: change.entry!, stat: null });
          this.state.markDirty([p]);
          this.schedulePush();
          return;
        }
        await this.fetch(link, change, localState, prefetched);
        return;
    }
  }

  /** Create or replace the local path from the server's version. */
  private async fetch(link: Link, change: Change, localState: LocalState | null, prefetched: BundlePrefetcher | null): Promise<void> {
    const localBefore = localState?.entry ?? null;
    const p = change.path;
    const entry = change.entry!;
    if (entry.type === 'dir') {
      await placeDir(this.root, p, entry);
      const after = await readLocal(this.root, p, {});
      this.state.setBase(p, { seq: change.seq, entry, stat: after !== null && after !== 'unsupported' ? after.stat : null });
      return;
    }
    if (entry.type === 'symlink') {
      await placeSymlink(this.root, p, entry.target);
      this.state.setBase(p, { seq: change.seq, entry, stat: null });
      this.logger.info(`pulled link ${showPath(p)}`);
      return;
    }
    if (localBefore?.type === 'file' && hasSameContent(localBefore, entry)) {
      const stat = await restampFile(this.root, p, entry);
      this.state.setBase(p, { seq: change.seq, entry, stat });
      return;
    }
    const remote = this.remote!;
    const tmpAbs = await tempFilePath(this.root, newTempName('down'));
    // A small file usually came in a bundle, already checked against its hash.
    const content = (await prefetched?.take(change.seq)) ?? null;
    if (content !== null) {
      fsSync.writeFileSync(tmpAbs, content, { flag: 'wx', mode: 0o600 });
    } else {
      const transfer = this.client.beginTransfer(this.name, p, 'pull', entry.size);
      try {
        const fromEntry = change.from === undefined ? null : this.state.getBase(change.from)?.entry;
        const sources = [localBefore?.type === 'file' ? { rel: p, entry: localBefore } : null, fromEntry?.type === 'file' ? { rel: change.from!, entry: fromEntry } : null]
          .filter((s) => s !== null)
          .map((s) => ({ abs: path.join(this.root, s.rel), hash: s.entry.hash, size: s.entry.size }));
        const delta = await pullDelta({ ssh: link.ssh, peer: link.peer, folder: this.name, rel: p, remotePath: `${remote.root}/${p}`, entry, localSources: sources, outAbs: tmpAbs, onProgress: (done) => transfer.progress(done) }).catch((err: unknown) => {
          if (link.ssh.isClosed) throw err;
          this.logger.debug(`pull ${showPath(p)}: no delta (${describeFsError(err)}), fetching it whole`);
          return null;
        });
        if (delta !== null) this.logger.debug(`pull ${showPath(p)}: delta, ${delta.fetchedBytes} bytes fetched, ${delta.reusedBytes} reused`);
        else await link.ssh.downloadFile(`${remote.root}/${p}`, tmpAbs, { expectedHash: entry.hash, expectedSize: entry.size, onProgress: (done) => transfer.progress(done) });
      } catch (err) {
        await fs.rm(tmpAbs, { force: true });
        throw err;
      } finally {
        transfer.end();
      }
    }
    const localChanged = (): Error => {
      this.state.markDirty([p]);
      this.schedulePush();
      return Object.assign(new Error('changed locally while it was being pulled; the local edit goes to the server first'), { code: 'LOCAL_CHANGE' });
    };
    if (localBefore === null || localBefore.type === 'file') {
      // Never destroys local bytes the decision did not see (src/fs/place.ts).
      const placed = await placePulledFile(this.root, tmpAbs, p, entry, { entry: localBefore, stat: localState?.stat ?? null }, {
        conflictName: (rel) => conflictCopyPath(rel, new Date(), this.client.config.node.name, (c) => fsSync.existsSync(path.join(this.root, c))),
      });
      if (!placed.placed) {
        if (placed.reason === 'changed' && placed.copy !== null) {
          this.logger.warn(`${showPath(p)} changed locally while it was being pulled and the path was taken: kept it as ${showPath(placed.copy)}`);
          this.state.markDirty([placed.copy]);
        }
        throw localChanged();
      }
      this.state.setBase(p, { seq: change.seq, entry, stat: placed.stat });
      this.logger.info(`pulled ${showPath(p)}`);
      return;
    }
    // Check before writing: a directory or link there must still be what we decided on.
    const base = this.state.getBase(p);
    const now = await this.readForPull(p, base);
    if (!isSameEntry(now?.entry ?? null, localBefore)) {
      await fs.rm(tmpAbs, { force: true });
      throw localChanged();
    }
    const stat = await placeFile(this.root, tmpAbs, p, entry);
    this.state.setBase(p, { seq: change.seq, entry, stat });
    this.logger.info(`pulled ${showPath(p)}`);
  }

  status(): FolderStatus {
    return {
      name: this.name,
      path: this.root,
      files: this.state.files,
      bytes: this.state.bytes,
      pendingPush: this.state.pendingCount,
      pendingPull: this.pendingPull,
      conflicts: this.state.conflictCount(),
      failed: this.state.failed.length,
      paused: this.paused ?? this.refused,
      lastSync: this.state.lastSync,
      cursor: this.state.cursor,
    };
  }

  tasks(): TaskInfo[] {
    const failedPaths = new Set(this.state.failed.filter((t) => t.op === 'push').map((t) => t.path));
    const queued: TaskInfo[] = this.state.takeDirty(1000, 0)
      .filter(([p]) => !failedPaths.has(p))
      .map(([p]) => ({ folder: this.name, path: p, op: 'push', state: 'queued', attempts: 0, lastError: null, permanent: false, since: '' }));
    const failed: TaskInfo[] = this.state.failed.map((t) => ({
      folder: this.name,
      path: t.path,
      op: t.op,
      state: 'failed',
      attempts: t.attempts,
      lastError: t.lastError,
      permanent: t.permanent,
      since: t.since,
    }));
    return [...failed.sort((a, b) => (a.since < b.since ? -1 : 1)), ...queued];
  }
}

export class SyncClient extends NodeBase {
  private readonly folders = new Map<string, SyncedFolder>();
  link: Link | null = null;
  private stopped = false;
  private readonly stopController = new AbortController();
  private loop: Promise<void> | null = null;

  constructor(config: Config, logger: Logger) {
    super(config, logger);
  }

  protected override async startRole(): Promise<void> {
    for (const folder of this.config.folders) {
      const state = await ClientFolderState.open(path.join(this.config.node.stateDir, 'client', folder.name));
      const synced = new SyncedFolder(folder.name, folder.path, state, this, this.logger.child(folder.name), this.config.ignore.patterns);
      this.folders.set(folder.name, synced);
      await this.startFolder(folder.name, synced);
    }
    this.loop = this.connectLoop();
    const presence = setInterval(() => {
      for (const folder of this.folders.values()) {
        void folder.checkPresence().catch(() => undefined);
        folder.retryDue(false);
      }
    }, 2000);
    presence.unref();
    const rescan = setInterval(() => {
      for (const folder of this.folders.values()) folder.rescan();
    }, RESCAN_INTERVAL_MS === 0 ? 2 ** 31 - 1 : RESCAN_INTERVAL_MS);
    if (RESCAN_INTERVAL_MS === 0) clearInterval(rescan);
    rescan.unref();
    this.stopController.signal.addEventListener('abort', () => {
      clearInterval(presence);
      clearInterval(rescan);
    });
  }

  beginTransfer(folder: string, p: string, direction: 'push' | 'pull', total: number): { progress(done: number): void; end(): void } {
    const board = this.transfers.begin(folder, p, direction, total);
    const shown = createProgress(`[${folder}] ${direction} ${showPath(p)}`, total, {
      logger: this.logger,
      tty: process.stderr.isTTY ? process.stderr : null,
    });
    return {
      progress: (done) => {
        board.progress(done);
        shown.update(done);
      },
      end: () => {
        board.end();
        shown.end();
      },
    };
  }

  private async connectLoop(): Promise<void> {
    const server = this.config.server!;
    let backoff = 250;
    while (!this.stopped) {
      let ssh: SshSession | null = null;
      try {
        ssh = await connectSsh({
          host: server.host,
          port: server.port,
          username: server.user,
          privateKey: server.identity,
          knownHostsPath: server.knownHosts,
          hostKeyCheck: server.hostKeyCheck,
          readyTimeoutMs: server.connectTimeoutMs,
          keepaliveIntervalMs: 5000,
        });
        const { stream } = await openRpcStream(ssh, server.rpcSocket);
        const peer = createRpcPeer(stream, {
          context: null,
          log: (level, message) => this.logger[level](`rpc: ${message}`),
          handlers: {
            changed: (params) => {
              this.folders.get(params.folder)?.requestPull();
            },
          },
        });
        const hello = await peer.request(
          'hello',
          { node: this.config.node.name, folders: [...this.folders.keys()], protocol: 1 },
          30_000,
        );
        for (const folder of this.folders.values()) folder.refused = null;
        for (const name of hello.missing) {
          const folder = this.folders.get(name);
          if (folder !== undefined) folder.refused = `the server ${hello.server} does not serve it`;
          this.logger.child(name).error(`the server ${hello.server} does not serve folder ${name}`);
        }
        for (const name of hello.denied ?? []) {
          const folder = this.folders.get(name);
          if (folder !== undefined) folder.refused = `the server ${hello.server} does not let this node sync it (not in the folder's [access] there)`;
          this.logger.child(name).error(`the server ${hello.server} does not let this node (${this.config.node.name}) sync folder ${name}: it is not in the folder's [access] there`);
        }
        for (const [name, folder] of this.folders) {
          const info = hello.folders[name];
          folder.remote = info === undefined ? null : { root: info.root, tmp: info.tmp };
          folder.sessionHead = info?.head ?? Number.MAX_SAFE_INTEGER;
        }
        this.link = { ssh, peer };
        backoff = 250;
        this.logger.info(`connected to ${hello.server} (${server.host}:${server.port})`);
        for (const folder of this.folders.values()) {
          folder.requestPull();
          folder.schedulePush();
        }
        await Promise.race([peer.closed, ssh.closed, new Promise((r) => this.stopController.signal.addEventListener('abort', r))]);
        if (!this.stopped) this.logger.warn('connection to the server lost; reconnecting');
      } catch (err) {
        // The server bound this key to another node name: no retry can fix that.
        if ((err as { code?: unknown }).code === 'NODE_NAME_MISMATCH') {
          this.giveUp(err as Error);
          break;
        }
        if (!this.stopped) this.logger.warn(`cannot reach the server: ${(err as Error).message}; retrying in ${(backoff / 1000).toFixed(1)} s`);
      } finally {
        this.link = null;
        for (const folder of this.folders.values()) folder.remote = null;
        await ssh?.close().catch(() => undefined);
      }
      if (this.stopped) break;
      await sleep(backoff * (0.8 + Math.random() * 0.4), this.stopController.signal);
      backoff = Math.min(backoff * 2, 30_000);
    }
  }

  get isStopping(): boolean {
    return this.stopped;
  }

  protected override async stopRole(): Promise<void> {
    this.stopped = true;
    // Give a batch in progress a moment to finish (its results land in the base index); then
    // cut the connection, which fails what is still in flight: those paths stay in the
    // persisted outbox and go out at the next start.
    const settled = Promise.all([...this.folders.values()].map((f) => f.lock.run(() => undefined)));
    await Promise.race([settled, sleep(STOP_GRACE_MS)]);
    this.stopController.abort();
    await this.link?.ssh.close().catch(() => undefined);
    await settled;
    await this.loop;
    for (const folder of this.folders.values()) await folder.stop();
  }

  protected override folderStatuses(): FolderStatus[] {
    return [...this.folders.values()].map((f) => f.status());
  }

  protected override extraStatus(): Partial<StatusReport> {
    return { connected: this.link !== null };
  }

  override tasks(): TaskInfo[] {
    return [...this.folders.values()].flatMap((f) => f.tasks());
  }

  override retry(): number {
    let n = 0;
    for (const folder of this.folders.values()) n += folder.retryDue(true);
    return n;
  }

  // Versions and conflicts live on the server: the CLI's questions go there over the session.
  override versions(params: VersionsParams) {
    return this.askServer('versions', params);
  }
  override restore(params: RestoreParams) {
    return this.askServer('restore', params);
  }
  override conflicts(params: ConflictsParams) {
    return this.askServer('conflicts', params);
  }
  override resolve(params: ResolveParams) {
    return this.askServer('resolve', params);
  }

  private askServer<M extends 'versions' | 'restore' | 'conflicts' | 'resolve'>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    if (!this.folders.has(params.folder)) return Promise.reject(new SyncError('UNKNOWN_FOLDER', `folder ${JSON.stringify(params.folder)} is not synced by this node`));
    if (this.link === null) return Promise.reject(new SyncError('NOT_CONNECTED', `not connected to the server ${this.config.server?.host ?? ''}: try again once 'systemsync status' says connected`));
    return this.link.peer.request(method, params, 600_000);
  }
}

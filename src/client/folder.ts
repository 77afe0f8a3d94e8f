/**
 * A client's synced folder: its lifecycle (start with a scan against the base, stop, pause and
 * resume through the presence check, watcher hints, periodic rescans, retries of failed tasks)
 * and the wiring of its two workers, the pusher (client/pusher.ts) and the puller
 * (client/puller.ts). Each worker gets a narrow context object, never this folder; the client
 * (client.ts) hands the folder its connection with `connect` and takes it back with
 * `disconnect`.
 */
import fsSync from 'node:fs';
import path from 'node:path';
import type { Change } from '../core/types.js';
import { decideInterruptedPull } from '../core/merge.js';
import { conflictCopyPath } from '../core/conflict.js';
import { UnansweredPushes } from '../core/unanswered.js';
import { permissionBits } from '../core/modes.js';
import { isSameFingerprint } from '../core/reconcile.js';
import { showPath, type Logger } from '../node/log.js';
import type { FolderStatus, TaskInfo } from '../node.js';
import { isRecordedFile, walkTree, fingerprint } from '../fs/scan.js';
import { writeSnapshot, changesSince } from '../fs/watch.js';
import { cleanTempDir } from '../fs/apply.js';
import { recoverAsides } from '../fs/place.js';
import { lstatUnderRoot } from '../fs/presence.js';
import { FolderBase } from '../folder/base.js';
import { unsendableReason } from '../wire/unsendable.js';
import type { ClientFolderState } from './clientstate.js';
import type { FolderConnection, FolderPartContext, Transfer } from './context.js';
import { Pusher, type PathReading } from './pusher.js';
import { Puller } from './puller.js';

/** What a folder needs of the client that runs it. */
export interface ClientContext {
  /** This node's name. */
  readonly nodeName: string;
  /** The client's state directory (the watcher snapshot is kept there). */
  readonly stateDir: string;
  /** True once the client is stopping: nothing new is pushed or pulled. */
  isStopping(): boolean;
  /** A transfer of this folder, shown while it runs. */
  beginTransfer(p: string, direction: 'push' | 'pull', total: number): Transfer;
}

export class SyncedFolder extends FolderBase {
  /** Why the server does not sync this folder with us (not served there, or not in our [access]); null when it does. */
  private refusal: string | null = null;
  /** This folder's share of the connection to the server; null while down or refused. */
  private connection: FolderConnection | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly pusher: Pusher;
  private readonly puller: Puller;
  private readonly unanswered = new UnansweredPushes<FolderConnection>();

  constructor(
    name: string,
    root: string,
    readonly state: ClientFolderState,
    private readonly client: ClientContext,
    logger: Logger,
    patterns: string[],
  ) {
    super(name, root, logger, patterns);
    this.pusher = new Pusher(Object.assign(this.partContext(), {
      pullIgnoringBase: (conn: FolderConnection, change: Change) => this.puller.applyChange(conn, change, true),
    }));
    this.puller = new Puller(Object.assign(this.partContext(), {
      nodeName: client.nodeName,
      schedulePush: () => this.pusher.schedulePush(),
      reloadIgnore: () => this.loadSyncignore(),
    }));
  }

  /** What both workers see of this folder (read through getters: the rules and the pause change). */
  private partContext(): FolderPartContext & { readonly paused: string | null } {
    const folder = this;
    return {
      name: this.name,
      root: this.root,
      state: this.state,
      lock: this.lock,
      logger: this.logger,
      get ignore() {
        return folder.ignore;
      },
      get paused() {
        return folder.paused;
      },
      connection: () => (this.client.isStopping() ? null : this.connection),
      refreshPresence: () => this.refreshPresence(),
      beginTransfer: (p, direction, total) => this.client.beginTransfer(p, direction, total),
      scheduleRetry: () => this.scheduleRetry(),
      unanswered: this.unanswered,
    };
  }

  /**
   * A connection to the server began: `connection` is this folder's share of it (null when the server
   * does not serve it to us), `refusal` says why not.
   */
  connect(connection: FolderConnection | null, refusal: string | null): void {
    this.connection = connection;
    this.refusal = refusal;
  }

  /** The connection ended. */
  disconnect(): void {
    this.connection = null;
  }

  schedulePush(delayMs = 0): void {
    this.pusher.schedulePush(delayMs);
  }

  requestPull(): void {
    this.puller.requestPull();
  }

  private get snapshotFile(): string {
    return path.join(this.client.stateDir, 'client', this.name, 'watcher.snapshot');
  }

  async start(): Promise<void> {
    if ((await this.refreshPresence()) !== null) return;
    await this.loadSyncignore();
    // A local version a kill left moved aside by a pull goes back (or to a conflict copy) first.
    const conflictName = (rel: string): string => conflictCopyPath(rel, new Date(), this.client.nodeName, (c) => fsSync.existsSync(path.join(this.root, c)));
    const recovered = await recoverAsides(this.root, conflictName);
    if (recovered.length > 0) {
      this.logger.warn(`put back ${recovered.length} local version(s) a pull had moved aside when it was stopped: ${recovered.map(showPath).join(', ')}`);
      this.state.markDirty(recovered);
    }
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
      const reading = await this.pusher.readPath(change.path, base).catch((): PathReading => ({ kind: 'unsupported' }));
      if (reading.kind === 'unsupported' || reading.kind === 'ignored') continue;
      const local = reading.kind === 'present' ? reading.state : null;
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
    this.pusher.stop();
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
          : isSameFingerprint(base.stat, fp));
      if (!isClean) dirty.push(item.path);
    }
    for (const p of this.state.basePaths()) if (!seen.has(p)) dirty.push(p);
    if (dirty.length > 0) {
      this.logger.info(`start-up scan: ${dirty.length} path(s) to check`);
      this.state.markDirty(dirty);
    }
  }

  /** Arm the timer that puts failed tasks back in the outbox once their backoff is over. */
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
    if (pulls.length > 0) void this.lock.run(() => this.puller.retryPulls(pulls.map((t) => t.change!).filter(Boolean))).catch(() => undefined);
    this.schedulePush();
    return due.length;
  }

  status(): FolderStatus {
    return {
      name: this.name,
      path: this.root,
      files: this.state.files,
      bytes: this.state.bytes,
      pendingPush: this.state.pendingCount,
      pendingPull: this.puller.pending,
      conflicts: this.state.conflictCount(),
      failed: this.state.failed.length,
      paused: this.paused ?? this.refusal,
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

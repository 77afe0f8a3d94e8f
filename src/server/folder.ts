/**
 * One folder the hub serves: its change log, its lifecycle (start, stop, pause and resume
 * through the presence check, the watcher), what clients read from it besides the feed (bundles
 * of small files, block lists), and the wiring of its two workers: the recorder of local changes
 * (server/localchanges.ts) and the committer of pushes (server/committer.ts). Each worker gets a
 * narrow context object; the folder reaches the hub only through a HubContext.
 */
import fsSync from 'node:fs';
import path from 'node:path';
import type { Config } from '../cli/config.js';
import type { PushOp, PushResult } from '../core/types.js';
import { SyncError } from '../core/errors.js';
import { isValidBlockSize } from '../core/blocks.js';
import type { Logger } from '../node/log.js';
import { showPath } from '../node/log.js';
import { BUNDLE_FILE_MAX, MAX_BUNDLE_BYTES, type BlocksParams, type BlocksResult, type BundleParams, type BundleResult } from '../rpc.js';
import { absPathOf, readSmallFile } from '../fs/scan.js';
import { cleanTempDir, tmpDirOf } from '../fs/apply.js';
import { isReachedThroughLink } from '../fs/safefs.js';
import { FolderBase } from '../folder/base.js';
import { isSendableChange, unsendableReason, UnsendablePaths } from '../wire/unsendable.js';
import type { ChangeLog } from './changelog.js';
import { Committer } from './committer.js';
import { ServerBlocks } from './delta.js';
import { FeedCache } from './feedcache.js';
import { LocalChanges } from './localchanges.js';
import type { RecoveryHost } from './recovery.js';
import type { HeldTemp } from './tempquota.js';
import { newTempPath } from './uploads.js';
import type { VersionStore } from './versions.js';

/** Kept versions are pruned by the [versions] policy this often. */
const PRUNE_EVERY_MS = 60_000;

/** What a served folder needs of the hub. */
export interface HubContext {
  /** The server's node name: the origin of the versions the hub makes itself. */
  readonly nodeName: string;
  /** Tell the clients of this folder that its durable head moved. */
  notifyChanged(head: number): void;
  /** Count a bundle against its session and the total. @throws SyncError 'TEMP_FULL' */
  reserveTemp(sessionId: number, temp: HeldTemp): Promise<void>;
  /** A bundle that was counted was not made after all. */
  releaseTemp(sessionId: number, temp: HeldTemp): void;
}

export class ServedFolder extends FolderBase implements RecoveryHost {
  /** Block lists of its files (delta transfer). */
  readonly blocks = new ServerBlocks();
  private lastPrune = 0;
  private lastSyncAt: Date | null = null;
  /** Paths on disk whose names the wire rejects: listed as failed tasks, never recorded. */
  readonly unsendable = new UnsendablePaths();
  private headOnDisk = 0;
  /** One `changed` line for all clients, pages shared by all clients. */
  readonly feed: FeedCache;
  private started = false;
  private readonly local: LocalChanges;
  private readonly committer: Committer;

  /** Highest seq known to be on disk: the feed never shows more. */
  get durableHead(): number {
    return this.headOnDisk;
  }

  /** When a version was last made durable here. */
  get lastSync(): Date | null {
    return this.lastSyncAt;
  }

  /** start() got past its presence check once: later pauses end with a resume, not a start. */
  get isStarted(): boolean {
    return this.started;
  }

  /** The origin of versions this folder makes itself (local edits, restores, resolves). */
  get origin(): string {
    return this.hub.nodeName;
  }

  constructor(
    name: string,
    root: string,
    readonly log: ChangeLog,
    private readonly hub: HubContext,
    logger: Logger,
    patterns: string[],
    /** The versions kept of deleted and replaced files. */
    readonly kept: VersionStore,
  ) {
    super(name, root, logger, patterns);
    this.headOnDisk = log.head;
    // A name the wire rejects (recorded before this check existed) is left out of pages and
    // inline changes, not allowed to fail the validation of the whole page for every client.
    this.feed = new FeedCache(name, log, this.headOnDisk, (c) => {
      if (isSendableChange(c)) return true;
      this.logger.error(`not sent: ${showPath(c.path)}: ${unsendableReason(c.path) ?? 'BAD_PATH'}`);
      return false;
    });
    this.local = new LocalChanges(this.partContext());
    this.committer = new Committer(Object.assign(this.partContext(), {
      name,
      kept,
      blocks: this.blocks,
      absorbLocal: (p: string) => this.local.absorbLocal(p),
      absorbLocalUnder: (dir: string) => this.local.absorbLocalUnder(dir),
    }));
  }

  /** What the local-changes recorder and the committer both see of this folder (rules and pause read through getters). */
  private partContext() {
    const folder = this;
    return {
      root: this.root,
      log: this.log,
      lock: this.lock,
      logger: this.logger,
      nodeName: this.hub.nodeName,
      unsendable: this.unsendable,
      get ignore() {
        return folder.ignore;
      },
      get paused() {
        return folder.paused;
      },
      isIgnored: (p: string, isDir: boolean) => this.isIgnored(p, isDir),
      refreshPresence: () => this.refreshPresence(),
      reloadIgnore: () => this.loadSyncignore(),
      commitDurably: () => this.commitDurably(),
    };
  }

  get tmpDir(): string {
    return tmpDirOf(this.root);
  }

  async start(): Promise<void> {
    await this.refreshPresence();
    if (this.paused !== null) return;
    this.started = true;
    const removed = await cleanTempDir(this.root);
    if (removed > 0) this.logger.info(`removed ${removed} leftover temp file(s)`);
    await this.watchAndScan();
  }

  private async watchAndScan(): Promise<void> {
    await this.loadSyncignore();
    await this.watch({
      onHints: (paths) => this.local.hint(paths),
      onError: (err) => {
        this.logger.warn(`watcher: ${err.message}; rescanning`);
        void this.local.fullScan().catch((e) => this.logger.warn(`rescan: ${(e as Error).message}`));
      },
      // Most bursts here are the server's own commits; a rescan finds them recorded, cheaply.
      onBurstSettled: () => void this.local.fullScan().catch((e) => this.logger.warn(`rescan: ${(e as Error).message}`)),
    });
    await this.local.fullScan();
  }

  protected hasHistory(): boolean {
    return !this.log.isEmpty;
  }

  /** Only a folder that started once resumes: one that never did is started by the maintenance. */
  protected override mayResume(): boolean {
    return this.started;
  }

  /**
   * Back after a pause: a fresh watcher, and what changed in the folder meanwhile recorded. Temp
   * files are left alone: uploads of connected clients may be in flight.
   */
  protected whenBack(): Promise<void> {
    return this.watchAndScan();
  }

  async stop(): Promise<void> {
    this.local.stop();
    await this.closeWatcher();
    await this.lock.run(() => this.log.close());
  }

  /**
   * Flush the log, advance the durable head to what was recorded before the call, and tell the
   * clients. A push calls it after leaving the folder lock (the next commit applies while this
   * one is written); recorded local changes and restores call it under the lock.
   */
  async commitDurably(): Promise<void> {
    const head = this.log.head;
    await this.log.flush();
    if (head > this.headOnDisk) this.headOnDisk = head;
    this.lastSyncAt = new Date();
    this.hub.notifyChanged(this.headOnDisk);
  }

  /** Prune the kept versions by `policy`, at most once a minute. */
  async pruneVersions(policy: Config['versions'], now: Date): Promise<void> {
    if (now.getTime() - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = now.getTime();
    const pruned = await this.lock.run(() => this.kept.prune(policy, now));
    if (pruned > 0) this.logger.info(`pruned ${pruned} kept version(s) (${policy.keep}, ${policy.maxAgeDays} days${policy.maxBytes !== null ? `, at most ${policy.maxBytes} bytes` : ''})`);
  }

  async requireActive(): Promise<void> {
    if ((await this.refreshPresence()) !== null) throw new SyncError('FOLDER_PAUSED', `folder ${this.name} is paused on the server: ${this.paused}`);
  }

  /** The `blocks` method: the block list of the file at `path` if it holds content `hash`. */
  async blockList(params: BlocksParams): Promise<BlocksResult> {
    if ((await this.refreshPresence()) !== null) throw new SyncError('FOLDER_PAUSED', `folder ${this.name} is paused on the server: ${this.paused}`);
    if (!isValidBlockSize(params.blockSize)) throw new SyncError('INVALID_PARAMS', `params.blockSize: ${params.blockSize} is not a power of two`);
    const list = await this.blocks.listFor(this.root, params.path, this.log.get(params.path)?.entry, params.hash, params.blockSize, params.current === true);
    return { blocks: list === null ? null : list.hashes.toString('base64') };
  }

  /**
   * Write the contents of small files into one temp file for a client to download in one
   * transfer (see the `bundle` method). A file whose record has another hash (it changed since),
   * or that is absent, under a symlinked parent, not a regular file or too large, gets null.
   */
  async makeBundle(files: BundleParams['files'], sessionId: number): Promise<BundleResult> {
    if ((await this.refreshPresence()) !== null) throw new SyncError('FOLDER_PAUSED', `folder ${this.name} is paused on the server: ${this.paused}`);
    const listed = new Set<string>();
    for (const [i, f] of files.entries()) {
      if (listed.has(f.path)) throw new SyncError('INVALID_PARAMS', `params.files[${i}].path: ${showPath(f.path)} is listed twice`);
      listed.add(f.path);
    }
    const parts: BundleResult['parts'] = [];
    const chunks: Buffer[] = [];
    let total = 0;
    for (const f of files) {
      let part: BundleResult['parts'][number] = null;
      const entry = this.log.get(f.path)?.entry;
      try {
        if (entry?.type === 'file' && entry.hash === f.hash && entry.size <= BUNDLE_FILE_MAX && !(await isReachedThroughLink(this.root, f.path))) {
          const data = readSmallFile(absPathOf(this.root, f.path), BUNDLE_FILE_MAX);
          if (total + data.length <= MAX_BUNDLE_BYTES) {
            chunks.push(data);
            part = { offset: total, length: data.length };
            total += data.length;
          }
        }
      } catch {
        // Gone, replaced or grown: the client fetches it on its own and sees why.
      }
      parts.push(part);
    }
    if (chunks.length === 0) return { bundle: null, parts };
    const tmpAbs = await newTempPath(this.root, 'bundle');
    const held = { root: this.root, name: path.basename(tmpAbs), bytes: total };
    await this.hub.reserveTemp(sessionId, held);
    try {
      fsSync.writeFileSync(tmpAbs, Buffer.concat(chunks, total), { flag: 'wx', mode: 0o600 });
    } catch (err) {
      this.hub.releaseTemp(sessionId, held);
      throw err;
    }
    return { bundle: held.name, parts };
  }

  /** Commit a client's ops in order (see Committer). */
  commit(ops: PushOp[], node: string): Promise<PushResult[]> {
    return this.committer.commit(ops, node);
  }

  /** Compare one path on disk with its record; record a new version when they differ. Returns versions made. */
  absorbLocal(p: string): Promise<number> {
    return this.local.absorbLocal(p);
  }

  /** Record versions for parent directories that exist on disk but not (live) in the log. */
  recordParents(p: string, origin: string): Promise<void> {
    return this.committer.recordParents(p, origin);
  }
}

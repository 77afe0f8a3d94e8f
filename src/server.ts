/**
 * The hub. Serves each configured folder: accepts commits from clients over JSON-RPC (one
 * connection per client, reaching `rpc.sock` through the client's SSH connection), keeps the
 * change log, tells every other client what changed, and watches its own folders (promise 11).
 */
import fs from 'node:fs/promises';
import fsSync, { constants as FS, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import path from 'node:path';
import type { Config } from './cli/config.js';
import type { Entry, PushOp, PushResult, StatFingerprint, Version } from './core/types.js';
import { conflictCopyPath, formatStamp } from './core/conflict.js';
import { hasSameContent, isSameEntry } from './core/reconcile.js';
import { decideCommit, renamedEntry } from './core/commit.js';
import { otherLinkNames } from './core/merge.js';
import { parentOf, isSameOrInside, outermostPaths, RESERVED_DIR } from './core/paths.js';
import { permissionBits } from './core/modes.js';
import { ChangeLog, type ServerRecord } from './server/changelog.js';
import { FolderBase, readInFolder } from './folder/base.js';
import { SyncError, SystemsyncError, isPermanentFailure } from './core/errors.js';
import { DelayedBatch, forEachLimited } from './node/lock.js';
import type { Logger } from './node/log.js';
import { showPath } from './node/log.js';
import { BUNDLE_FILE_MAX, createRpcPeer, MAX_BUNDLE_BYTES, prepareNotification, type BlocksParams, type BlocksResult, type BundleParams, type BundleResult, type RpcPeer } from './rpc.js';
import { ServerBlocks } from './server/delta.js';
import { isValidBlockSize } from './core/blocks.js';
import { FeedCache } from './server/feedcache.js';
import { absPathOf, hashOpenFile, hashSmallFile, isRecordedFile, isSameFingerprint, readLocal, readSmallFile, SMALL_FILE, walkTree } from './fs/scan.js';
import { cleanTempDir, movePath, newTempName, placeDir, placeFile, placeSymlink, removePath, restampFile, tmpDirOf, type BeforeReplace } from './fs/apply.js';
import { checkPath, isReachedThroughLink, safeChmod, safeLstat, safeUnlink } from './fs/safefs.js';
import { TempQuota, type HeldTemp } from './server/tempquota.js';
import { isFolderAllowed } from './core/access.js';
import { Endpoint } from './endpoint/server.js';
import { PageBudget } from './wire/budget.js';
import { isSendableChange, unsendableReason, UnsendablePaths } from './wire/unsendable.js';
import { lstatUnderRoot } from './fs/presence.js';
import { describeFsError, listenPrivateSocket, NodeBase, type FolderStatus, type StatusReport, type TaskInfo } from './node.js';
import { VersionStore } from './server/versions.js';
import { listConflicts, listVersions, resolveConflicts, restoreVersion, type RecoveryHost } from './server/recovery.js';
import type { ConflictsParams, ResolveParams, RestoreParams, VersionsParams } from './rpc.js';

/** Kept versions are pruned by the [versions] policy this often. */
const PRUNE_EVERY_MS = 60_000;
/**
 * When the second look at a local change comes: well after the watcher has delivered the batch
 * that was open when the change was read (@parcel/watcher closes a batch 50 ms after the last
 * event, or 500 ms after the previous batch).
 */
const SECOND_LOOK_MS = 1500;
const VERIFY_CONCURRENCY = 8;
const APPLY_CONCURRENCY = 16;
/** A temp file untouched for this long belongs to no transfer in flight. */
const ORPHAN_UPLOAD_MS = 60 * 60 * 1000;

interface Session {
  id: number;
  peer: RpcPeer;
  node: string | null;
  /** Embedded endpoint: the node name bound to the key the client signed in with; null through a system sshd. */
  boundNode: string | null;
  folders: Set<string>;
  connectedAt: Date;
}

/** Strip the server-private fields from a record before it goes on the wire. */
function toWire(record: ServerRecord | null): Version | null {
  if (record === null) return null;
  const version: Version = { seq: record.seq, entry: record.entry, origin: record.origin };
  if (record.from !== undefined) version.from = record.from;
  return version;
}

/** One push op refused or failed; answered in that op's result, `permanent` or worth a retry. */
class OpError extends SystemsyncError {
  constructor(code: string, message: string, readonly permanent: boolean) {
    super(code, message);
  }
}

/** One served folder: its change log, its lock, its watcher, and how ops are committed to disk. */
class ServedFolder extends FolderBase implements RecoveryHost {
  /** Block lists of its files (delta transfer). */
  readonly blocks = new ServerBlocks();
  private lastPrune = 0;
  lastSync: Date | null = null;
  private pendingHints = new Set<string>();
  /** Directories recorded as new in this batch of local changes: their subtrees are walked now (and again by the second look). */
  private readonly appearedTrees = new Set<string>();
  /**
   * The second look at every path recorded as changed (a directory with everything under it), a
   * moment after the first. A walk can find a path whose creation is still in the watcher's open
   * batch, and @parcel/watcher drops a path created and removed within one batch without a word:
   * were it deleted or renamed away meanwhile, no event would ever tell us. Events about a new
   * directory's contents may also have come before it was watched, or never.
   */
  private readonly secondLook = new DelayedBatch<string>(SECOND_LOOK_MS, (due) => {
    void this.lock
      .run(async () => {
        const paths = [...due];
        const dirs = due.filter((p) => this.log.get(p)?.entry?.type === 'dir');
        for (const tree of outermostPaths(dirs)) paths.push(...(await this.pathsUnder(tree)));
        await this.recordLocalChanges(paths);
      })
      .catch((err: unknown) => this.logger.warn(`second look: ${(err as Error).message}`));
  });
  /** Paths on disk whose names the wire rejects: listed as failed tasks, never recorded. */
  readonly unsendable = new UnsendablePaths();
  private hintTimer: NodeJS.Timeout | null = null;
  /** Highest seq known to be on disk: the feed never shows more. */
  durableHead = 0;
  /** One `changed` line for all clients, pages shared by all clients. */
  readonly feed: FeedCache;
  /** start() got past its presence check once: later pauses end with a resume, not a start. */
  isStarted = false;

  /** The origin of versions this folder makes itself (local edits, restores, resolves). */
  get origin(): string {
    return this.server.nodeName;
  }

  constructor(
    name: string,
    root: string,
    readonly log: ChangeLog,
    private readonly server: SyncServer,
    logger: Logger,
    patterns: string[],
    /** The versions kept of deleted and replaced files. */
    readonly kept: VersionStore,
  ) {
    super(name, root, logger, patterns);
    this.durableHead = log.head;
    // A name the wire rejects (recorded before this check existed) is left out of pages and
    // inline changes, not allowed to fail the validation of the whole page for every client.
    this.feed = new FeedCache(name, log, this.durableHead, (c) => {
      if (isSendableChange(c)) return true;
      this.logger.error(`not sent: ${showPath(c.path)}: ${unsendableReason(c.path) ?? 'BAD_PATH'}`);
      return false;
    });
  }

  get tmpDir(): string {
    return tmpDirOf(this.root);
  }

  async start(): Promise<void> {
    await this.checkPresence();
    if (this.paused !== null) return;
    this.isStarted = true;
    const removed = await cleanTempDir(this.root);
    if (removed > 0) this.logger.info(`removed ${removed} leftover temp file(s)`);
    await this.watchAndScan();
  }

  private async watchAndScan(): Promise<void> {
    await this.loadSyncignore();
    await this.watch({
      onHints: (paths) => this.hint(paths),
      onError: (err) => {
        this.logger.warn(`watcher: ${err.message}; rescanning`);
        void this.fullScan().catch((e) => this.logger.warn(`rescan: ${(e as Error).message}`));
      },
      // Most bursts here are the server's own commits; a rescan finds them recorded, cheaply.
      onBurstSettled: () => void this.fullScan().catch((e) => this.logger.warn(`rescan: ${(e as Error).message}`)),
    });
    await this.fullScan();
  }

  protected hasHistory(): boolean {
    return !this.log.isEmpty;
  }

  /** Only a folder that started once resumes: one that never did is started by the maintenance. */
  protected override mayResume(): boolean {
    return this.isStarted;
  }

  /**
   * Back after a pause: a fresh watcher, and what changed in the folder meanwhile recorded. Temp
   * files are left alone: uploads of connected clients may be in flight.
   */
  protected whenBack(): Promise<void> {
    return this.watchAndScan();
  }

  async stop(): Promise<void> {
    if (this.hintTimer !== null) clearTimeout(this.hintTimer);
    this.secondLook.cancel();
    await this.closeWatcher();
    await this.lock.run(() => this.log.close());
  }

  /** Watcher hints: coalesced, then compared with the log under the lock. */
  hint(paths: string[]): void {
    // Files exactly as recorded are the echo of our own commits: dropped after one lstat each.
    for (const p of paths) if (!isRecordedFile(this.root, p, this.log.get(p))) this.pendingHints.add(p);
    if (this.pendingHints.size === 0) return;
    if (this.hintTimer !== null) return;
    this.hintTimer = setTimeout(() => {
      this.hintTimer = null;
      const batch = [...this.pendingHints];
      this.pendingHints.clear();
      void this.lock.run(() => this.recordLocalChanges(batch)).catch((err) => this.logger.error(`local scan: ${err.message}`));
    }, 2);
  }

  /** Walk the whole folder and every recorded path: finds edits made while the daemon was down. */
  async fullScan(): Promise<void> {
    const seen: string[] = [];
    for await (const item of walkTree(this.root, { ignore: this.ignore })) seen.push(item.path);
    const all = new Set([...seen, ...this.log.livePaths()]);
    await this.lock.run(() => this.recordLocalChanges([...all], { walked: true }));
  }

  /**
   * Record edits made directly in the server's folder as versions with the server as origin.
   * Must run under the lock. Also the check-before-write of a commit: what is on disk now is
   * recorded before a pushed op is decided against it.
   */
  async recordLocalChanges(paths: string[], options: { walked?: boolean } = {}): Promise<void> {
    if ((await this.checkPresence()) !== null) return;
    if (paths.includes('.syncignore')) await this.loadSyncignore();
    const sorted = [...new Set(paths)].sort((a, b) => a.split('/').length - b.split('/').length || (a < b ? -1 : 1));
    let changed = 0;
    for (const p of sorted) changed += await this.absorbLocal(p);
    // A directory that appeared (made, or moved in) is read again from disk now with everything
    // recorded under it: events about its contents may have come before it was watched, or never.
    // (A full scan has just walked everything. Everything recorded also gets the second look.)
    const trees = this.takeAppearedTrees();
    if (options.walked === true) trees.length = 0;
    for (const tree of trees) for (const p of await this.pathsUnder(tree)) changed += await this.absorbLocal(p);
    if (changed > 0) await this.commitDurably();
  }

  /** The outermost directories recorded as new since the last call. */
  private takeAppearedTrees(): string[] {
    const trees = outermostPaths([...this.appearedTrees]);
    this.appearedTrees.clear();
    return trees;
  }

  /** Every path strictly under `tree`, on disk or recorded, shallowest first. */
  private async pathsUnder(tree: string): Promise<string[]> {
    const found = new Set(this.log.liveUnder(tree));
    try {
      for await (const item of walkTree(this.root, { ignore: this.ignore, under: tree })) if (item.path !== tree) found.add(item.path);
    } catch (err) {
      this.logger.debug(`walk of ${showPath(tree)}: ${(err as Error).message}`);
    }
    return [...found].sort((a, b) => a.split('/').length - b.split('/').length || (a < b ? -1 : 1));
  }

  /** Compare one path on disk with its record; record a new version when they differ. Returns versions made. */
  async absorbLocal(p: string): Promise<number> {
    const unsendable = unsendableReason(p);
    if (unsendable !== null) {
      await this.noteUnsendable(p, unsendable);
      return 0;
    }
    const record = this.log.get(p);
    const known = record?.entry ?? null;
    let local;
    try {
      local = await readInFolder(this.root, p, {
        knownStat: record?.stat ?? null,
        knownHash: known?.type === 'file' ? known.hash : null,
      });
    } catch (err) {
      this.logger.warn(`cannot read ${showPath(p)}: ${describeFsError(err)}`);
      return 0;
    }
    if (local === 'unsupported') {
      this.logger.warn(`skipped ${showPath(p)}: sockets, FIFOs and devices are not synced`);
      return 0;
    }
    if (local !== null && this.isIgnored(p, local.entry.type === 'dir')) return 0;
    if (local === null) {
      if (known === null) return 0;
      let made = 0;
      if (known.type === 'dir') {
        for (const child of this.log.liveUnder(p)) {
          this.log.assign(child, null, this.server.nodeName);
          made++;
        }
      }
      this.log.assign(p, null, this.server.nodeName);
      this.logger.info(`local delete ${showPath(p)}`);
      return made + 1;
    }
    if (isSameEntry(local.entry, known)) {
      // Both null (a symlink has no fingerprint) is the same too.
      if (record !== null && record.stat !== local.stat && !isSameFingerprint(record.stat, local.stat)) this.log.setStat(p, local.stat);
      return 0;
    }
    this.log.assign(p, local.entry, this.server.nodeName, { stat: local.stat });
    this.logger.info(`local change ${showPath(p)}`);
    if (local.entry.type === 'dir' && known?.type !== 'dir') this.appearedTrees.add(p);
    this.secondLook.add([p]);
    return 1;
  }

  /** A path the wire cannot carry: a failed task while it is on disk (and not ignored), nothing once it is gone. */
  private async noteUnsendable(p: string, reason: string): Promise<void> {
    const st = await lstatUnderRoot(this.root, p);
    if (st === null || this.isIgnored(p, st.isDirectory())) {
      this.unsendable.remove(p);
      return;
    }
    if (this.unsendable.add(p, reason, new Date())) this.logger.error(`not synced: ${showPath(p)}: ${reason}`);
  }

  /**
   * Flush the log, advance the durable head to what was recorded before the call, and tell the
   * clients. Runs outside the folder lock: the next commit applies while this one is written.
   */
  async commitDurably(): Promise<void> {
    const head = this.log.head;
    await this.log.flush();
    if (head > this.durableHead) this.durableHead = head;
    this.lastSync = new Date();
    this.server.notifyChanged(this.name, this.durableHead);
  }

  // -------------------------------------------------------------------------------------------
  // Commits

  /** Prune the kept versions by `policy`, at most once a minute. */
  async pruneVersions(policy: Config['versions'], now: Date): Promise<void> {
    if (now.getTime() - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = now.getTime();
    const pruned = await this.lock.run(() => this.kept.prune(policy, now));
    if (pruned > 0) this.logger.info(`pruned ${pruned} kept version(s) (${policy.keep}, ${policy.maxAgeDays} days${policy.maxBytes !== null ? `, at most ${policy.maxBytes} bytes` : ''})`);
  }

  async requireActive(): Promise<void> {
    if ((await this.checkPresence()) !== null) throw new SyncError('FOLDER_PAUSED', `folder ${this.name} is paused on the server: ${this.paused}`);
  }

  /** The `blocks` method: the block list of the file at `path` if it holds content `hash`. */
  async blockList(params: BlocksParams): Promise<BlocksResult> {
    if ((await this.checkPresence()) !== null) throw new SyncError('FOLDER_PAUSED', `folder ${this.name} is paused on the server: ${this.paused}`);
    if (!isValidBlockSize(params.blockSize)) throw new SyncError('INVALID_PARAMS', `params.blockSize: ${params.blockSize} is not a power of two`);
    const list = await this.blocks.listFor(this.root, params.path, this.log.get(params.path)?.entry, params.hash, params.blockSize, params.current === true);
    return { blocks: list === null ? null : list.hashes.toString('base64') };
  }

  /** A delta put: the new content assembled into a fresh temp file (checked block by block and whole); the upload is removed. */
  private async assembleDelta(upload: string, op: Extract<PushOp, { op: 'put' }>): Promise<string> {
    let uploadAbs: string;
    try {
      uploadAbs = await this.uploadPath(upload);
    } catch (err) {
      throw unusableTmpError(upload, err);
    }
    try {
      const outAbs = await this.newTempPath('delta');
      await this.blocks.assemble({ root: this.root, rel: op.path, current: this.log.get(op.path)?.entry, uploadAbs, inspect: inspectUpload(upload), entry: op.entry, outAbs });
      return outAbs;
    } finally {
      await fs.rm(uploadAbs, { force: true });
    }
  }

  /** Open a pushed temp file without following links and check it is what the client said. */
  private async verifyUpload(upload: string, entry: Entry): Promise<string> {
    if (entry.type !== 'file') throw new OpError('BAD_OP', 'only files carry an upload', true);
    let tmpAbs: string;
    try {
      tmpAbs = await this.uploadPath(upload);
    } catch (err) {
      throw unusableTmpError(upload, err);
    }
    const inspect = inspectUpload(upload);
    let hashed: { hash: string; size: number };
    try {
      hashed = entry.size <= SMALL_FILE ? hashSmallFile(tmpAbs, inspect) : await hashLargeUpload(tmpAbs, inspect);
    } catch (err) {
      if (err instanceof OpError) throw err;
      throw new OpError('UPLOAD_MISSING', `upload ${upload}: ${describeFsError(err)}`, false);
    }
    if (hashed.hash !== entry.hash || hashed.size !== entry.size) {
      await fs.rm(tmpAbs, { force: true });
      throw new OpError('HASH_MISMATCH', `upload does not match the hash the client recorded (changed while sent?)`, false);
    }
    return tmpAbs;
  }

  /**
   * Split a bundle of pushed files: read it once (then remove it), check each part against the
   * entry the client recorded, and write each part to a temp file of its own. Sets `verified[i]`
   * for every op in `indexes` to the temp file's path or to the error that refuses it.
   */
  private async splitBundle(upload: string, indexes: number[], ops: PushOp[], verified: Array<string | Error | null>): Promise<void> {
    let bundleAbs: string;
    let data: Buffer;
    try {
      bundleAbs = await this.uploadPath(upload);
    } catch (err) {
      for (const i of indexes) verified[i] = unusableTmpError(upload, err);
      return;
    }
    try {
      data = readSmallFile(bundleAbs, MAX_BUNDLE_BYTES, inspectUpload(upload));
    } catch (err) {
      const refused = err instanceof OpError ? err : new OpError('UPLOAD_MISSING', `upload ${upload}: ${describeFsError(err)}`, false);
      for (const i of indexes) verified[i] = refused;
      return;
    } finally {
      try {
        fsSync.rmSync(bundleAbs, { force: true });
      } catch {
        // a directory planted at the name: left for the temp-dir cleanup
      }
    }
    const overlap = overlappingPart(indexes.map((i) => (ops[i] as Extract<PushOp, { op: 'put' }>).part!));
    if (overlap !== null) {
      // One upload committed many times over (1000 puts of the same 16 MiB would commit 16 GB).
      const refused = new OpError('BAD_UPLOAD', `parts of upload ${upload} overlap (${overlap}): each byte of a bundle belongs to one file`, true);
      for (const i of indexes) verified[i] = refused;
      return;
    }
    for (const i of indexes) {
      const op = ops[i] as Extract<PushOp, { op: 'put' }>;
      const { offset, length } = op.part!;
      try {
        if (op.entry.type !== 'file') throw new OpError('BAD_OP', 'only files carry an upload', true);
        if (offset + length > data.length) throw new OpError('BAD_UPLOAD', `part ${offset}+${length} lies past the end of upload ${upload}`, true);
        const bytes = data.subarray(offset, offset + length);
        if (length !== op.entry.size || createHash('sha256').update(bytes).digest('hex') !== op.entry.hash) {
          throw new OpError('HASH_MISMATCH', `upload does not match the hash the client recorded (changed while sent?)`, false);
        }
        const tmpAbs = await this.newTempPath('part');
        fsSync.writeFileSync(tmpAbs, bytes, { flag: 'wx', mode: 0o600 });
        verified[i] = tmpAbs;
      } catch (err) {
        verified[i] = err instanceof OpError ? err : new OpError('UPLOAD_MISSING', `upload ${upload}: ${describeFsError(err)}`, false);
      }
    }
  }

  /**
   * Write the contents of small files into one temp file for a client to download in one
   * transfer (see the `bundle` method). A file whose record has another hash (it changed since),
   * or that is absent, under a symlinked parent, not a regular file or too large, gets null.
   */
  async makeBundle(files: BundleParams['files'], sessionId: number): Promise<BundleResult> {
    if ((await this.checkPresence()) !== null) throw new SyncError('FOLDER_PAUSED', `folder ${this.name} is paused on the server: ${this.paused}`);
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
    const tmpAbs = await this.newTempPath('bundle');
    const held = { root: this.root, name: path.basename(tmpAbs), bytes: total };
    await this.server.reserveTemp(sessionId, held);
    try {
      fsSync.writeFileSync(tmpAbs, Buffer.concat(chunks, total), { flag: 'wx', mode: 0o600 });
    } catch (err) {
      this.server.tempQuota.release(sessionId, held);
      throw err;
    }
    return { bundle: held.name, parts };
  }

  /**
   * A fresh temp file path in `.systemsync/tmp`, whose parents are checked (safefs): the server
   * itself writes there, and a client can plant a symlink in place of the directory over SFTP.
   */
  private async newTempPath(suffix: string): Promise<string> {
    return this.uploadPath(newTempName(suffix));
  }

  /** The path of temp file `name` (an upload, a bundle, a part) with `.systemsync/tmp` checked to be a real directory in the folder. */
  private async uploadPath(name: string): Promise<string> {
    return (await checkPath(this.root, `${RESERVED_DIR}/tmp/${name}`, { allowReserved: true })).abs;
  }

  /**
   * A restamp (chmod, mtime) changes the inode under every name: the other recorded names of a
   * hard-linked file are read again, and recorded as local changes (no event names them).
   */
  private async absorbOtherLinks(p: string, stat: StatFingerprint | null): Promise<void> {
    if (stat === null) return;
    const links = (await fs.lstat(path.join(this.root, p)).catch(() => null))?.nlink ?? 1;
    if (links < 2) return;
    const names = this.log.livePaths().filter((q) => this.log.get(q)?.stat?.ino === stat.ino);
    for (const other of otherLinkNames(p, links, names)) await this.absorbLocal(other);
  }

  /** Record versions for parent directories that exist on disk but not (live) in the log. */
  async recordParents(p: string, origin: string): Promise<void> {
    const missing: string[] = [];
    for (let dir = parentOf(p); dir !== null; dir = parentOf(dir)) {
      if (this.log.get(dir)?.entry != null) break;
      missing.unshift(dir);
    }
    for (const dir of missing) {
      const st = await fs.lstat(path.join(this.root, dir));
      this.log.assign(dir, { type: 'dir', mode: permissionBits(st.mode) }, origin);
    }
  }

  private async placeEntry(p: string, entry: Entry, tmpAbs: string | null, node: string): Promise<StatFingerprint | null> {
    const keep = this.kept.keeper(node, 'replaced');
    if (entry.type === 'file') {
      if (tmpAbs !== null) return placeFile(this.root, tmpAbs, p, entry, keep);
      const stat = await restampFile(this.root, p, entry);
      await this.absorbOtherLinks(p, stat);
      return stat;
    }
    if (entry.type === 'dir') await placeDir(this.root, p, entry, keep);
    else await placeSymlink(this.root, p, entry.target, keep);
    return null;
  }

  private async commitPut(op: Extract<PushOp, { op: 'put' }>, node: string, tmpAbs: string | null): Promise<PushResult> {
    await this.absorbLocal(op.path);
    const current = this.log.get(op.path);
    const liveChildren = current?.entry?.type === 'dir' ? this.log.liveUnder(op.path).length : 0;
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
      const copy = conflictCopyPath(op.path, new Date(), node, (c) => this.log.get(c)?.entry != null);
      const stat = await this.placeEntry(copy, op.entry, tmpAbs, node);
      await this.recordParents(copy, node);
      const copySeq = this.log.assign(copy, op.entry, node, { stat });
      this.logger.warn(`conflict on ${showPath(op.path)}: kept the server's version, stored ${node}'s as ${showPath(copy)}`);
      return { status: 'conflict', copy, copySeq, current: toWire(current)! };
    }
    const stat = await this.placeEntry(op.path, op.entry, tmpAbs, node);
    await this.recordParents(op.path, node);
    const seq = this.log.assign(op.path, op.entry, node, { stat });
    return { status: 'ok', seq };
  }

  private async commitDelete(op: Extract<PushOp, { op: 'delete' }>, node: string): Promise<PushResult> {
    await this.absorbLocal(op.path);
    const current = this.log.get(op.path);
    const liveChildren = current?.entry?.type === 'dir' ? this.log.liveUnder(op.path).length : 0;
    const decision = decideCommit(op, { current, liveChildren, node });
    if (decision.action === 'same') return { status: 'same', seq: current?.seq ?? 0, entry: current?.entry ?? null };
    if (decision.action !== 'apply') return { status: 'stale', current: toWire(current) };
    const removed = await removePath(this.root, op.path, this.kept.keeper(node, 'deleted'));
    if (!removed) return { status: 'stale', current: toWire(current) };
    // A directory's version brings back what was deleted with it.
    if (current?.entry?.type === 'dir') this.kept.keepDir(op.path, current.entry.mode, node, new Date());
    const seq = this.log.assign(op.path, null, node);
    return { status: 'ok', seq };
  }

  private async commitRename(op: Extract<PushOp, { op: 'rename' }>, node: string): Promise<PushResult> {
    await this.absorbLocal(op.from);
    await this.absorbLocal(op.to);
    const currentFrom = this.log.get(op.from);
    const currentTo = this.log.get(op.to);
    const decision = decideCommit(op, {
      current: currentFrom,
      currentTo,
      liveChildrenOfTarget: currentTo?.entry?.type === 'dir' ? this.log.liveUnder(op.to).length : 0,
    });
    if (decision.action === 'refuse') throw new OpError(decision.code, decision.message, true);
    if (decision.action !== 'apply' || currentFrom?.entry == null) return { status: 'stale', current: toWire(currentFrom) };
    const children = currentFrom.entry.type === 'dir' ? this.log.liveUnder(op.from).reverse() : [];
    await movePath(this.root, op.from, op.to, this.kept.keeper(node, 'replaced'));
    await this.recordParents(op.to, node);
    // A chmod (or touch) made right after the rename travels with it: the moved entry gets it.
    let restamped = false;
    let stat: StatFingerprint | null = null;
    if (decision.restamp?.type === 'file') {
      stat = await restampFile(this.root, op.to, decision.restamp).catch(() => null);
      restamped = stat !== null;
      await this.absorbOtherLinks(op.to, stat);
    }
    if (decision.restamp?.type === 'dir') restamped = await safeChmod(this.root, op.to, decision.restamp.mode).then(() => true, () => false);
    if (currentFrom.entry.type === 'file' && stat === null) stat = await readLocal(this.root, op.to, {}).then((l) => (l !== null && l !== 'unsupported' ? l.stat : null));
    // The new paths come before the tombstones, so a client applying the feed in order renames
    // its local copy instead of deleting it.
    const seq = this.log.assign(op.to, renamedEntry(currentFrom.entry, op.entry, restamped), node, { from: op.from, stat });
    const moved: Array<[string, number]> = [];
    for (const child of children) {
      const childRecord = this.log.get(child)!;
      const target = op.to + child.slice(op.from.length);
      moved.push([target, this.log.assign(target, childRecord.entry, node, { from: child, stat: childRecord.stat })]);
    }
    for (const child of [...children].reverse()) this.log.assign(child, null, node);
    this.log.assign(op.from, null, node);
    return moved.length > 0 ? { status: 'ok', seq, moved } : { status: 'ok', seq };
  }

  /** Commit a client's ops in order. Slow checks (hashing uploads) run before taking the lock. */
  async commit(ops: PushOp[], session: Session): Promise<PushResult[]> {
    const node = session.node!;
    const started = Date.now();
    const verified: Array<string | Error | null> = ops.map(() => null);
    const bundles = new Map<string, number[]>();
    for (const [i, op] of ops.entries()) {
      if (op.op === 'put' && op.upload !== null && op.part !== undefined) bundles.set(op.upload, [...(bundles.get(op.upload) ?? []), i]);
    }
    for (const [upload, indexes] of bundles) await this.splitBundle(upload, indexes, ops, verified);
    await forEachLimited(ops.keys(), VERIFY_CONCURRENCY, async (i) => {
      const op = ops[i]!;
      if (op.op !== 'put' || op.upload === null || op.part !== undefined) return;
      try {
        verified[i] = op.delta === true ? await this.assembleDelta(op.upload, op) : await this.verifyUpload(op.upload, op.entry);
      } catch (err) {
        verified[i] = err as Error;
      }
    });
    const verifiedAt = Date.now();
    const applied = await this.lock.run(async () => {
      const lockedAt = Date.now();
      const results: PushResult[] = [];
      if ((await this.checkPresence()) !== null) {
        for (const _ of ops) results.push({ status: 'error', code: 'FOLDER_PAUSED', message: `folder ${this.name} is paused on the server: ${this.paused}`, permanent: false });
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
            this.logger.debug(`committed ${what} from ${node}`);
          }
          if (op.op === 'put' && op.path === '.syncignore') await this.loadSyncignore();
        } catch (err) {
          results[i] = toErrorResult(err);
          const where = op.op === 'rename' ? `${showPath(op.from)} -> ${showPath(op.to)}` : showPath(op.path);
          this.logger.warn(`${op.op} ${where} from ${node} failed: ${(err as Error).message}`);
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
    await this.commitDurably();
    this.logger.debug(
      `push of ${ops.length} op(s) from ${node}: verify ${verifiedAt - started} ms, wait ${applied.lockedAt - verifiedAt} ms, ` +
        `apply ${applied.appliedAt - applied.lockedAt} ms, flush ${Date.now() - applied.appliedAt} ms`,
    );
    return applied.results;
  }
}

/**
 * `.systemsync/tmp` could not be used for `upload` (swapped for a symlink, say). Not permanent:
 * the folder's presence check replaces a symlinked tmp, and the client's retry then succeeds.
 */
function unusableTmpError(upload: string, err: unknown): OpError {
  return new OpError('BAD_UPLOAD', `upload ${upload}: ${describeFsError(err)}`, false);
}

/** The first two parts that share bytes ("0+10 and 5+10"), or null when none do. Empty parts share nothing. */
function overlappingPart(parts: Array<{ offset: number; length: number }>): string | null {
  const sorted = parts.filter((p) => p.length > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const [a, b] = [sorted[i - 1]!, sorted[i]!];
    if (b.offset < a.offset + a.length) return `${a.offset}+${a.length} and ${b.offset}+${b.length}`;
  }
  return null;
}

/** Refuses an upload that is not a regular file, or that has other hard links. */
function inspectUpload(upload: string): (st: Stats) => void {
  return (st) => {
    if (!st.isFile()) throw new OpError('BAD_UPLOAD', `upload ${upload} is not a regular file`, true);
    // A hard link would let a rogue upload name a file outside the folder (chmod, rename).
    if (st.nlink > 1) throw new OpError('BAD_UPLOAD', `upload ${upload} has other hard links`, true);
  };
}

/** hashSmallFile for a large upload: the same checks, with reads that do not block the event loop. */
async function hashLargeUpload(tmpAbs: string, inspect: (st: Stats) => void): Promise<{ hash: string; size: number }> {
  const handle = await fs.open(tmpAbs, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  try {
    const st = await handle.stat();
    inspect(st);
    return await hashOpenFile(handle, st.size);
  } finally {
    await handle.close();
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

/**
 * Push results hold one result per op, but the `moved` list of a directory rename holds one entry
 * per path under it: 100k children of long (or control-character) names would pass the line
 * limit, and the client would drop the connection and retry the same push forever. Past the
 * byte budget the lists are left out; a client without one keeps each moved child's old seq and
 * verifies it against the feed (which carries every moved path).
 */
function boundMovedLists(results: PushResult[]): PushResult[] {
  const budget = new PageBudget();
  return results.map((r) => {
    if (budget.fits(r) || r.status !== 'ok' || r.moved === undefined) return r;
    const { moved: _dropped, ...rest } = r;
    budget.count(rest);
    return rest;
  });
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

export class SyncServer extends NodeBase {
  private readonly folders = new Map<string, ServedFolder>();
  private readonly sessions = new Set<Session>();
  /** Temp space held by the bundles each session asked for (see TempQuota). */
  readonly tempQuota = new TempQuota();
  private rpcServer: net.Server | null = null;
  private endpoint: Endpoint | null = null;
  private nextSessionId = 1;
  private maintenanceTimer: NodeJS.Timeout | null = null;

  constructor(config: Config, logger: Logger) {
    super(config, logger);
  }

  get nodeName(): string {
    return this.config.node.name;
  }

  protected override async startRole(): Promise<void> {
    for (const folder of this.config.folders) {
      const stateDir = path.join(this.config.node.stateDir, 'server', folder.name);
      const log = await ChangeLog.open(stateDir);
      const kept = await VersionStore.open(folder.path, stateDir, (p) => log.get(p)?.entry ?? null);
      const served = new ServedFolder(folder.name, folder.path, log, this, this.logger.child(folder.name), this.config.ignore.patterns, kept);
      this.folders.set(folder.name, served);
      await this.startFolder(folder.name, served);
    }
    await this.listenRpc(this.config.rpc.socket);
    if (this.config.listen !== null) {
      this.endpoint = new Endpoint({
        listen: this.config.listen,
        clients: this.config.clients,
        access: this.config.access,
        folders: this.config.folders.map((f) => ({ name: f.name, root: f.path })),
        logger: this.logger,
        onRpc: (stream, node) => this.accept(stream, node),
      });
      await this.endpoint.start();
    }
    await this.maintenance();
    this.maintenanceTimer = setInterval(() => void this.maintenance(), 5_000);
    this.maintenanceTimer.unref();
    this.logger.info(`server ${this.nodeName} serving ${this.folders.size} folder(s) on ${this.config.rpc.socket}`);
  }

  /** Periodic: resume paused folders that came back, prune trash and pulled tombstones. */
  private async maintenance(): Promise<void> {
    for (const folder of this.folders.values()) {
      try {
        // A root that vanished pauses the folder even when no event or commit looks at it; one
        // that came back resumes (checkPresence restarts its watcher and rescans it).
        if (!folder.isStarted) {
          if ((await folder.checkPresence()) === null) await folder.start();
          continue;
        }
        if ((await folder.checkPresence()) !== null) continue;
        await folder.pruneVersions(this.config.versions, new Date());
        // Uploads of a client killed before it committed them are never claimed: drop them
        // once nothing has written to them for a long while.
        const orphans = await cleanTempDir(folder.root, new Date(Date.now() - ORPHAN_UPLOAD_MS));
        if (orphans > 0) this.logger.child(folder.name).info(`removed ${orphans} abandoned upload(s)`);
        await folder.lock.run(async () => {
          if (folder.log.pruneTombstones(new Date(), this.config.trash.retentionDays * 86_400_000) > 0) await folder.log.flush();
        });
      } catch (err) {
        this.logger.child(folder.name).warn(`maintenance: ${(err as Error).message}`);
      }
    }
  }

  private async listenRpc(socketPath: string): Promise<void> {
    this.rpcServer = await listenPrivateSocket(socketPath, (socket) => this.accept(socket));
    this.rpcServer.on('error', (err) => this.logger.error(`rpc socket: ${err.message}`));
  }

  /** A new RPC stream: from rpc.sock (a system sshd's forwarding), or from the endpoint with the key's node name. */
  private accept(socket: Duplex, boundNode: string | null = null): void {
    const session: Session = { id: this.nextSessionId++, peer: null as unknown as RpcPeer, node: null, boundNode, folders: new Set(), connectedAt: new Date() };
    session.peer = createRpcPeer(socket, {
      context: session,
      log: (level, message) => this.logger[level](`rpc session ${session.id}${session.node ? ` (${session.node})` : ''}: ${message}`),
      handlers: {
        hello: (params) => this.hello(session, params),
        push: (params) => this.push(session, params),
        changes: (params) => this.changes(session, params),
        bundle: (params) => this.folderFor(session, params.folder).makeBundle(params.files, session.id),
        blocks: (params) => this.folderFor(session, params.folder).blockList(params),
        ack: (params) => this.ack(session, params),
        versions: (params) => this.versions(params, session),
        restore: (params) => this.restore(params, session),
        conflicts: (params) => this.conflicts(params, session),
        resolve: (params) => this.resolve(params, session),
      },
    });
    this.sessions.add(session);
    void session.peer.closed.then(() => {
      this.sessions.delete(session);
      void this.removeSessionTemps(session.id);
      if (session.node !== null) {
        this.logger.info(`client ${session.node} disconnected`);
        for (const name of session.folders) this.folders.get(name)?.log.touchClient(session.node, new Date());
      }
    });
  }

  /**
   * Counts a bundle against its session and the total (TempQuota), first forgetting the bundles
   * that clients have removed since. @throws SyncError 'TEMP_FULL'
   */
  async reserveTemp(sessionId: number, temp: HeldTemp): Promise<void> {
    const needed = (): boolean => this.tempQuota.used(sessionId) + temp.bytes > this.tempQuota.perSession || this.tempQuota.used() + temp.bytes > this.tempQuota.total;
    if (needed()) {
      for (const [id, held] of this.tempQuota.list()) {
        const st = await safeLstat(held.root, `${RESERVED_DIR}/tmp/${held.name}`, { allowReserved: true }).catch(() => null);
        if (st === null) this.tempQuota.release(id, held);
      }
    }
    try {
      this.tempQuota.reserve(sessionId, temp);
    } catch (err) {
      this.logger.warn(`bundle refused: ${(err as Error).message}`);
      throw err;
    }
  }

  /** A session ended: the bundles it did not remove are removed (through checked paths only). */
  private async removeSessionTemps(sessionId: number): Promise<void> {
    for (const held of this.tempQuota.endSession(sessionId)) {
      try {
        await safeUnlink(held.root, `${RESERVED_DIR}/tmp/${held.name}`, { allowReserved: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.warn(`cannot remove bundle ${held.name}: ${describeFsError(err)}`);
      }
    }
  }

  private requireHello(session: Session): string {
    if (session.node === null) throw new SyncError('NO_HELLO', 'call hello first');
    return session.node;
  }

  private folderFor(session: Session, name: string): ServedFolder {
    this.requireHello(session);
    const folder = this.folders.get(name);
    if (folder === undefined || !session.folders.has(name)) {
      throw new SyncError('UNKNOWN_FOLDER', `folder ${JSON.stringify(name)} is not served here`);
    }
    return folder;
  }

  private async hello(session: Session, params: { node: string; folders: string[]; protocol: number }) {
    if (session.boundNode !== null && params.node !== session.boundNode) {
      this.logger.warn(`refused hello as ${params.node} from the key of client ${session.boundNode}`);
      throw new SyncError(
        'NODE_NAME_MISMATCH',
        `this client's key belongs to node ${session.boundNode} in the server's [clients], but hello says ${params.node}: set [node] name = ${session.boundNode} in the client's config (or bind this key to ${params.node} on the server)`,
      );
    }
    if (params.node === this.nodeName) {
      throw new SyncError('NAME_TAKEN', `node name ${params.node} is the server's own name: give the client another [node] name`);
    }
    for (const other of this.sessions) {
      if (other !== session && other.node === params.node) {
        this.logger.warn(`client ${params.node} connected again: closing its previous session`);
        other.peer.close();
      }
    }
    session.node = params.node;
    const folders: Record<string, { root: string; tmp: string; head: number; cursor: number; floor: number }> = {};
    const missing: string[] = [];
    const denied: string[] = [];
    for (const name of params.folders) {
      const folder = this.folders.get(name);
      if (folder === undefined) {
        missing.push(name);
        continue;
      }
      if (session.boundNode !== null && !isFolderAllowed(this.config.access, name, session.boundNode)) {
        denied.push(name);
        continue;
      }
      session.folders.add(name);
      folder.log.touchClient(params.node, new Date());
      folders[name] = {
        root: folder.root,
        tmp: folder.tmpDir,
        head: folder.durableHead,
        cursor: folder.log.clientCursor(params.node)?.cursor ?? 0,
        floor: folder.log.floor,
      };
    }
    this.logger.info(`client ${params.node} connected (${Object.keys(folders).length} folder(s)${missing.length ? `, not served here: ${missing.join(', ')}` : ''})`);
    if (denied.length > 0) this.logger.warn(`refused folder(s) ${denied.join(', ')} to client ${params.node}: not in its [access]`);
    return { server: this.nodeName, folders, missing, ...(denied.length > 0 ? { denied } : {}) };
  }

  private async push(session: Session, params: { folder: string; ops: PushOp[] }) {
    const folder = this.folderFor(session, params.folder);
    const results = await folder.commit(params.ops, session);
    return { results: boundMovedLists(results) };
  }

  private async changes(session: Session, params: { folder: string; after: number; limit: number }) {
    const folder = this.folderFor(session, params.folder);
    if (folder.paused !== null) throw new SyncError('FOLDER_PAUSED', `folder ${folder.name} is paused on the server: ${folder.paused}`);
    return folder.feed.page(params.after, params.limit, folder.durableHead);
  }

  private async ack(session: Session, params: { folder: string; seq: number }) {
    const folder = this.folderFor(session, params.folder);
    folder.log.setCursor(session.node!, params.seq, new Date());
    return {};
  }

  /** The folder `name` for a client's session (one it said hello for), or for the server's own CLI (session null). */
  private recoveryFolder(name: string, session: Session | null): ServedFolder {
    if (session !== null) return this.folderFor(session, name);
    const folder = this.folders.get(name);
    if (folder === undefined) throw new SyncError('UNKNOWN_FOLDER', `folder ${JSON.stringify(name)} is not served here`);
    return folder;
  }

  override async versions(params: VersionsParams, session: Session | null = null) {
    return listVersions(this.recoveryFolder(params.folder, session), params.path);
  }

  override async restore(params: RestoreParams, session: Session | null = null) {
    const node = session?.node ?? this.nodeName;
    const result = await restoreVersion(this.recoveryFolder(params.folder, session), params.path, params.version, params.as, node);
    this.logger.child(params.folder).info(`restored ${showPath(params.path)} version ${result.version}${params.as !== null ? ` as ${showPath(params.as)}` : ''} for ${node}`);
    return result;
  }

  override async conflicts(params: ConflictsParams, session: Session | null = null) {
    return listConflicts(this.recoveryFolder(params.folder, session));
  }

  override async resolve(params: ResolveParams, session: Session | null = null) {
    const node = session?.node ?? this.nodeName;
    const result = await resolveConflicts(this.recoveryFolder(params.folder, session), params.copy, params.keep, node);
    if (result.count > 0) this.logger.child(params.folder).info(`resolved ${result.count} conflict(s) for ${node} (keep ${params.keep})`);
    return result;
  }

  /**
   * Tell every connected client that has this folder. The one that made the change is told
   * too: its pull skips its own versions without I/O, and its cursor moves past them.
   */
  notifyChanged(folder: string, head: number): void {
    const feed = this.folders.get(folder)?.feed;
    let line: string | null = null;
    for (const session of this.sessions) {
      if (!session.folders.has(folder)) continue;
      line ??= feed?.changedLine(head) ?? prepareNotification('changed', { folder, head });
      session.peer.sendPrepared(line);
    }
    if (line === null) feed?.skipTo(head);
  }

  protected override async stopRole(): Promise<void> {
    if (this.maintenanceTimer !== null) clearInterval(this.maintenanceTimer);
    for (const session of this.sessions) session.peer.close();
    await this.endpoint?.stop();
    await new Promise<void>((resolve) => (this.rpcServer ? this.rpcServer.close(() => resolve()) : resolve()));
    await fs.rm(this.config.rpc.socket, { force: true });
    for (const folder of this.folders.values()) await folder.stop();
  }

  protected override folderStatuses(): FolderStatus[] {
    return [...this.folders.values()].map((f) => ({
      name: f.name,
      path: f.root,
      files: f.log.files,
      bytes: f.log.bytes,
      pendingPush: 0,
      pendingPull: 0,
      conflicts: f.log.conflicts,
      failed: f.unsendable.size,
      paused: f.paused,
      lastSync: f.lastSync?.toISOString() ?? null,
      head: f.log.head,
      versions: { count: f.kept.count, bytes: f.kept.bytes },
    }));
  }

  override tasks(): TaskInfo[] {
    return [...this.folders.values()].flatMap((f) => f.unsendable.tasks(f.name));
  }

  protected override extraStatus(): Partial<StatusReport> {
    const clients = new Map<string, { name: string; connected: boolean; lastSeen: string | null; behind: number }>();
    for (const folder of this.folders.values()) {
      for (const [name, cursor] of folder.log.clients()) {
        const entry = clients.get(name) ?? { name, connected: false, lastSeen: null, behind: 0 };
        entry.behind += folder.log.countAfter(cursor.cursor, name);
        if (entry.lastSeen === null || cursor.lastSeen > entry.lastSeen) entry.lastSeen = cursor.lastSeen;
        clients.set(name, entry);
      }
    }
    for (const session of this.sessions) {
      if (session.node === null) continue;
      const entry = clients.get(session.node) ?? { name: session.node, connected: true, lastSeen: null, behind: 0 };
      entry.connected = true;
      entry.lastSeen = new Date().toISOString();
      clients.set(session.node, entry);
    }
    return { connected: true, clients: [...clients.values()] };
  }
}

/**
 * The puller of a client's folder: asks the server for the changes after its cursor (a page at
 * a time, under the folder lock), fetches the small files of a page in bundles, asks the core
 * what each change means here (`core/reconcile`: decidePull), and carries it out without ever
 * destroying local bytes the decision did not see (fs/place.ts, fs/unplace.ts). A reset (the
 * server forgot our cursor) merges with the server's full listing. It sees its folder only
 * through a PullContext.
 */
import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { BaseRecord, Change, Entry, FileEntry, StatFingerprint } from '../core/types.js';
import { decidePull, hasSameContent, isOwnVersion, isSameEntry } from '../core/reconcile.js';
import { basesForPulledRename, moveBases, otherLinkNames, pathsToPushAfterResync, pullsStillFailing } from '../core/merge.js';
import { conflictCopyPath } from '../core/conflict.js';
import { showPath } from '../node/log.js';
import { describeFsError } from '../node.js';
import { BUNDLE_FILE_MAX, MAX_BUNDLE_BYTES } from '../rpc.js';
import { readLocal, readSmallFile, walkTree, type LocalState } from '../fs/scan.js';
import { movePath, newTempName, placeDirIfFree, removeEmptyDir, restampFile } from '../fs/apply.js';
import { movePulledPath, placePulledFile, placePulledSymlink, type PlaceExpectation, type PlaceResult } from '../fs/place.js';
import { removePulledPath } from '../fs/unplace.js';
import { tempFilePath } from '../fs/reserved.js';
import { safeChmod } from '../fs/safefs.js';
import { readInFolder } from '../folder/base.js';
import { BundlePrefetcher, type WantedFile } from '../wire/bundles.js';
import { classify, type FolderConnection, type PullContext } from './context.js';
import { pullDelta } from './delta.js';

const TRANSFER_CONCURRENCY = 32;
const PULL_PAGE = 2000;
/** Small files per bundle, and bytes: a bundle is one SFTP transfer. */
const PULL_BUNDLE_FILES = 256;
const PULL_BUNDLE_BYTES = 4 * 1024 * 1024;

export class Puller {
  private pullWanted = false;
  private pulling = false;
  /** How many versions the server holds that this client has not applied yet (for status). */
  private pendingPull = 0;

  constructor(private readonly ctx: PullContext) {}

  get pending(): number {
    return this.pendingPull;
  }

  requestPull(): void {
    this.pullWanted = true;
    if (!this.pulling) void this.pullLoop();
  }

  private async pullLoop(): Promise<void> {
    this.pulling = true;
    try {
      while (this.pullWanted) {
        this.pullWanted = false;
        const conn = this.ctx.connection();
        if (conn === null || this.ctx.paused !== null) return;
        for (;;) {
          // The page is asked for under the folder lock: a page listed before one of our own
          // commits would bring back, over it, what that commit replaced (a directory renamed
          // away after the page was listed would be recreated at its old path).
          const page = await this.ctx.lock.run(async () => {
            const listed = await conn.peer.request('changes', { folder: this.ctx.name, after: this.ctx.state.cursor, limit: PULL_PAGE }, 120_000);
            this.pendingPull = Math.max(0, listed.head - this.ctx.state.cursor);
            if (listed.reset) {
              await this.fullResync(conn);
              return null;
            }
            if (listed.changes.length > 0) {
              await this.ctx.state.beginApply(listed.changes);
              await this.applyPage(conn, listed.changes);
            }
            return listed;
          });
          if (page === null) continue;
          // Past the head this connection began at: what earlier connections' pushes sent is settled.
          if (this.ctx.state.cursor >= conn.sessionHead) this.ctx.unanswered.settleBefore(conn);
          if (page.changes.length === 0) break;
          const last = page.changes[page.changes.length - 1]!.seq;
          this.ctx.state.setCursor(last);
          await this.ctx.state.flush();
          this.ctx.state.endApply();
          conn.peer.request('ack', { folder: this.ctx.name, seq: last }, 30_000).catch(() => undefined);
        }
        this.pendingPull = 0;
      }
    } catch (err) {
      this.ctx.logger.warn(`pull: ${(err as Error).message}`);
      this.pullWanted = true;
      setTimeout(() => this.requestPull(), 1000).unref();
    } finally {
      this.pulling = false;
    }
  }

  /** The server forgot what we had seen (or never knew us): compare everything. */
  private async fullResync(conn: FolderConnection): Promise<void> {
    this.ctx.logger.warn('the server no longer has this client\'s place in its log: merging with its full listing');
    // The server's numbering may have restarted and its listing may miss what it lost: base
    // versions mean nothing now. Merge as on a first sync (promise 10) instead of reading "not on
    // the server" as "deleted": identical files are recorded, differing ones kept both, and
    // files only here are pushed back. A reset never deletes anything. Each page is applied as
    // it arrives: one page is held at a time, never the whole listing (a server could send any
    // number of them); only the listed paths are kept, as the base index keeps them anyway.
    const known = [...this.ctx.state.basePaths()];
    for (const p of known) this.ctx.state.deleteBase(p);
    this.ctx.state.restartOwnVersions(conn.sessionHead);
    const listed = new Set<string>();
    let after = 0;
    let head = 0;
    for (;;) {
      const page = await conn.peer.request('changes', { folder: this.ctx.name, after, limit: PULL_PAGE }, 120_000);
      head = page.head;
      if (page.changes.length === 0) break;
      for (const c of page.changes) listed.add(c.path);
      after = page.changes[page.changes.length - 1]!.seq;
      await this.applyPage(conn, page.changes);
    }
    this.ctx.state.markDirty(pathsToPushAfterResync(known, listed, (p) => this.ctx.state.getBase(p) !== null));
    this.ctx.state.setCursor(head);
    await this.ctx.state.flush();
    this.ctx.schedulePush();
  }

  /**
   * Small files this page brings that are not here yet: fetched in bundles, ahead of the loop
   * that applies the changes one by one. Versions this node made are skipped (nothing to fetch).
   */
  private prefetchSmallFiles(conn: FolderConnection, changes: Change[]): BundlePrefetcher {
    const wanted: WantedFile[] = [];
    const sizes = new Map<number, number>();
    for (const change of changes) {
      const entry = change.entry;
      if (entry?.type !== 'file' || entry.size > BUNDLE_FILE_MAX || change.origin === this.ctx.nodeName) continue;
      if (this.ctx.ignore.isIgnored(change.path, false)) continue;
      const base = this.ctx.state.getBase(change.path)?.entry;
      if (base?.type === 'file' && base.hash === entry.hash) continue;
      wanted.push({ key: change.seq, path: change.path, hash: entry.hash });
      sizes.set(change.seq, entry.size);
    }
    const limits = { maxFiles: PULL_BUNDLE_FILES, maxBytes: PULL_BUNDLE_BYTES };
    return new BundlePrefetcher(wanted, (f) => sizes.get(f.key) ?? 0, limits, (group) => this.fetchBundle(conn, group));
  }

  /** Ask the server for one bundle, download it, and return the contents that match their hashes. */
  private async fetchBundle(conn: FolderConnection, group: WantedFile[]): Promise<Map<number, Buffer>> {
    const contents = new Map<number, Buffer>();
    const remote = conn.remote;
    let made;
    try {
      made = await conn.peer.request('bundle', { folder: this.ctx.name, files: group.map(({ path: p, hash }) => ({ path: p, hash })) }, 120_000);
    } catch (err) {
      this.ctx.logger.warn(`bundle of ${group.length} file(s): ${(err as Error).message}; fetching them one by one`);
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
    const transfer = this.ctx.beginTransfer(`${group[0]!.path} (bundle of ${group.length})`, 'pull', total);
    try {
      localTmp = await tempFilePath(this.ctx.root, newTempName('bundle'));
      await conn.ssh.downloadFile(remotePath, localTmp, { maxSize: extent, onProgress: (done) => transfer.progress(done) });
      const data = readSmallFile(localTmp, MAX_BUNDLE_BYTES);
      for (const [i, file] of group.entries()) {
        const part = made.parts[i];
        if (part == null || part.offset + part.length > data.length) continue;
        const bytes = data.subarray(part.offset, part.offset + part.length);
        if (createHash('sha256').update(bytes).digest('hex') === file.hash) contents.set(file.key, bytes);
      }
    } catch (err) {
      this.ctx.logger.warn(`bundle of ${group.length} file(s): ${(err as Error).message}; fetching them one by one`);
    } finally {
      transfer.end();
      if (localTmp !== null) fsSync.rmSync(localTmp, { force: true });
      void conn.ssh.unlink(remotePath).catch(() => undefined);
    }
    return contents;
  }

  private async applyPage(conn: FolderConnection, changes: Change[]): Promise<void> {
    if ((await this.ctx.refreshPresence()) !== null) throw new Error(`folder paused: ${this.ctx.paused}`);
    const prefetched = this.prefetchSmallFiles(conn, changes);
    const inFlight = new Map<string, Promise<void>>();
    const waitAll = async (): Promise<void> => {
      await Promise.all(inFlight.values());
    };
    let syncignoreChanged = false;
    for (const change of changes) {
      if (this.ctx.ignore.isIgnored(change.path, change.entry?.type === 'dir')) continue;
      if (change.path === '.syncignore') syncignoreChanged = true;
      this.ctx.state.clearFailure(change.path, 'pull');
      const isDownload = change.entry?.type === 'file';
      if (!isDownload || inFlight.has(change.path)) await waitAll();
      if (isDownload) {
        while (inFlight.size >= TRANSFER_CONCURRENCY) await Promise.race(inFlight.values());
        const job = this.applyChange(conn, change, false, prefetched).finally(() => inFlight.delete(change.path));
        inFlight.set(change.path, job);
      } else {
        await this.applyChange(conn, change, false, prefetched);
      }
    }
    await waitAll();
    if (syncignoreChanged) await this.ctx.reloadIgnore();
  }

  async retryPulls(changes: Change[]): Promise<void> {
    const conn = this.ctx.connection();
    if (conn === null) return;
    for (const change of pullsStillFailing(changes, this.ctx.state.failed)) await this.applyChange(conn, change, false);
    await this.ctx.state.flush();
  }

  /**
   * Apply one change from the feed to the local disk, recording failures as tasks. With
   * `ignoreBase`, decided as if nothing had been agreed on for the path (the push-outcome's pull).
   */
  async applyChange(conn: FolderConnection, change: Change, ignoreBase: boolean, prefetched: BundlePrefetcher | null = null): Promise<void> {
    try {
      await this.applyChangeOrThrow(conn, change, ignoreBase, prefetched);
      this.ctx.state.clearFailure(change.path, 'pull');
    } catch (err) {
      const { message, permanent } = classify(err, 'pull');
      const task = this.ctx.state.recordFailure({ path: change.path, op: 'pull', lastError: message, permanent, change }, Date.now());
      this.ctx.logger.warn(`pull ${showPath(change.path)} failed (attempt ${task.attempts}${permanent ? ', permanent' : ''}): ${message}`);
      this.ctx.scheduleRetry();
    }
  }

  private async readForPull(p: string, base: BaseRecord | null): Promise<LocalState | null> {
    const local = await readInFolder(this.ctx.root, p, {
      knownStat: base?.stat ?? null,
      knownHash: base?.entry.type === 'file' ? base.entry.hash : null,
    });
    if (local === 'unsupported') throw Object.assign(new Error('a socket, FIFO or device stands at this path'), { code: 'EINVAL' });
    return local;
  }

  private async applyChangeOrThrow(conn: FolderConnection, change: Change, ignoreBase: boolean, prefetched: BundlePrefetcher | null): Promise<void> {
    const p = change.path;
    const base = ignoreBase ? null : this.ctx.state.getBase(p);
    const localState = await this.readForPull(p, this.ctx.state.getBase(p));
    const local = localState?.entry ?? null;
    let fromBase: BaseRecord | null = null;
    let fromLocal: LocalState | null = null;
    if (change.from !== undefined) {
      fromBase = this.ctx.state.getBase(change.from);
      fromLocal = await this.readForPull(change.from, fromBase).catch(() => null);
    }
    // Our own version (it names us, or holds what a push whose answer never came sent there)
    // is never brought back over what the disk holds now.
    const isOwn = !ignoreBase && (isOwnVersion(change, this.ctx.state.ownVersions(this.ctx.nodeName)) || this.ctx.unanswered.isWhatWasSent(change));
    this.ctx.unanswered.settle(p);
    const decision = decidePull(change, base, local, fromBase, fromLocal?.entry ?? null, isOwn);
    // The base gets the fingerprint read when deciding, never a later stat: an edit made since
    // then differs from it, so the next look pushes that edit instead of taking it as synced.
    const record = (entry: Entry, stat: StatFingerprint | null): void => {
      this.ctx.state.setBase(p, { seq: change.seq, entry, stat });
    };
    switch (decision.action) {
      case 'skip':
        return;
      case 'record':
        record(change.entry!, localState?.stat ?? null);
        return;
      case 'forget':
        this.ctx.state.deleteBase(p);
        return;
      case 'keep-local':
        this.ctx.state.markDirty([p]);
        this.ctx.schedulePush();
        // The local version goes to the server first. The server's version is still to be had:
        // kept as a failed pull and tried again, for were the local edit gone before it is
        // pushed, nothing else would ever bring it (the cursor is past it).
        if (change.entry !== null) throw Object.assign(new Error('kept the local version, pushed first; the server\'s is pulled after'), { code: 'LOCAL_CHANGE' });
        return;
      case 'delete':
        await this.pullDelete(p, local!);
        return;
      case 'rename':
        await this.pullRename(change, decision.from, fromLocal);
        return;
      case 'adopt':
        // Our own version (its push's answer was lost), that our disk has moved on from: the
        // disk is the truth. Based on it, the next look pushes the difference over it.
        if (change.entry === null) this.ctx.state.deleteBase(p);
        else this.ctx.state.setBase(p, { seq: change.seq, entry: change.entry, stat: null });
        this.ctx.state.markDirty([p]);
        this.ctx.schedulePush();
        this.ctx.logger.debug(`own version of ${showPath(p)} (seq ${change.seq}) adopted: the disk moved on since it was pushed`);
        return;
      case 'fetch':
        await this.fetchVersion(conn, change, localState, prefetched);
        return;
    }
  }

  /** Download the server's version into `tmpAbs`: as a delta against local copies when it can, else whole. */
  private async download(conn: FolderConnection, change: Change, entry: FileEntry, localBefore: Entry | null, tmpAbs: string): Promise<void> {
    const p = change.path;
    const remote = conn.remote;
    const transfer = this.ctx.beginTransfer(p, 'pull', entry.size);
    try {
      const fromEntry = change.from === undefined ? null : this.ctx.state.getBase(change.from)?.entry;
      const sources = [localBefore?.type === 'file' ? { rel: p, entry: localBefore } : null, fromEntry?.type === 'file' ? { rel: change.from!, entry: fromEntry } : null]
        .filter((s) => s !== null)
        .map((s) => ({ abs: path.join(this.ctx.root, s.rel), hash: s.entry.hash, size: s.entry.size }));
      const delta = await pullDelta({ ssh: conn.ssh, peer: conn.peer, folder: this.ctx.name, rel: p, remotePath: `${remote.root}/${p}`, entry, localSources: sources, outAbs: tmpAbs, onProgress: (done) => transfer.progress(done) }).catch((err: unknown) => {
        if (conn.ssh.isClosed) throw err;
        this.ctx.logger.debug(`pull ${showPath(p)}: no delta (${describeFsError(err)}), fetching it whole`);
        return null;
      });
      if (delta !== null) this.ctx.logger.debug(`pull ${showPath(p)}: delta, ${delta.fetchedBytes} bytes fetched, ${delta.reusedBytes} reused`);
      else await conn.ssh.downloadFile(`${remote.root}/${p}`, tmpAbs, { expectedHash: entry.hash, expectedSize: entry.size, onProgress: (done) => transfer.progress(done) });
    } catch (err) {
      await fs.rm(tmpAbs, { force: true });
      throw err;
    } finally {
      transfer.end();
    }
  }

  /** A free conflict-copy name for a local version at `rel` that must leave its path. */
  private readonly conflictName = (rel: string): string =>
    conflictCopyPath(rel, new Date(), this.ctx.nodeName, (c) => fsSync.existsSync(path.join(this.ctx.root, c)));

  /** A pulled delete: the local path goes, unless it holds what the decision did not see. */
  private async pullDelete(p: string, local: Entry): Promise<void> {
    // Never unlinks bytes the decision did not see (a local write racing the delete).
    const result = await removePulledPath(this.ctx.root, p, { entry: local, stat: null }, {
      conflictName: this.conflictName,
    });
    const removed = result.removed;
    if (!result.removed && result.copy !== null) this.ctx.state.markDirty([result.copy]);
    if (removed) {
      this.ctx.state.deleteBase(p);
      this.ctx.logger.info(`pulled delete ${showPath(p)}`);
    } else {
      // Something we never pushed is still inside: keep the directory, push what is there.
      this.ctx.state.deleteBase(p);
      this.ctx.state.markDirty([p]);
      this.ctx.schedulePush();
    }
  }

  /**
   * A pulled rename: the local `from` moves to the change's path with the bases of what the
   * server's rename carried; everything that moved is looked at again.
   */
  private async pullRename(change: Change, from: string, fromLocal: LocalState | null): Promise<void> {
    const p = change.path;
    // Never over what a local write put at the path since the decision (src/fs/place.ts).
    const result = await movePulledPath(this.ctx.root, from, p, { conflictName: this.conflictName });
    if (!result.moved) {
      this.ctx.state.markDirty([p, from]);
      this.ctx.schedulePush();
      throw Object.assign(new Error('changed locally while it was being pulled; the local edit goes to the server first'), { code: 'LOCAL_CHANGE' });
    }
    // What moved with a directory keeps what we agreed on, under its new path: the feed's
    // versions of the moved children then find them clean (or fetch a newer content),
    // instead of taking them for local edits.
    // A child committed under the old name after the rename was not carried by it (core/merge.ts).
    const children = this.ctx.state.baseUnder(from).map((c) => [c, this.ctx.state.getBase(c)!] as const);
    const after = basesForPulledRename(from, p, change.seq, children);
    moveBases(this.ctx.state, after.moves);
    this.ctx.state.deleteBase(from);
    // What moved here that the base never knew (a local file not pushed yet) is only found by a walk.
    const movedHere = [...after.recheck];
    try {
      if (change.entry!.type === 'dir') for await (const item of walkTree(this.ctx.root, { ignore: this.ctx.ignore, under: p })) movedHere.push(item.path);
    } catch (err) {
      this.ctx.logger.debug(`walk of ${showPath(p)}: ${(err as Error).message}`); // moved on again: its own events follow
    }
    // Bases from the look before the move; what moved is looked at again (an edit made just
    // before the move has no hint at its new path; the rename moved its ctime anyway).
    // A rename may carry new metadata (a chmod right after it): give it to what moved. The
    // base then has no fingerprint, so the look that follows hashes it once.
    const wanted = change.entry!;
    const moved = fromLocal?.entry ?? null;
    let stat = fromLocal?.stat ?? null;
    if (moved !== null && !isSameEntry(moved, wanted)) {
      if (wanted.type === 'file') this.markOtherLinks(p, await restampFile(this.ctx.root, p, wanted), fromLocal?.links ?? 1);
      if (wanted.type === 'dir') await safeChmod(this.ctx.root, p, wanted.mode);
      stat = null;
    }
    this.ctx.state.setBase(p, { seq: change.seq, entry: wanted, stat });
    // A new local file that took the old name while it moved stays, and is pushed.
    if (result.kept !== null) movedHere.push(result.kept);
    this.ctx.state.markDirty(movedHere);
    this.ctx.schedulePush();
    this.ctx.logger.info(`pulled rename ${showPath(from)} -> ${showPath(p)}`);
  }

  /**
   * Before a pulled file or link takes the place of the local directory `p`: if it still holds
   * entries (the deletes of everything the server had in it came first), they are local content
   * the server never had; the directory moves to a conflict-copy name with them, and all of it
   * is pushed from there. Placing over it failed for ever (ENOTEMPTY) while the push of its
   * children failed on the server's file or link (the simulation, seeds 272 and 341).
   */
  private async keepFullDirectory(p: string): Promise<void> {
    const entries = await fs.readdir(path.join(this.ctx.root, p)).catch(() => []);
    if (entries.length === 0) return;
    const copy = this.conflictName(p);
    await movePath(this.ctx.root, p, copy);
    const moved = [copy];
    for await (const item of walkTree(this.ctx.root, { ignore: this.ctx.ignore, under: copy })) moved.push(item.path);
    this.ctx.state.markDirty([...moved, ...this.ctx.state.baseUnder(p)]);
    this.ctx.schedulePush();
    this.ctx.logger.warn(`${showPath(p)} became a file or link on the server while it held local content here: kept the directory as ${showPath(copy)}`);
  }

  /**
   * What a pulled file or link is placed over: what the decision read, except that a directory
   * there (a full one was kept aside just before) is removed if it is empty, and the path is then
   * expected empty. Never removes anything that took its place or came into it meanwhile.
   */
  private async expectAtPath(p: string, localState: LocalState | null, localChanged: () => Error): Promise<PlaceExpectation> {
    const localBefore = localState?.entry ?? null;
    if (localBefore?.type !== 'dir') return { entry: localBefore, stat: localState?.stat ?? null };
    if (!(await removeEmptyDir(this.ctx.root, p))) throw localChanged();
    return { entry: null, stat: null };
  }

  /** A restamp (chmod, mtime) changed every name of a hard-linked file: the other indexed names are looked at again. */
  private markOtherLinks(p: string, stat: StatFingerprint, links: number): void {
    const others = otherLinkNames(p, links, this.ctx.state.pathsOfInode(stat.ino));
    if (others.length === 0) return;
    this.ctx.state.markDirty(others);
    this.ctx.schedulePush();
  }

  /** Create or replace the local path from the server's version. */
  private async fetchVersion(conn: FolderConnection, change: Change, localState: LocalState | null, prefetched: BundlePrefetcher | null): Promise<void> {
    const localBefore = localState?.entry ?? null;
    const p = change.path;
    const entry = change.entry!;
    const localChanged = (): Error => {
      this.ctx.state.markDirty([p]);
      this.ctx.schedulePush();
      return Object.assign(new Error('changed locally while it was being pulled; the local edit goes to the server first'), { code: 'LOCAL_CHANGE' });
    };
    const conflictName = this.conflictName;
    /** A pull not placed: a local version kept under a conflict-copy name is pushed from there. */
    const notPlaced = (result: Extract<PlaceResult, { placed: false }>): Error => {
      if (result.reason === 'changed' && result.copy !== null) {
        this.ctx.logger.warn(`${showPath(p)} changed locally while it was being pulled and the path was taken: kept it as ${showPath(result.copy)}`);
        this.ctx.state.markDirty([result.copy]);
      }
      return localChanged();
    };
    if (entry.type === 'dir') {
      // A file or link there goes only if it is still what the decision saw (moved aside and
      // compared, src/fs/unplace.ts); mkdir then never replaces what appeared meanwhile.
      if (localBefore !== null && localBefore.type !== 'dir') {
        const cleared = await removePulledPath(this.ctx.root, p, { entry: localBefore, stat: localState?.stat ?? null }, { conflictName });
        if (!cleared.removed) throw notPlaced({ placed: false, reason: 'changed', copy: cleared.copy });
      }
      if (!(await placeDirIfFree(this.ctx.root, p, entry))) throw localChanged();
      const after = await readLocal(this.ctx.root, p, {});
      this.ctx.state.setBase(p, { seq: change.seq, entry, stat: after !== null && after !== 'unsupported' ? after.stat : null });
      return;
    }
    // A file or link that replaces a directory still holding what the server never had: that
    // content is kept, as a conflict copy of the directory, and pushed from there.
    if (localBefore?.type === 'dir') await this.keepFullDirectory(p);
    if (entry.type === 'symlink') {
      // Never over something the decision did not see (src/fs/place.ts).
      const expected = await this.expectAtPath(p, localState, localChanged);
      const placed = await placePulledSymlink(this.ctx.root, p, entry.target, expected, { conflictName });
      if (!placed.placed) throw notPlaced(placed);
      this.ctx.state.setBase(p, { seq: change.seq, entry, stat: null });
      this.ctx.logger.info(`pulled link ${showPath(p)}`);
      return;
    }
    if (localBefore?.type === 'file' && hasSameContent(localBefore, entry)) {
      const stat = await restampFile(this.ctx.root, p, entry);
      this.ctx.state.setBase(p, { seq: change.seq, entry, stat });
      this.markOtherLinks(p, stat, localState?.links ?? 1);
      return;
    }
    const tmpAbs = await tempFilePath(this.ctx.root, newTempName('down'));
    // A small file usually came in a bundle, already checked against its hash.
    const content = (await prefetched?.take(change.seq)) ?? null;
    if (content !== null) {
      fsSync.writeFileSync(tmpAbs, content, { flag: 'wx', mode: 0o600 });
    } else {
      await this.download(conn, change, entry, localBefore, tmpAbs);
    }
    // Never destroys local bytes the decision did not see (src/fs/place.ts).
    const expected = await this.expectAtPath(p, localState, localChanged).catch(async (err: unknown) => {
      await fs.rm(tmpAbs, { force: true });
      throw err;
    });
    const placed = await placePulledFile(this.ctx.root, tmpAbs, p, entry, expected, { conflictName });
    if (!placed.placed) throw notPlaced(placed);
    this.ctx.state.setBase(p, { seq: change.seq, entry, stat: placed.stat });
    this.ctx.logger.info(`pulled ${showPath(p)}`);
  }
}

/**
 * Edits made directly in the hub's own folder (promise 11): watcher hints are coalesced and
 * compared with the change log under the folder lock; what differs is recorded as a version with
 * the server as origin, and announced. A directory that appears is walked now and every recorded
 * path is looked at once more a moment later (events may be lost). A commit also runs
 * `absorbLocal` first, so a pushed op is decided against what is on disk now. It sees its
 * folder only through a LocalChangesContext.
 */
import type { IgnoreMatcher } from '../core/ignore.js';
import { outermostPaths, pathsInsideAny, shallowestFirst } from '../core/paths.js';
import { isSameEntry, isSameFingerprint } from '../core/reconcile.js';
import { DelayedBatch, type SerialLock } from '../node/lock.js';
import type { Logger } from '../node/log.js';
import { showPath } from '../node/log.js';
import { describeFsError } from '../node.js';
import { isRecordedFile, walkTree, type LocalState } from '../fs/scan.js';
import { otherLinkNames } from '../core/merge.js';
import { lstatUnderRoot } from '../fs/presence.js';
import { readInFolder } from '../folder/base.js';
import { unsendableReason, type UnsendablePaths } from '../wire/unsendable.js';
import type { ChangeLog } from './changelog.js';

/**
 * When the second look at a local change comes: well after the watcher has delivered the batch
 * that was open when the change was read (@parcel/watcher closes a batch 50 ms after the last
 * event, or 500 ms after the previous batch).
 */
const SECOND_LOOK_MS = 1500;

/** What recording local changes needs of its folder. */
export interface LocalChangesContext {
  readonly root: string;
  readonly log: ChangeLog;
  readonly lock: SerialLock;
  readonly logger: Logger;
  /** The ignore rules in force (they change with `.syncignore`). */
  readonly ignore: IgnoreMatcher;
  /** The origin of the versions recorded: the server's own node. */
  readonly nodeName: string;
  /** Paths on disk whose names the wire rejects. */
  readonly unsendable: UnsendablePaths;
  isIgnored(p: string, isDir: boolean): boolean;
  refreshPresence(): Promise<string | null>;
  /** `.syncignore` changed: read the rules again. */
  reloadIgnore(): Promise<void>;
  /** Flush the log, move the durable head, tell the clients. */
  commitDurably(): Promise<void>;
}

export class LocalChanges {
  private pendingHints = new Set<string>();
  private hintTimer: NodeJS.Timeout | null = null;
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
    void this.ctx.lock
      .run(async () => {
        const dirs = due.filter((p) => this.ctx.log.get(p)?.entry?.type === 'dir');
        await this.recordLocalChanges([...due, ...(await this.pathsUnder(outermostPaths(dirs)))]);
      })
      .catch((err: unknown) => this.ctx.logger.warn(`second look: ${(err as Error).message}`));
  });

  constructor(private readonly ctx: LocalChangesContext) {}

  /** Cancel the timers; the folder is stopping. */
  stop(): void {
    if (this.hintTimer !== null) clearTimeout(this.hintTimer);
    this.secondLook.cancel();
  }

  /** Watcher hints: coalesced, then compared with the log under the lock. */
  hint(paths: string[]): void {
    // Files exactly as recorded are the echo of our own commits: dropped after one lstat each.
    for (const p of paths) if (!isRecordedFile(this.ctx.root, p, this.ctx.log.get(p))) this.pendingHints.add(p);
    if (this.pendingHints.size === 0) return;
    if (this.hintTimer !== null) return;
    this.hintTimer = setTimeout(() => {
      this.hintTimer = null;
      const batch = [...this.pendingHints];
      this.pendingHints.clear();
      void this.ctx.lock.run(() => this.recordLocalChanges(batch)).catch((err) => this.ctx.logger.error(`local scan: ${err.message}`));
    }, 2);
  }

  /** Walk the whole folder and every recorded path: finds edits made while the daemon was down. */
  async fullScan(): Promise<void> {
    const seen: string[] = [];
    for await (const item of walkTree(this.ctx.root, { ignore: this.ctx.ignore })) seen.push(item.path);
    const all = new Set([...seen, ...this.ctx.log.livePaths()]);
    await this.ctx.lock.run(() => this.recordLocalChanges([...all], { walked: true }));
  }

  /**
   * Record edits made directly in the server's folder as versions with the server as origin.
   * Must run under the lock. Also the check-before-write of a commit: what is on disk now is
   * recorded before a pushed op is decided against it.
   */
  async recordLocalChanges(paths: string[], options: { walked?: boolean } = {}): Promise<void> {
    if ((await this.ctx.refreshPresence()) !== null) return;
    if (paths.includes('.syncignore')) await this.ctx.reloadIgnore();
    const sorted = shallowestFirst(new Set(paths));
    let changed = 0;
    for (const p of sorted) changed += await this.absorbLocal(p);
    // A directory that appeared (made, or moved in) is read again from disk now with everything
    // recorded under it: events about its contents may have come before it was watched, or never.
    // (A full scan has just walked everything. Everything recorded also gets the second look.)
    const trees = this.takeAppearedTrees();
    if (options.walked === true) trees.length = 0;
    for (const p of await this.pathsUnder(trees)) changed += await this.absorbLocal(p);
    if (changed > 0) await this.ctx.commitDurably();
  }

  /** The outermost directories recorded as new since the last call. */
  private takeAppearedTrees(): string[] {
    const trees = outermostPaths([...this.appearedTrees]);
    this.appearedTrees.clear();
    return trees;
  }

  /**
   * Every path strictly under one of `trees` (none inside another), on disk or recorded,
   * shallowest first. One pass over the recorded paths for all trees: a pass per tree made the
   * second look after a first index of 1,000 directories of 1,000 files a billion steps.
   */
  private async pathsUnder(trees: string[]): Promise<string[]> {
    if (trees.length === 0) return [];
    const found = new Set(pathsInsideAny(this.ctx.log.livePaths(), trees));
    for (const tree of trees) {
      try {
        for await (const item of walkTree(this.ctx.root, { ignore: this.ctx.ignore, under: tree })) if (item.path !== tree) found.add(item.path);
      } catch (err) {
        this.ctx.logger.debug(`walk of ${showPath(tree)}: ${(err as Error).message}`);
      }
    }
    return shallowestFirst(found);
  }

  /** absorbLocal for every path strictly under directory `dir`, on disk or recorded. Returns versions made. */
  async absorbLocalUnder(dir: string): Promise<number> {
    let made = 0;
    for (const p of await this.pathsUnder([dir])) made += await this.absorbLocal(p);
    return made;
  }

  /** Compare one path on disk with its record; record a new version when they differ. Returns versions made. */
  async absorbLocal(p: string): Promise<number> {
    const unsendable = unsendableReason(p);
    if (unsendable !== null) {
      await this.noteUnsendable(p, unsendable);
      return 0;
    }
    const record = this.ctx.log.get(p);
    const known = record?.entry ?? null;
    let local;
    try {
      local = await readInFolder(this.ctx.root, p, {
        knownStat: record?.stat ?? null,
        knownHash: known?.type === 'file' ? known.hash : null,
      });
    } catch (err) {
      this.ctx.logger.warn(`cannot read ${showPath(p)}: ${describeFsError(err)}`);
      return 0;
    }
    if (local === 'unsupported') {
      this.ctx.logger.warn(`skipped ${showPath(p)}: sockets, FIFOs and devices are not synced`);
      return 0;
    }
    if (local !== null && this.ctx.isIgnored(p, local.entry.type === 'dir')) return 0;
    if (local === null) {
      if (known === null) return 0;
      let made = 0;
      if (known.type === 'dir') {
        for (const child of this.ctx.log.liveUnder(p)) {
          this.ctx.log.assign(child, null, this.ctx.nodeName);
          made++;
        }
      }
      this.ctx.log.assign(p, null, this.ctx.nodeName);
      this.ctx.logger.info(`local delete ${showPath(p)}`);
      return made + 1;
    }
    if (isSameEntry(local.entry, known)) {
      // Both null (a symlink has no fingerprint) is the same too.
      if (record !== null && record.stat !== local.stat && !isSameFingerprint(record.stat, local.stat)) this.ctx.log.setStat(p, local.stat);
      return 0;
    }
    // A directory replaced by a file or link took its subtree with it: the children's deletes
    // come first in the feed, so a client never places the new entry over a full directory.
    let made = 0;
    if (known?.type === 'dir' && local.entry.type !== 'dir') {
      for (const child of this.ctx.log.liveUnder(p)) (this.ctx.log.assign(child, null, this.ctx.nodeName), made++);
    }
    this.ctx.log.assign(p, local.entry, this.ctx.nodeName, { stat: local.stat });
    this.ctx.logger.info(`local change ${showPath(p)}`);
    if (local.entry.type === 'dir' && known?.type !== 'dir') this.appearedTrees.add(p);
    this.secondLook.add([p]);
    return made + 1 + (await this.absorbOtherLinks(p, local));
  }

  /**
   * Hard links: an edit through one name changed every other name of the inode, and no event
   * names them (seed 5491: an append through a conflict copy left its hard link `x.txt` changed
   * on the hub's disk, never recorded). The other recorded names are read again.
   */
  private async absorbOtherLinks(p: string, local: LocalState): Promise<number> {
    if (local.entry.type !== 'file' || local.stat === null || (local.links ?? 1) < 2) return 0;
    let made = 0;
    for (const other of otherLinkNames(p, local.links ?? 1, this.ctx.log.livePathsOnInode(local.stat.ino))) made += await this.absorbLocal(other);
    return made;
  }

  /** A path the wire cannot carry: a failed task while it is on disk (and not ignored), nothing once it is gone. */
  private async noteUnsendable(p: string, reason: string): Promise<void> {
    const st = await lstatUnderRoot(this.ctx.root, p);
    if (st === null || this.ctx.isIgnored(p, st.isDirectory())) {
      this.ctx.unsendable.remove(p);
      return;
    }
    if (this.ctx.unsendable.add(p, reason, new Date())) this.ctx.logger.error(`not synced: ${showPath(p)}: ${reason}`);
  }
}

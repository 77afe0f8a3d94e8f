/**
 * A client's persistent state for one folder: the base index (what it agreed on with the server),
 * its cursor in the server's feed, its outbox (paths to look at and maybe push, in order) and
 * its failed tasks. Everything here survives kill -9: callers `flush()` before they tell the
 * server anything that depends on it.
 */
import path from 'node:path';
import type { BaseRecord, Change } from '../core/types.js';
import type { OwnVersions } from '../core/reconcile.js';
import { isSameOrInside } from '../core/paths.js';
import { isConflictCopy } from '../core/conflict.js';
import { InodeNames } from '../core/inodes.js';
import { JsonStore, ShardedMap } from '../persistence.js';
import { baseRecordCodec } from '../state/recordcodec.js';

export interface FailedTask {
  path: string;
  op: 'push' | 'pull';
  attempts: number;
  lastError: string;
  permanent: boolean;
  since: string;
  /** When a temporary failure may be tried again (ms since epoch). */
  retryAt: number;
  /** For a pull: the change to apply again. */
  change?: Change;
}

const BACKGROUND_SAVE_MS = 1000;
/** The outbox is written at most this often while hints pour in (and on every flush). */
const OUTBOX_SAVE_MS = 200;

interface FolderMeta {
  cursor: number;
  outbox: string[];
  failed: FailedTask[];
  lastSync: string | null;
  /**
   * The server's head when this state first pushed (null: never yet; absent in older files):
   * versions above it naming this node are its own (core/reconcile `isOwnVersion`).
   */
  ownSince?: number | null;
}

export class ClientFolderState {
  /** inode → names, for files and directories with a known fingerprint (rename detection, hard links). */
  private readonly byIno = new InodeNames();
  /** Outbox as an ordered set, mirrored to `meta.outbox`. Values are a generation count. */
  private readonly dirty = new Map<string, number>();
  private generation = 0;
  private liveBytes = 0;
  private liveFiles = 0;
  private conflictCopies = 0;
  private outboxTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly base: ShardedMap<BaseRecord>,
    private readonly meta: JsonStore<FolderMeta>,
    private readonly applying: JsonStore<{ changes: Change[] }>,
  ) {
    for (const [p, record] of base.entries()) this.index(p, record, +1);
    for (const p of meta.data.outbox) this.dirty.set(p, 0);
  }

  static async open(dir: string): Promise<ClientFolderState> {
    // Callers flush() before telling the server anything; background saves only catch up.
    const base = await ShardedMap.open<BaseRecord>(path.join(dir, 'base'), { saveDelayMs: BACKGROUND_SAVE_MS, codec: baseRecordCodec });
    const meta = await JsonStore.open<FolderMeta>(path.join(dir, 'meta.json'), { cursor: 0, outbox: [], failed: [], lastSync: null, ownSince: null }, { saveDelayMs: BACKGROUND_SAVE_MS });
    const applying = await JsonStore.open<{ changes: Change[] }>(path.join(dir, 'applying.json'), { changes: [] }, { saveDelayMs: BACKGROUND_SAVE_MS });
    return new ClientFolderState(base, meta, applying);
  }

  // -- pull journal -----------------------------------------------------------------------------

  /**
   * Record, durably, the page of changes about to be applied to the disk. A kill between placing
   * a file and saving its base leaves the file here: at start, `pendingApply()` tells which
   * version it is, so it is not taken for a local edit (which would make a needless conflict).
   */
  async beginApply(changes: Change[]): Promise<void> {
    this.applying.update((a) => (a.changes = changes));
    await this.flush(); // with the bases of anything applied before
  }

  /** The page is applied and its bases are saved (call after `flush()`). */
  endApply(): void {
    if (this.applying.data.changes.length > 0) this.applying.update((a) => (a.changes = []));
  }

  /** The changes of a page whose application a kill interrupted. */
  pendingApply(): readonly Change[] {
    return this.applying.data.changes;
  }

  private index(p: string, record: BaseRecord, sign: 1 | -1): void {
    if (record.stat !== null && record.entry.type !== 'symlink') {
      if (sign > 0) this.byIno.add(record.stat.ino, p);
      else this.byIno.remove(record.stat.ino, p);
    }
    if (record.entry.type === 'file') {
      this.liveFiles += sign;
      this.liveBytes += sign * record.entry.size;
    }
    if (isConflictCopy(p)) this.conflictCopies += sign;
  }

  // -- base index -------------------------------------------------------------------------------

  getBase(p: string): BaseRecord | null {
    return this.base.get(p);
  }

  setBase(p: string, record: BaseRecord): void {
    const previous = this.base.get(p);
    if (previous !== null) this.index(p, previous, -1);
    this.base.set(p, record);
    this.index(p, record, +1);
  }

  deleteBase(p: string): void {
    const previous = this.base.get(p);
    if (previous === null) return;
    this.index(p, previous, -1);
    this.base.delete(p);
  }

  /** The base path whose local inode is `ino`, or null. */
  pathOfInode(ino: number): string | null {
    return this.byIno.last(ino);
  }

  /** Every base path whose local inode is `ino` (several for hard links). */
  pathsOfInode(ino: number): string[] {
    return this.byIno.all(ino);
  }

  /** Base paths strictly inside directory `dir`. */
  baseUnder(dir: string): string[] {
    const found: string[] = [];
    for (const p of this.base.keys()) if (p !== dir && isSameOrInside(p, dir)) found.push(p);
    return found;
  }

  basePaths(): IterableIterator<string> {
    return this.base.keys();
  }

  get hasHistory(): boolean {
    return this.base.size > 0 || this.meta.data.cursor > 0;
  }

  get files(): number {
    return this.liveFiles;
  }

  get bytes(): number {
    return this.liveBytes;
  }

  conflictCount(): number {
    return this.conflictCopies;
  }

  // -- cursor -----------------------------------------------------------------------------------

  get cursor(): number {
    return this.meta.data.cursor;
  }

  setCursor(seq: number): void {
    this.meta.update((m) => {
      m.cursor = seq;
      m.lastSync = new Date().toISOString();
    });
  }

  get lastSync(): string | null {
    return this.meta.data.lastSync;
  }

  touchLastSync(): void {
    this.meta.update((m) => (m.lastSync = new Date().toISOString()));
  }

  // -- own versions -----------------------------------------------------------------------------

  /** Which versions in the feed this state's own pushes made, or null before its first push. */
  ownVersions(node: string): OwnVersions | null {
    const since = this.meta.data.ownSince ?? null;
    return since === null ? null : { node, since };
  }

  /**
   * Before a push is sent: the first one of this state marks where its own versions begin, with
   * the server's head when the connection carrying it began, durably (a kill right after the push
   * leaves must not forget that the versions it makes are ours).
   */
  async beginOwnVersions(sessionHead: number): Promise<void> {
    if ((this.meta.data.ownSince ?? null) !== null) return;
    this.meta.update((m) => (m.ownSince = sessionHead));
    await this.meta.flush();
  }

  /** A reset: the server's numbering may have restarted; our own versions begin again at `sessionHead`. */
  restartOwnVersions(sessionHead: number): void {
    this.meta.update((m) => (m.ownSince = sessionHead));
  }

  // -- outbox -----------------------------------------------------------------------------------

  markDirty(paths: Iterable<string>): number {
    let added = 0;
    for (const p of paths) {
      this.generation++;
      if (!this.dirty.has(p)) added++;
      this.dirty.delete(p); // re-insert: keeps the latest mention's order
      this.dirty.set(p, this.generation);
    }
    if (added > 0) this.syncOutbox();
    return added;
  }

  get pendingCount(): number {
    return this.dirty.size;
  }

  /**
   * Up to `limit` dirty paths with their generation, oldest first, leaving out paths whose last
   * push failed and whose time to retry (backoff) has not come yet.
   */
  takeDirty(limit: number, now = Date.now()): Array<[string, number]> {
    const waiting = new Set(this.meta.data.failed.filter((t) => t.op === 'push' && t.retryAt > now).map((t) => t.path));
    const out: Array<[string, number]> = [];
    for (const item of this.dirty) {
      if (out.length >= limit) break;
      if (!waiting.has(item[0])) out.push(item);
    }
    return out;
  }


  /** Clear a path from the outbox unless it was marked again after `generation`. */
  clearDirty(p: string, generation: number): void {
    if (this.dirty.get(p) === generation) {
      this.dirty.delete(p);
      this.syncOutbox();
    }
  }

  /** Copy the outbox into the meta store soon (it is an O(n) copy: never once per hint). */
  private syncOutbox(): void {
    if (this.outboxTimer !== null) return;
    this.outboxTimer = setTimeout(() => this.writeOutboxNow(), OUTBOX_SAVE_MS);
    this.outboxTimer.unref();
  }

  private writeOutboxNow(): void {
    if (this.outboxTimer !== null) clearTimeout(this.outboxTimer);
    this.outboxTimer = null;
    this.meta.update((m) => (m.outbox = [...this.dirty.keys()]));
  }

  // -- failed tasks -----------------------------------------------------------------------------

  get failed(): readonly FailedTask[] {
    return this.meta.data.failed;
  }

  recordFailure(task: Omit<FailedTask, 'attempts' | 'since' | 'retryAt'>, now: number): FailedTask {
    let recorded!: FailedTask;
    this.meta.update((m) => {
      const existing = m.failed.find((t) => t.path === task.path && t.op === task.op);
      const attempts = (existing?.attempts ?? 0) + 1;
      const delay = Math.min(60_000, 500 * 2 ** Math.min(attempts, 7));
      recorded = {
        ...task,
        attempts,
        since: existing?.since ?? new Date(now).toISOString(),
        retryAt: task.permanent ? Number.MAX_SAFE_INTEGER : now + delay,
      };
      m.failed = m.failed.filter((t) => t !== existing);
      m.failed.push(recorded);
    });
    return recorded;
  }

  clearFailure(p: string, op: 'push' | 'pull'): void {
    if (!this.meta.data.failed.some((t) => t.path === p && t.op === op)) return;
    this.meta.update((m) => (m.failed = m.failed.filter((t) => !(t.path === p && t.op === op))));
  }

  /** Failed tasks whose time to retry has come (or all of them, for `retry`). */
  dueFailures(now: number, all = false): FailedTask[] {
    return this.meta.data.failed.filter((t) => all || t.retryAt <= now);
  }

  resetRetryTimes(now: number): number {
    const n = this.meta.data.failed.length;
    this.meta.update((m) => {
      for (const t of m.failed) {
        t.retryAt = now;
        t.permanent = false;
      }
    });
    return n;
  }

  async flush(): Promise<void> {
    if (this.outboxTimer !== null) this.writeOutboxNow();
    await Promise.all([this.base.flush(), this.meta.flush(), this.applying.flush()]);
  }

  async close(): Promise<void> {
    await this.flush();
    await Promise.all([this.base.close(), this.meta.close(), this.applying.close()]);
  }
}

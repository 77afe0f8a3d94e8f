/**
 * A client's state (src/client/clientstate.ts): base index, cursor, outbox with generations, failed
 * tasks, pull journal. In memory as the daemon holds it, and a persisted copy that a kill falls
 * back to: stores reach it on flush(), or on their own a while after a change (lowdb's delayed
 * background save), each store separately.
 */
import { InodeNames } from '../../src/core/inodes.js';
import type { BaseRecord, Change } from '../../src/core/types.js';
import type { OwnVersions } from '../../src/core/reconcile.js';
import { isSameOrInside } from '../../src/core/paths.js';
import type { Scheduler } from './scheduler.js';

export interface FailedTask {
  path: string;
  op: 'push' | 'pull';
  lastError: string;
  permanent: boolean;
  change?: Change;
  attempts: number;
  retryAt: number;
}

interface Meta {
  cursor: number;
  outbox: string[];
  failed: FailedTask[];
  ownSince: number | null;
}

export interface Persisted {
  base: Map<string, BaseRecord>;
  meta: Meta;
  applying: Change[];
}

export function emptyPersisted(): Persisted {
  return { base: new Map(), meta: { cursor: 0, outbox: [], failed: [], ownSince: null }, applying: [] };
}

const SAVE_DELAY = 1000;

export class SimClientState {
  private readonly base: Map<string, BaseRecord>;
  private readonly byIno = new InodeNames();
  private readonly dirty = new Map<string, number>();
  private generation = 0;
  private meta: Meta;
  private applying: Change[];
  private readonly saving = new Set<string>();
  /** Base paths changed since the base store was last saved (a save writes only those). */
  private readonly unsavedBase = new Set<string>();
  private isMetaUnsaved = false;

  constructor(
    private readonly disk: Persisted,
    private readonly sched: Scheduler,
    private readonly owner: string,
  ) {
    this.base = new Map(disk.base);
    this.meta = { cursor: disk.meta.cursor, outbox: [...disk.meta.outbox], failed: disk.meta.failed.map((t) => ({ ...t })), ownSince: disk.meta.ownSince };
    this.applying = disk.applying;
    for (const [p, r] of this.base) this.index(p, r, 1);
    for (const p of this.meta.outbox) this.dirty.set(p, 0);
  }

  private later(store: 'base' | 'meta' | 'applying'): void {
    if (store === 'meta') this.isMetaUnsaved = true;
    if (this.saving.has(store)) return;
    this.saving.add(store);
    this.sched.after(SAVE_DELAY, this.owner, () => {
      this.saving.delete(store);
      this.save(store);
    });
  }

  private save(store: 'base' | 'meta' | 'applying'): void {
    if (store === 'base') {
      for (const p of this.unsavedBase) {
        const r = this.base.get(p);
        if (r === undefined) this.disk.base.delete(p);
        else this.disk.base.set(p, r);
      }
      this.unsavedBase.clear();
    }
    if (store === 'meta' && this.isMetaUnsaved) {
      this.isMetaUnsaved = false;
      this.disk.meta = { cursor: this.meta.cursor, outbox: [...this.dirty.keys()], failed: this.meta.failed.map((t) => ({ ...t })), ownSince: this.meta.ownSince };
    }
    // Changes are never mutated after they arrive: sharing the array is a copy.
    if (store === 'applying') this.disk.applying = this.applying;
  }

  flush(): void {
    this.save('base');
    this.save('meta');
    this.save('applying');
  }

  // -- pull journal
  beginApply(changes: Change[]): void {
    this.applying = changes;
    this.flush();
  }
  endApply(): void {
    if (this.applying.length > 0) (this.applying = []), this.later('applying');
  }
  pendingApply(): readonly Change[] {
    return this.applying;
  }

  // -- base index
  private index(p: string, r: BaseRecord, sign: 1 | -1): void {
    if (r.stat === null || r.entry.type === 'symlink') return;
    if (sign > 0) this.byIno.add(r.stat.ino, p);
    else this.byIno.remove(r.stat.ino, p);
  }
  getBase(p: string): BaseRecord | null {
    return this.base.get(p) ?? null;
  }
  setBase(p: string, r: BaseRecord): void {
    const prev = this.base.get(p);
    if (prev !== undefined) this.index(p, prev, -1);
    this.base.set(p, r);
    this.index(p, r, 1);
    this.unsavedBase.add(p);
    this.later('base');
  }
  deleteBase(p: string): void {
    const prev = this.base.get(p);
    if (prev === undefined) return;
    this.index(p, prev, -1);
    this.base.delete(p);
    this.unsavedBase.add(p);
    this.later('base');
  }
  pathOfInode(ino: number): string | null {
    return this.byIno.last(ino);
  }
  pathsOfInode(ino: number): string[] {
    return this.byIno.all(ino);
  }
  baseUnder(dir: string): string[] {
    return [...this.base.keys()].filter((p) => p !== dir && isSameOrInside(p, dir));
  }
  basePaths(): string[] {
    return [...this.base.keys()];
  }
  get hasHistory(): boolean {
    return this.base.size > 0 || this.meta.cursor > 0;
  }

  // -- cursor
  get cursor(): number {
    return this.meta.cursor;
  }
  setCursor(seq: number): void {
    this.meta.cursor = seq;
    this.later('meta');
  }

  // -- own versions
  ownVersions(node: string): OwnVersions | null {
    return this.meta.ownSince === null ? null : { node, since: this.meta.ownSince };
  }
  /** As ClientFolderState.beginOwnVersions: durable at once (as every flush here, without a yield). */
  beginOwnVersions(sessionHead: number): void {
    if (this.meta.ownSince !== null) return;
    this.meta.ownSince = sessionHead;
    this.isMetaUnsaved = true;
    this.save('meta');
  }
  restartOwnVersions(sessionHead: number): void {
    this.meta.ownSince = sessionHead;
    this.later('meta');
  }

  // -- outbox
  markDirty(paths: Iterable<string>): void {
    for (const p of paths) {
      this.generation++;
      this.dirty.delete(p);
      this.dirty.set(p, this.generation);
    }
    this.later('meta');
  }
  get pendingCount(): number {
    return this.dirty.size;
  }
  takeDirty(limit: number, now: number): Array<[string, number]> {
    const waiting = new Set(this.meta.failed.filter((t) => t.op === 'push' && t.retryAt > now).map((t) => t.path));
    const out: Array<[string, number]> = [];
    for (const item of this.dirty) {
      if (out.length >= limit) break;
      if (!waiting.has(item[0])) out.push(item);
    }
    return out;
  }
  clearDirty(p: string, generation: number): void {
    if (this.dirty.get(p) === generation) (this.dirty.delete(p), this.later('meta'));
  }
  dirtyPaths(): string[] {
    return [...this.dirty.keys()];
  }

  // -- failed tasks
  get failed(): readonly FailedTask[] {
    return this.meta.failed;
  }
  recordFailure(task: Omit<FailedTask, 'attempts' | 'retryAt'>, now: number): FailedTask {
    const existing = this.meta.failed.find((t) => t.path === task.path && t.op === task.op);
    const attempts = (existing?.attempts ?? 0) + 1;
    const delay = Math.min(60_000, 500 * 2 ** Math.min(attempts, 7));
    const recorded: FailedTask = { ...task, attempts, retryAt: task.permanent ? Number.MAX_SAFE_INTEGER : now + delay };
    this.meta.failed = this.meta.failed.filter((t) => t !== existing);
    this.meta.failed.push(recorded);
    this.later('meta');
    return recorded;
  }
  clearFailure(p: string, op: 'push' | 'pull'): void {
    if (!this.meta.failed.some((t) => t.path === p && t.op === op)) return;
    this.meta.failed = this.meta.failed.filter((t) => !(t.path === p && t.op === op));
    this.later('meta');
  }
  dueFailures(now: number): FailedTask[] {
    return this.meta.failed.filter((t) => t.retryAt <= now);
  }
}

/**
 * The server's shell in the simulation: what src/server.ts (ServedFolder) does around the pure
 * core, step by step: verify uploads, take the folder lock, absorb local edits, decide with
 * decidePut / decideDelete / decideRename, place on disk (trashing what is replaced), assign
 * seqs, flush, notify. One folder. Its log survives a kill only as far as it was flushed.
 */
import type { Change, Entry, MovedChild, PushOp, PushResult, StatFingerprint, Version } from '../../src/core/types.js';
import { hasSameContent, isSameEntry } from '../../src/core/reconcile.js';
import { decideCommit, renamedEntry } from '../../src/core/commit.js';
import { otherLinkNames } from '../../src/core/merge.js';
import { conflictCopyPath } from '../../src/core/conflict.js';
import { isSameOrInside, outermostPaths, parentOf } from '../../src/core/paths.js';
import { isPermanentFailure } from '../../src/core/errors.js';
import { FsError, type MemFs } from './fs.js';
import {
  TMP,
  TRASH,
  cleanTempDir,
  hashOf,
  isReachedThroughLink,
  isRecordedFile,
  movePath,
  placeDir,
  placeFile,
  placeSymlink,
  readLocal,
  removePath,
  restampFile,
  writeTemp,
} from './apply.js';
import type { Link } from './network.js';
import { type Proc, type Scheduler, SimDelayedBatch, SimLock, pause } from './scheduler.js';

/** Bugs the engine's own tests inject, to prove that a broken rule makes the simulation fail. */
export type SimInjection = 'put-ignores-base';

export interface ServerRecord extends Version {
  stat: StatFingerprint | null;
}

interface LogState {
  records: Map<string, ServerRecord>;
  head: number;
}

function copyLog(log: LogState): LogState {
  return { records: new Map(log.records), head: log.head };
}

class OpError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
  }
}

function toErrorResult(err: unknown): PushResult {
  if (err instanceof OpError) return { status: 'error', code: err.code, message: err.message, permanent: err.permanent };
  const code = (err as { code?: string }).code ?? 'INTERNAL';
  return { status: 'error', code, message: (err as Error).message, permanent: isPermanentFailure(code, 'commit') };
}

function toWire(record: ServerRecord | null): Version | null {
  if (record === null) return null;
  const v: Version = { seq: record.seq, entry: record.entry, origin: record.origin };
  if (record.from !== undefined) v.from = record.from;
  return v;
}

const SECOND_LOOK_MS = 1500;

function byDepth(a: string, b: string): number {
  return a.split('/').length - b.split('/').length || (a < b ? -1 : 1);
}

export class ServerShell {
  readonly name = 'server';
  up = true;
  /** As src/server.ts, which listens only once every folder's start scan is done. */
  private serving = false;
  private log: LogState = { records: new Map(), head: 0 };
  private disk: LogState = { records: new Map(), head: 0 };
  private durableHead = 0;
  private lock = new SimLock();
  private readonly sessions = new Set<{ link: Link; node: string }>();
  private pendingHints = new Set<string>();
  private hintTimer = false;
  private saveTimer = false;
  private trashSeq = 0;
  /** Directories recorded as new in this batch of local changes: walked now and once more a moment later. */
  private readonly appearedTrees = new Set<string>();
  /** The second look at directories that appeared, a moment after the first. */
  private readonly secondLook: SimDelayedBatch<string>;
  private secondLookOf(due: string[]): void {
    const look = function* (this: ServerShell): Proc {
      const paths = [...due];
      const dirs = due.filter((p) => this.get(p)?.entry?.type === 'dir');
      for (const tree of outermostPaths(dirs)) paths.push(...this.pathsUnder(tree));
      yield* this.recordLocalChanges(paths);
    };
    this.sched.spawn(this.name, 'secondLook', this.locked(look.call(this)));
  }

  constructor(
    readonly fs: MemFs,
    private readonly sched: Scheduler,
    private readonly clockDate: () => Date,
    /** A deliberately broken rule, to show that the invariants catch it (never set in real runs). */
    private readonly inject: SimInjection | null = null,
  ) {
    this.secondLook = new SimDelayedBatch<string>(this.sched, this.name, SECOND_LOOK_MS, (due) => this.secondLookOf(due));
  }

  // -- lifecycle --------------------------------------------------------------------------------

  start(): void {
    this.up = true;
    this.log = copyLog(this.disk);
    this.durableHead = this.log.head;
    this.lock = new SimLock();
    this.sessions.clear();
    this.pendingHints.clear();
    this.hintTimer = false;
    this.saveTimer = false;
    this.appearedTrees.clear();
    this.secondLook.cancel();
    cleanTempDir(this.fs);
    this.serving = false;
    const startScan = function* (this: ServerShell): Proc {
      yield* this.fullScan();
      this.serving = true;
    };
    this.sched.spawn(this.name, 'fullScan', startScan.call(this));
  }

  kill(): void {
    this.up = false;
    this.sched.kill(this.name);
  }

  get head(): number {
    return this.log.head;
  }

  get records(): ReadonlyMap<string, ServerRecord> {
    return this.log.records;
  }

  private assign(p: string, entry: Entry | null, origin: string, extra: { from?: string; stat?: StatFingerprint | null } = {}): number {
    const seq = ++this.log.head;
    const record: ServerRecord = { seq, entry, origin, stat: entry === null ? null : (extra.stat ?? null) };
    if (extra.from !== undefined) record.from = extra.from;
    this.log.records.set(p, record);
    this.backgroundSave();
    return seq;
  }

  /** lowdb's delayed background save: the log reaches the disk a while later even without a flush. */
  private backgroundSave(): void {
    if (this.saveTimer) return;
    this.saveTimer = true;
    this.sched.after(1000, this.name, () => {
      this.saveTimer = false;
      this.disk = copyLog(this.log);
    });
  }

  private get(p: string): ServerRecord | null {
    return this.log.records.get(p) ?? null;
  }

  private liveUnder(dir: string): string[] {
    const found: string[] = [];
    for (const [p, r] of this.log.records) if (p !== dir && isSameOrInside(p, dir) && r.entry !== null) found.push(p);
    return found.sort((a, b) => b.split('/').length - a.split('/').length || (a < b ? 1 : -1));
  }

  // -- local edits (promise 11) -------------------------------------------------------------------

  hint(paths: string[]): void {
    if (!this.up) return;
    for (const p of paths) if (!isRecordedFile(this.fs, p, this.get(p))) this.pendingHints.add(p);
    if (this.pendingHints.size === 0 || this.hintTimer) return;
    this.hintTimer = true;
    this.sched.after(2, this.name, () => {
      this.hintTimer = false;
      const batch = [...this.pendingHints];
      this.pendingHints.clear();
      this.sched.spawn(this.name, 'recordLocalChanges', this.locked(this.recordLocalChanges(batch)));
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

  *fullScan(): Proc {
    const all = new Set([...this.fs.walk(), ...[...this.log.records].filter(([, r]) => r.entry !== null).map(([p]) => p)]);
    yield* this.locked(this.recordLocalChanges([...all], true));
  }

  /** As ServedFolder.recordLocalChanges: a directory that appeared is read again with everything under it, now and SECOND_LOOK_MS later. */
  private *recordLocalChanges(paths: string[], walked = false): Proc {
    const sorted = [...new Set(paths)].sort(byDepth);
    let changed = 0;
    for (const p of sorted) {
      yield* pause();
      changed += this.absorbLocal(p);
    }
    const trees = outermostPaths([...this.appearedTrees]);
    this.appearedTrees.clear();
    if (walked) trees.length = 0;
    for (const tree of trees) {
      yield* pause();
      for (const p of this.pathsUnder(tree)) {
        yield* pause();
        changed += this.absorbLocal(p);
      }
    }
    if (changed > 0) yield* this.commitDurably();
  }

  /** Every path strictly under `tree`, on disk or recorded, shallowest first. */
  private pathsUnder(tree: string): string[] {
    const found = new Set(this.liveUnder(tree));
    if (this.fs.lstat(tree)?.kind === 'dir' && !isReachedThroughLink(this.fs, tree)) for (const p of this.fs.walk(tree)) if (p !== tree) found.add(p);
    return [...found].sort(byDepth);
  }

  private absorbLocal(p: string): number {
    const record = this.get(p);
    const known = record?.entry ?? null;
    const local = isReachedThroughLink(this.fs, p)
      ? null
      : readLocal(this.fs, p, { stat: record?.stat ?? null, hash: known?.type === 'file' ? known.hash : null });
    if (local === null) {
      if (known === null) return 0;
      let made = 0;
      if (known.type === 'dir') {
        for (const child of this.liveUnder(p)) {
          this.assign(child, null, this.name);
          made++;
        }
      }
      this.assign(p, null, this.name);
      return made + 1;
    }
    if (isSameEntry(local.entry, known)) {
      if (record !== null && JSON.stringify(record.stat) !== JSON.stringify(local.stat)) this.log.records.set(p, { ...record, stat: local.stat });
      return 0;
    }
    let made = 0;
    if (known?.type === 'dir' && local.entry.type !== 'dir') {
      for (const child of this.liveUnder(p)) (this.assign(child, null, this.name), made++);
    }
    this.assign(p, local.entry, this.name, { stat: local.stat });
    if (local.entry.type === 'dir' && known?.type !== 'dir') this.appearedTrees.add(p);
    this.secondLook.add([p]);
    // As LocalChanges.absorbOtherLinks: an edit through one name changed every other name.
    if (local.entry.type === 'file' && local.stat !== null) made += this.absorbOtherLinks(p, local.stat);
    return made + 1;
  }

  private *commitDurably(): Proc {
    const head = this.log.head;
    yield* pause(); // log.flush()
    this.disk = copyLog(this.log);
    if (head > this.durableHead) this.durableHead = head;
    for (const s of [...this.sessions]) {
      if (s.link.up) s.link.notify('changed', { head: this.durableHead });
      else this.sessions.delete(s);
    }
  }

  // -- commits ------------------------------------------------------------------------------------

  /** Hard-link a file about to be replaced or removed into `.systemsync/trash/`. */
  private readonly trashFile = (p: string): void => {
    const dest = `${TRASH}/${++this.trashSeq}/${p}`;
    this.fs.mkdirp(dest.slice(0, dest.lastIndexOf('/')), 0o700);
    this.fs.link(p, dest);
  };

  /** As Committer/LocalChanges.absorbOtherLinks: an edit or restamp through one name changed every name of a hard-linked file. */
  private absorbOtherLinks(p: string, stat: StatFingerprint): number {
    const links = this.fs.lstat(p)?.nlink ?? 1;
    if (links < 2) return 0;
    const names = [...this.log.records].filter(([, r]) => r.entry !== null && r.stat?.ino === stat.ino).map(([q]) => q);
    let made = 0;
    for (const other of otherLinkNames(p, links, names)) made += this.absorbLocal(other);
    return made;
  }

  private recordParents(p: string, origin: string): void {
    const missing: string[] = [];
    for (let dir = parentOf(p); dir !== null; dir = parentOf(dir)) {
      if (this.get(dir)?.entry != null) break;
      missing.unshift(dir);
    }
    for (const dir of missing) {
      const st = this.fs.lstat(dir);
      if (st === null) throw new FsError('ENOENT', dir);
      this.assign(dir, { type: 'dir', mode: st.mode }, origin);
    }
  }

  private placeEntry(p: string, entry: Entry, tmp: string | null, keep = this.trashFile): StatFingerprint | null {
    if (entry.type === 'file' && tmp !== null) return placeFile(this.fs, tmp, p, entry, keep);
    if (entry.type === 'file') {
      const stat = restampFile(this.fs, p, entry);
      this.absorbOtherLinks(p, stat);
      return stat;
    }
    if (entry.type === 'dir') placeDir(this.fs, p, entry.mode, this.trashFile);
    else placeSymlink(this.fs, p, entry.target, this.trashFile);
    return null;
  }

  private *commitPut(op: Extract<PushOp, { op: 'put' }>, node: string, tmp: string | null): Proc<PushResult> {
    this.absorbLocal(op.path);
    yield* pause();
    const current = this.get(op.path);
    const liveChildren = current?.entry?.type === 'dir' ? this.liveUnder(op.path).length : 0;
    let decision = decideCommit(op, { current, hasUpload: tmp !== null, liveChildren, node });
    // The injected bug overwrites the server's version: no conflict copy, nothing kept.
    const isInjected = this.inject === 'put-ignores-base' && decision.action === 'conflict';
    if (isInjected) decision = { action: 'apply' };
    if (decision.action === 'stale') return { status: 'stale', current: toWire(current) };
    if (decision.action === 'same' && current !== null) {
      if (tmp !== null) this.fs.unlink(tmp);
      return { status: 'same', seq: current.seq, entry: current.entry };
    }
    if (decision.action === 'conflict' && current !== null) {
      const copy = conflictCopyPath(op.path, this.clockDate(), node, (c) => this.get(c)?.entry != null);
      const stat = this.placeEntry(copy, op.entry, tmp);
      this.recordParents(copy, node);
      const copySeq = this.assign(copy, op.entry, node, { stat });
      return { status: 'conflict', copy, copySeq, current: toWire(current)! };
    }
    const stat = this.placeEntry(op.path, op.entry, tmp, isInjected ? () => undefined : this.trashFile);
    this.recordParents(op.path, node);
    return { status: 'ok', seq: this.assign(op.path, op.entry, node, { stat }) };
  }

  private *commitDelete(op: Extract<PushOp, { op: 'delete' }>, node: string): Proc<PushResult> {
    this.absorbLocal(op.path);
    yield* pause();
    const current = this.get(op.path);
    const liveChildren = current?.entry?.type === 'dir' ? this.liveUnder(op.path).length : 0;
    const decision = decideCommit(op, { current, liveChildren, node });
    if (decision.action === 'same') return { status: 'same', seq: current?.seq ?? 0, entry: current?.entry ?? null };
    if (decision.action !== 'apply') return { status: 'stale', current: toWire(current) };
    if (!removePath(this.fs, op.path, this.trashFile)) return { status: 'stale', current: toWire(current) };
    return { status: 'ok', seq: this.assign(op.path, null, node) };
  }

  private *commitRename(op: Extract<PushOp, { op: 'rename' }>, node: string): Proc<PushResult> {
    this.absorbLocal(op.from);
    // As the Committer: what is on disk under a moving directory is recorded first.
    if (this.get(op.from)?.entry?.type === 'dir') for (const p of this.pathsUnder(op.from)) this.absorbLocal(p);
    yield* pause();
    this.absorbLocal(op.to);
    yield* pause();
    const currentFrom = this.get(op.from);
    const currentTo = this.get(op.to);
    const decision = decideCommit(op, {
      current: currentFrom,
      currentTo,
      liveChildrenOfTarget: currentTo?.entry?.type === 'dir' ? this.liveUnder(op.to).length : 0,
    });
    if (decision.action === 'refuse') throw new OpError(decision.code, decision.message, true);
    if (decision.action !== 'apply' || currentFrom?.entry == null) return { status: 'stale', current: toWire(currentFrom) };
    const children = currentFrom.entry.type === 'dir' ? this.liveUnder(op.from).reverse() : [];
    if (decision.clearTarget === true && !removePath(this.fs, op.to, this.trashFile)) return { status: 'stale', current: toWire(currentFrom) };
    movePath(this.fs, op.from, op.to, this.trashFile);
    this.recordParents(op.to, node);
    yield* pause();
    // A chmod (or touch) made right after the rename travels with it: the moved entry gets it.
    let restamped = false;
    let stat: StatFingerprint | null = null;
    if (decision.restamp?.type === 'file') {
      try {
        stat = restampFile(this.fs, op.to, decision.restamp);
        restamped = true;
        this.absorbOtherLinks(op.to, stat);
      } catch {
        // changed on disk meanwhile: recorded as moved
      }
    }
    if (decision.restamp?.type === 'dir') {
      try {
        this.fs.chmod(op.to, decision.restamp.mode);
        restamped = true;
      } catch {
        // gone meanwhile
      }
    }
    // As the Committer: a file written around the move keeps no fingerprint; recorded as the hub's edit below.
    let changedWhileMoved = false;
    if (currentFrom.entry.type === 'file' && stat === null) {
      const read = readLocal(this.fs, op.to);
      changedWhileMoved = !hasSameContent(read?.entry ?? null, currentFrom.entry);
      stat = changedWhileMoved ? null : (read?.stat ?? null);
    }
    const seq = this.assign(op.to, renamedEntry(currentFrom.entry, op.entry, restamped), node, { from: op.from, stat });
    const moved: MovedChild[] = [];
    for (const child of children) {
      const childRecord = this.get(child)!;
      const target = op.to + child.slice(op.from.length);
      moved.push([target, this.assign(target, childRecord.entry, node, { from: child, stat: childRecord.stat }), childRecord.seq]);
    }
    for (const child of [...children].reverse()) this.assign(child, null, node);
    this.assign(op.from, null, node);
    if (changedWhileMoved) this.absorbLocal(op.to);
    return currentFrom.entry.type === 'dir' ? { status: 'ok', seq, moved } : { status: 'ok', seq };
  }

  private verifyUpload(upload: string, entry: Entry): string {
    if (entry.type !== 'file') throw new OpError('BAD_OP', 'only files carry an upload', true);
    const tmp = `${TMP}/${upload}`;
    let data: string;
    try {
      data = this.fs.readFile(tmp);
    } catch (err) {
      throw new OpError('UPLOAD_MISSING', `upload ${upload}: ${(err as Error).message}`, false);
    }
    if (hashOf(data) !== entry.hash || data.length !== entry.size) {
      this.fs.unlink(tmp);
      throw new OpError('HASH_MISMATCH', 'upload does not match the hash the client recorded', false);
    }
    return tmp;
  }

  *commit(ops: PushOp[], node: string): Proc<PushResult[]> {
    const verified: Array<string | Error | null> = ops.map(() => null);
    for (const [i, op] of ops.entries()) {
      if (op.op !== 'put' || op.upload === null) continue;
      yield* pause();
      try {
        verified[i] = this.verifyUpload(op.upload, op.entry);
      } catch (err) {
        verified[i] = err as Error;
      }
    }
    const results: PushResult[] = [];
    yield* this.locked(
      (function* (this: ServerShell): Proc {
        for (const [i, op] of ops.entries()) {
          const upload = verified[i] ?? null;
          try {
            if (upload instanceof Error) throw upload;
            results[i] =
              op.op === 'put'
                ? yield* this.commitPut(op, node, upload)
                : op.op === 'delete'
                  ? yield* this.commitDelete(op, node)
                  : yield* this.commitRename(op, node);
          } catch (err) {
            results[i] = toErrorResult(err);
            if (typeof upload === 'string' && this.fs.exists(upload)) this.fs.unlink(upload);
          }
        }
      }).call(this),
    );
    yield* this.commitDurably();
    return results;
  }

  // -- RPC ----------------------------------------------------------------------------------------

  /** The handler behind every link: hello, push, changes, ack, and the SFTP calls (upload, download). */
  readonly serve = function* (this: ServerShell, link: Link, method: string, params: unknown): Proc<unknown> {
    if (!this.up || !this.serving) throw new Error('server down');
    const p = params as Record<string, unknown>;
    switch (method) {
      case 'hello':
        this.sessions.add({ link, node: link.client });
        return { head: this.durableHead };
      case 'push':
        return { results: yield* this.commit(p.ops as PushOp[], link.client) };
      case 'changes': {
        const after = p.after as number;
        if (after > this.log.head) return { changes: [], head: this.log.head, reset: true };
        const changes: Change[] = [];
        for (const [path, r] of this.log.records) {
          if (r.seq <= after || r.seq > this.durableHead) continue;
          if (after === 0 && r.entry === null) continue;
          const c: Change = { path, seq: r.seq, entry: r.entry, origin: r.origin };
          if (r.from !== undefined) c.from = r.from;
          changes.push(c);
        }
        changes.sort((a, b) => a.seq - b.seq);
        return { changes: changes.slice(0, p.limit as number), head: this.log.head, reset: false };
      }
      case 'ack':
        return {};
      case 'upload': {
        // SFTP write of a whole file into .systemsync/tmp.
        const tmp = writeTemp(this.fs, p.data as string, 'up');
        return { name: tmp.slice(TMP.length + 1) };
      }
      case 'download': {
        // SFTP read of a file in the folder (never through a link).
        const path = p.path as string;
        if (isReachedThroughLink(this.fs, path)) throw new FsError('ENOENT', path);
        return { data: this.fs.readFile(path) };
      }
      default:
        throw new Error(`unknown method ${method}`);
    }
  }.bind(this);

  dropSession(link: Link): void {
    for (const s of this.sessions) if (s.link === link) this.sessions.delete(s);
  }

  /** Content of every file in the trash (kept versions). */
  trashContents(): Set<string> {
    const out = new Set<string>();
    for (const p of this.fs.allPaths()) {
      if (!p.startsWith(`${TRASH}/`)) continue;
      const st = this.fs.lstat(p);
      if (st?.kind === 'file') out.add(this.fs.readFile(p));
    }
    return out;
  }
}

/**
 * The server's change log for one folder: the current version of every path, the head sequence
 * number, the floor below which tombstones were pruned, and every client's cursor.
 *
 * What a client still has to pull is derived: the versions with `seq > cursor`.
 */
import path from 'node:path';
import type { Change, Entry, ServerRecord, StatFingerprint } from '../core/types.js';
import { deepestFirst, isSameOrInside } from '../core/paths.js';
import { isConflictCopy } from '../core/conflict.js';
import { JsonStore, ShardedMap } from '../persistence.js';
import { isTombstonePacked, originTest, serverRecordCodec } from '../state/recordcodec.js';
import { MAX_PAGE_BYTES, PageBudget } from '../wire/budget.js';

/** A version plus the server's own local stat fingerprint of the file (never sent on the wire). */
export type { ServerRecord };

const BACKGROUND_SAVE_MS = 1000;

export interface ClientCursor {
  cursor: number;
  lastSeen: string;
}

interface FolderMeta {
  head: number;
  floor: number;
  clients: Record<string, ClientCursor>;
}

export interface ChangesPage {
  changes: Change[];
  head: number;
  /** True when the asked cursor is below the floor or above the head: the client must re-sync fully. */
  reset: boolean;
}

export class ChangeLog {
  /** seq → path, for every record (live or tombstone). */
  private readonly bySeq = new Map<number, string>();
  /** Paths whose current record is a tombstone (pruning looks only at these). */
  private readonly tombstones = new Set<string>();
  private liveFiles = 0;
  private conflictCount = 0;
  private liveBytes = 0;

  private constructor(
    private readonly records: ShardedMap<ServerRecord>,
    private readonly meta: JsonStore<FolderMeta>,
  ) {
    for (const [p, record] of records.entries()) this.index(p, record, +1);
  }

  static async open(dir: string): Promise<ChangeLog> {
    // Commits call flush() before they answer; background saves only need to catch up.
    const records = await ShardedMap.open<ServerRecord>(path.join(dir, 'versions'), { saveDelayMs: BACKGROUND_SAVE_MS, codec: serverRecordCodec });
    const meta = await JsonStore.open<FolderMeta>(path.join(dir, 'meta.json'), { head: 0, floor: 0, clients: {} }, { saveDelayMs: BACKGROUND_SAVE_MS });
    const log = new ChangeLog(records, meta);
    // The head on disk can lag the records only if a crash fell between two shard writes; the
    // records are the truth.
    let maxSeq = 0;
    for (const seq of log.bySeq.keys()) maxSeq = Math.max(maxSeq, seq);
    if (maxSeq > meta.data.head) meta.update((m) => (m.head = maxSeq));
    return log;
  }

  private index(p: string, record: ServerRecord, sign: 1 | -1): void {
    if (sign > 0) this.bySeq.set(record.seq, p);
    else if (this.bySeq.get(record.seq) === p) this.bySeq.delete(record.seq);
    if (record.entry === null) {
      if (sign > 0) this.tombstones.add(p);
      else this.tombstones.delete(p);
    }
    if (record.entry !== null) {
      if (isConflictCopy(p)) this.conflictCount += sign;
      if (record.entry.type === 'file') {
        this.liveFiles += sign;
        this.liveBytes += sign * record.entry.size;
      }
    }
  }

  get head(): number {
    return this.meta.data.head;
  }

  get floor(): number {
    return this.meta.data.floor;
  }

  /** Live conflict copies in the folder. */
  get conflicts(): number {
    return this.conflictCount;
  }

  /** Live regular files (directories and links not counted), as a client counts them. */
  get files(): number {
    return this.liveFiles;
  }

  get bytes(): number {
    return this.liveBytes;
  }

  /** True when nothing was ever recorded for this folder. */
  get isEmpty(): boolean {
    return this.records.size === 0;
  }

  get(p: string): ServerRecord | null {
    return this.records.get(p);
  }

  /** The live paths strictly inside directory `dir`, deepest first. */
  liveUnder(dir: string): string[] {
    const found: string[] = [];
    for (const [p, packed] of this.records.storedEntries()) {
      if (p !== dir && isSameOrInside(p, dir) && !isTombstonePacked(packed as string)) found.push(p);
    }
    return deepestFirst(found);
  }

  /** Every live path, for a full scan. */
  livePaths(): string[] {
    const found: string[] = [];
    for (const [p, packed] of this.records.storedEntries()) if (!isTombstonePacked(packed as string)) found.push(p);
    return found;
  }

  /**
   * The live paths recorded with local inode `ino` (the names of a hard-linked file). One pass
   * over every record: only for a file known to have several links.
   */
  livePathsOnInode(ino: number): string[] {
    return this.livePaths().filter((q) => this.records.get(q)?.stat?.ino === ino);
  }

  /** Record a new version of `p` (null entry: deleted) and return its seq. */
  assign(p: string, entry: Entry | null, origin: string, extra: { from?: string; stat?: StatFingerprint | null } = {}): number {
    const seq = this.meta.data.head + 1;
    this.meta.update((m) => (m.head = seq));
    const previous = this.records.get(p);
    if (previous !== null) this.index(p, previous, -1);
    const record: ServerRecord = { seq, entry, origin, stat: entry === null ? null : (extra.stat ?? null) };
    if (extra.from !== undefined) record.from = extra.from;
    this.records.set(p, record);
    this.index(p, record, +1);
    return seq;
  }

  /** Update the local fingerprint of a path without making a new version. */
  setStat(p: string, stat: StatFingerprint | null): void {
    const record = this.records.get(p);
    if (record === null) return;
    this.records.set(p, { ...record, stat });
  }

  /**
   * Versions with `seq > after`, in seq order, at most `limit` and at most `maxBytes` of JSON
   * (at least one version when there is one: a page always makes progress).
   */
  changesAfter(after: number, limit: number, maxBytes = MAX_PAGE_BYTES): ChangesPage {
    const head = this.head;
    if (after > head || (after < this.floor && after !== 0)) return { changes: [], head, reset: true };
    const changes: Change[] = [];
    const budget = new PageBudget(maxBytes);
    for (let seq = after + 1; seq <= head && changes.length < limit; seq++) {
      const p = this.bySeq.get(seq);
      if (p === undefined) continue;
      const record = this.records.get(p);
      if (record === null || record.seq !== seq) continue;
      if (after === 0 && record.entry === null) continue; // a full listing needs no tombstones
      const change: Change = { path: p, seq: record.seq, entry: record.entry, origin: record.origin };
      if (record.from !== undefined) change.from = record.from;
      if (!budget.fits(change)) break;
      changes.push(change);
    }
    return { changes, head, reset: false };
  }

  /** How many versions made by other nodes a client at `cursor` still has to pull. */
  countAfter(cursor: number, node: string): number {
    // Walk the seqs after the cursor, not the whole log: a client that keeps up costs nothing.
    // The origin is read from each record's stored form: no record is decoded.
    let n = 0;
    const head = this.head;
    const byNode = originTest(node);
    const byOther = (p: string): boolean => {
      const packed = this.records.stored(p);
      return packed === undefined || !byNode(packed as string);
    };
    if (head - cursor > this.bySeq.size) {
      for (const [seq, p] of this.bySeq) if (seq > cursor && byOther(p)) n++;
      return n;
    }
    for (let seq = cursor + 1; seq <= head; seq++) {
      const p = this.bySeq.get(seq);
      if (p !== undefined && byOther(p)) n++;
    }
    return n;
  }

  clientCursor(node: string): ClientCursor | null {
    return this.meta.data.clients[node] ?? null;
  }

  clients(): Array<[string, ClientCursor]> {
    return Object.entries(this.meta.data.clients);
  }

  /** Record that `node` has applied everything up to `seq` (never moves a cursor backwards past the head). */
  setCursor(node: string, seq: number, now: Date): void {
    this.meta.update((m) => {
      m.clients[node] = { cursor: Math.min(seq, m.head), lastSeen: now.toISOString() };
    });
  }

  touchClient(node: string, now: Date): void {
    this.meta.update((m) => {
      const known = m.clients[node];
      m.clients[node] = { cursor: known?.cursor ?? 0, lastSeen: now.toISOString() };
    });
  }

  /**
   * Drop tombstones every known client has already pulled, so the log does not grow without
   * bound. A client that comes back below the new floor is told to re-sync fully.
   */
  pruneTombstones(now: Date, forgetClientsAfterMs: number): number {
    if (this.tombstones.size === 0) return 0;
    // A client gone for longer than `forgetClientsAfterMs` no longer holds the log back; if it
    // comes back below the floor it merges with the full listing, which never deletes anything.
    const cursors = Object.values(this.meta.data.clients)
      .filter((c) => now.getTime() - Date.parse(c.lastSeen) <= forgetClientsAfterMs)
      .map((c) => c.cursor);
    const safe = cursors.reduce((min, c) => Math.min(min, c), this.head);
    let pruned = 0;
    let floor = this.floor;
    for (const p of [...this.tombstones]) {
      const record = this.records.get(p);
      if (record === null || record.entry !== null || record.seq > safe) continue;
      this.index(p, record, -1);
      this.records.delete(p);
      floor = Math.max(floor, record.seq);
      pruned++;
    }
    if (floor !== this.floor) this.meta.update((m) => (m.floor = floor));
    return pruned;
  }

  /** Resolves when every change made before the call is on disk. */
  async flush(): Promise<void> {
    await Promise.all([this.records.flush(), this.meta.flush()]);
  }

  async close(): Promise<void> {
    await this.flush();
    await Promise.all([this.records.close(), this.meta.close()]);
  }
}

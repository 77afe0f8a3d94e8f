/**
 * What a client sent in pushes whose answer never came, per path, until the feed settles it. A
 * server killed after placing a pushed file but before its log was durable finds that file on
 * its disk at start and records it as its own edit: the version then names the server as its
 * origin, and only its content says that it is what this client sent. Pure bookkeeping, kept
 * in memory (a client killed too has its own state's rule, `isOwnVersion`, for what names it).
 */
import { isSameEntry } from './reconcile.js';
import type { Change, Entry, PushOp } from './types.js';

/** What a push sends to each path it touches: a put's entry, a rename's entry at its target, nothing (null) at a rename's source or a deleted path. */
export function sentEntries(ops: readonly PushOp[]): Array<[string, Entry | null]> {
  return ops.flatMap((op): Array<[string, Entry | null]> => {
    if (op.op === 'put') return [[op.path, op.entry]];
    if (op.op === 'delete') return [[op.path, null]];
    return [
      [op.from, null],
      [op.to, op.entry],
    ];
  });
}

interface Sent<Conn> {
  entry: Entry | null;
  conn: Conn;
}

/** `Conn` identifies a connection (a push's answer can only be lost with it). */
export class UnansweredPushes<Conn> {
  private readonly byPath = new Map<string, Sent<Conn>>();

  /** A push of `ops` is about to go over `conn`; until its answer comes, what it sends is unanswered. */
  sending(ops: readonly PushOp[], conn: Conn): void {
    for (const [p, entry] of sentEntries(ops)) this.byPath.set(p, { entry, conn });
  }

  /** The answer to `ops` came (whatever it says): the push outcome takes it from here. */
  answered(ops: readonly PushOp[]): void {
    for (const [p] of sentEntries(ops)) this.byPath.delete(p);
  }

  /**
   * True when `change` holds exactly what this client sent to its path in a push whose answer
   * never came (a delete: any tombstone), whoever the server names as its origin: the version
   * is what this client's disk held then, and whatever the disk holds now came after it.
   */
  isWhatWasSent(change: Change): boolean {
    const sent = this.byPath.get(change.path);
    if (sent === undefined) return false;
    return sent.entry === null ? change.entry === null : isSameEntry(sent.entry, change.entry);
  }

  /** The feed's version of `p` has been decided on: what was sent there is settled. */
  settle(p: string): void {
    this.byPath.delete(p);
  }

  /**
   * The pull over `current` has reached the server's head at the start of that connection:
   * whatever went over earlier connections was committed before it (and pulled since) or never
   * will be, except a commit still running on a server that was not restarted, whose version
   * names this client (`isOwnVersion`). Those records are settled.
   */
  settleBefore(current: Conn): void {
    for (const [p, sent] of this.byPath) if (sent.conn !== current) this.byPath.delete(p);
  }

  get size(): number {
    return this.byPath.size;
  }
}

/**
 * How much temp space the server's own bundles may hold. A `bundle` call writes up to 16 MiB
 * into a folder's `.systemsync/tmp` for the client to download and remove; a rogue client that
 * never removes them (or asks again and again) would fill the disk. Each bundle is counted
 * against its session, and against every session together, until it is gone: removed by the
 * client after reading it (found missing when the space is next needed), or by the server when
 * the session ends. Past either cap the call fails with TEMP_FULL and the client fetches the
 * files one by one. No fs here: the server says which bundles still exist.
 */
import { SyncError } from '../core/errors.js';

/** Bundles one session may hold at once: a client fetches a few 4 MiB bundles ahead. */
export const SESSION_TEMP_BYTES = 64 * 1024 * 1024;
/** Bundles every session together may hold at once. */
export const TOTAL_TEMP_BYTES = 256 * 1024 * 1024;

/** A bundle file the server wrote: where it lies and how large it is. */
export interface HeldTemp {
  root: string;
  name: string;
  bytes: number;
}

export class TempQuota {
  private readonly held = new Map<number, Map<string, HeldTemp>>();
  private totalBytes = 0;

  constructor(
    readonly perSession = SESSION_TEMP_BYTES,
    readonly total = TOTAL_TEMP_BYTES,
  ) {}

  /** Bytes held by `session`, or by every session when it is omitted. */
  used(session?: number): number {
    if (session === undefined) return this.totalBytes;
    let n = 0;
    for (const t of this.held.get(session)?.values() ?? []) n += t.bytes;
    return n;
  }

  /** Every bundle held (for a session, or by all), to be checked for existence. */
  list(session?: number): Array<[number, HeldTemp]> {
    const out: Array<[number, HeldTemp]> = [];
    for (const [id, temps] of this.held) if (session === undefined || id === session) for (const t of temps.values()) out.push([id, t]);
    return out;
  }

  /**
   * Counts a bundle of `bytes` for `session`.
   * @throws SyncError 'TEMP_FULL' (nothing counted) when the session or the total would pass its cap.
   */
  reserve(session: number, temp: HeldTemp): void {
    const mine = this.used(session);
    if (mine + temp.bytes > this.perSession) {
      throw new SyncError('TEMP_FULL', `this session already holds ${mine} bytes of bundles not yet removed (at most ${this.perSession}): remove the bundles you have read`);
    }
    if (this.totalBytes + temp.bytes > this.total) {
      throw new SyncError('TEMP_FULL', `the server's temp space for bundles is full (${this.totalBytes} of ${this.total} bytes): try again later`);
    }
    let temps = this.held.get(session);
    if (temps === undefined) this.held.set(session, (temps = new Map()));
    temps.set(keyOf(temp), temp);
    this.totalBytes += temp.bytes;
  }

  /** Stops counting a bundle (it is gone). Unknown ones are ignored. */
  release(session: number, temp: HeldTemp): void {
    const temps = this.held.get(session);
    const known = temps?.get(keyOf(temp));
    if (temps === undefined || known === undefined) return;
    temps.delete(keyOf(temp));
    this.totalBytes -= known.bytes;
    if (temps.size === 0) this.held.delete(session);
  }

  /** The session ended: stops counting its bundles and returns them, for the server to remove. */
  endSession(session: number): HeldTemp[] {
    const temps = [...(this.held.get(session)?.values() ?? [])];
    for (const t of temps) this.release(session, t);
    return temps;
  }
}

function keyOf(t: HeldTemp): string {
  return `${t.root}\0${t.name}`;
}

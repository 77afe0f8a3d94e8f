/**
 * Hashes of uploads taken while their bytes were written, so the server checks an upload without
 * reading it a second time. The embedded endpoint writes every upload itself: each writable
 * handle hashes the writes it is sent, as long as they come in order from offset 0. An entry is
 * recorded only when the one handle that wrote the file closes it with every write in order and
 * no other writer opened the same file meanwhile; it names the inode as it was then (size,
 * mtime, ctime to the nanosecond) and is used once. Anything else (the system sshd's
 * sftp-server, out-of-order writes, a second writer, a file changed since) finds no entry, and
 * the server reads the file and hashes it as before.
 */
import { createHash, type Hash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';

/** Entries kept for uploads not yet committed; the oldest go first (their uploads are hashed by reading). */
const MAX_ENTRIES = 4096;

interface Entry {
  hash: string;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** The hash of one writable handle's writes, while they come in order from offset 0. */
export class StreamedWriter {
  private hash: Hash | null = createHash('sha256');
  private end = 0;

  constructor(
    private readonly owner: StreamedHashes,
    readonly key: string,
  ) {}

  /** Hashes `data`, written at `offset`; a write anywhere but the end stops the hashing. */
  write(offset: number, data: Buffer): void {
    if (this.hash === null) return;
    if (offset !== this.end) return this.abandon();
    this.hash.update(data);
    this.end += data.length;
  }

  /** No hash for this file (a write failed, another writer came, the session ended). */
  abandon(): void {
    this.hash = null;
  }

  /**
   * The handle is closing: `st` is the file's fstat just before the close with every write done,
   * or null when it closes without them (a failed write, a session that ended).
   */
  finish(st: BigIntStats | null): void {
    const hash = st !== null && this.hash !== null && st.size === BigInt(this.end) ? this.hash.digest('hex') : null;
    this.hash = null;
    this.owner.finished(this, st, hash);
  }
}

export class StreamedHashes {
  private readonly entries = new Map<string, Entry>();
  private readonly writers = new Map<string, Set<StreamedWriter>>();

  /**
   * A handle opened `st`'s file for writing. Hashing starts only for a file that is empty now and
   * has no other writer; any entry of that file is dropped (it is being written again).
   */
  beginWrite(st: BigIntStats): StreamedWriter {
    const key = inodeKey(st);
    this.entries.delete(key);
    const writer = new StreamedWriter(this, key);
    const others = this.writers.get(key) ?? new Set<StreamedWriter>();
    if (others.size > 0 || st.size !== 0n) {
      for (const other of others) other.abandon();
      writer.abandon();
    }
    others.add(writer);
    this.writers.set(key, others);
    return writer;
  }

  /** Called by StreamedWriter.finish. */
  finished(writer: StreamedWriter, st: BigIntStats | null, hash: string | null): void {
    const others = this.writers.get(writer.key);
    others?.delete(writer);
    if (others?.size === 0) this.writers.delete(writer.key);
    if (st === null || hash === null) return;
    this.entries.set(writer.key, { hash, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs });
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
  }

  /**
   * The hash taken while the file `st` describes was written, if its writer closed it cleanly and
   * it has not changed since (same inode, size, mtime and ctime, and no writer open); else null.
   * An entry serves one check.
   */
  take(st: BigIntStats): string | null {
    const key = inodeKey(st);
    const entry = this.entries.get(key);
    if (entry === undefined) return null;
    this.entries.delete(key);
    if (this.writers.has(key)) return null;
    if (entry.size !== st.size || entry.mtimeNs !== st.mtimeNs || entry.ctimeNs !== st.ctimeNs) return null;
    return entry.hash;
  }
}

function inodeKey(st: BigIntStats): string {
  return `${st.dev}:${st.ino}`;
}

/** The one registry of this process: the embedded endpoint writes to it, the server's upload checks read it. */
export const streamedHashes = new StreamedHashes();

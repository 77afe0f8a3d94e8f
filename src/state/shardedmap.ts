import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { AtomicJsonFile, describe, ensurePrivateDir, FILE_MODE, isNotFound, readOrMoveAside, TEMP_INFIX, writeFileAtomic } from './atomicfile.js';
import { Coalescer } from './coalescer.js';
import { PersistenceError, StateCorruptError, StoreClosedError, type OnCorrupt } from './errors.js';
import type { StoreOptions } from './jsonstore.js';

interface ShardedMapMeta {
  format: 'systemsync-sharded-map';
  version: 1;
  shards: number;
}

interface ShardFile<V> {
  entries: Array<[string, V]>;
}

/**
 * How a `ShardedMap` keeps its values in memory: one compact string per value instead of an
 * object graph (a few hundred bytes less per entry at 100k entries). `decode(encode(v))` must be
 * JSON-equal to `v`, keys in the same order: the files hold `JSON.stringify(decode(s))`, exactly
 * what they hold without a codec.
 */
export interface ValueCodec<V> {
  encode(value: V): string;
  decode(packed: string): V;
}

export interface ShardedMapOptions<V> extends StoreOptions {
  /** Number of shard files for a new directory (default 64, 1..4096). An existing directory keeps its own. */
  shards?: number;
  /** Checks and converts each value read; throwing marks its shard file corrupt. */
  validateValue?: (raw: unknown) => V;
  /** Keep values in memory encoded by this codec; `get` and `entries` then decode a fresh copy each time. */
  codec?: ValueCodec<V>;
}

const META_FILE = 'meta.json';
const JOURNAL_FILE = 'journal.jsonl';
/** The journal is folded into the shards once it has more lines than this and than half the map. */
const COMPACT_MIN_LINES = 4096;
const COMPACT_CONCURRENCY = 4;
/** Entries serialised per write of a shard file or the journal: ~30 KB of JSON for the daemons' records. */
const CHUNK_ENTRIES = 128;
/** Marks a key deleted in a save's snapshot. */
const DELETED = Symbol('deleted');
const DEFAULT_SHARDS = 64;
const MAX_SHARDS = 4096;

/** Stable 32-bit FNV-1a hash of a string's UTF-16 code units. */
export function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function shardFileName(index: number): string {
  return `shard-${String(index).padStart(4, '0')}.json`;
}

function validateMeta(raw: unknown): ShardedMapMeta {
  const m = raw as Partial<ShardedMapMeta> | null;
  if (typeof m !== 'object' || m === null || m.format !== 'systemsync-sharded-map' || m.version !== 1) {
    throw new Error('not a systemsync sharded map meta file (format/version)');
  }
  if (!Number.isInteger(m.shards) || (m.shards as number) < 1 || (m.shards as number) > MAX_SHARDS) {
    throw new Error(`shards: expected an integer 1-${MAX_SHARDS}, got ${JSON.stringify(m.shards)}`);
  }
  return m as ShardedMapMeta;
}

/** The shard count of `dir`, from its meta file; a missing (or reset) meta file is written anew. */
async function readShardCount(dir: string, names: string[], requested: number, onCorrupt: OnCorrupt | undefined): Promise<number> {
  const metaAdapter = new AtomicJsonFile<ShardedMapMeta>(path.join(dir, META_FILE), validateMeta);
  let meta = await readOrMoveAside(metaAdapter, onCorrupt);
  if (meta === null) {
    // A directory whose meta is missing or was reset keeps the shard count its files show.
    const existing = names.filter((n) => /^shard-\d{4}\.json$/.test(n)).length;
    meta = { format: 'systemsync-sharded-map', version: 1, shards: existing > 0 ? existing : requested };
    await metaAdapter.write(meta);
  }
  return meta.shards;
}

/**
 * Shard `index` of `shards`, its values as stored. A key that hashes to another shard is
 * corruption: `StateCorruptError`, or with `onCorrupt: 'reset'` the key is dropped.
 */
async function loadShard<V>(
  dir: string,
  index: number,
  shards: number,
  validateEntry: (e: unknown) => [string, V],
  stored: (value: V) => unknown,
  onCorrupt: OnCorrupt | undefined,
): Promise<Map<string, unknown>> {
  const file = path.join(dir, shardFileName(index));
  const validateShard = (raw: unknown): ShardFile<V> => {
    const f = raw as Partial<ShardFile<V>> | null;
    if (typeof f !== 'object' || f === null || !Array.isArray(f.entries)) throw new Error('expected {"entries": [...]}');
    f.entries = f.entries.map(validateEntry);
    return f as ShardFile<V>;
  };
  const content = await readOrMoveAside(new AtomicJsonFile<ShardFile<V>>(file, validateShard), onCorrupt);
  const map = new Map<string, unknown>();
  for (const [key, value] of content?.entries ?? []) {
    if (hashKey(key) % shards !== index) {
      const err = new StateCorruptError(file, `key ${JSON.stringify(key)} does not belong in shard ${index} of ${shards}`);
      if (onCorrupt !== 'reset') throw err;
      continue; // dropped
    }
    map.set(key, stored(value));
  }
  return map;
}

/**
 * A persistent `Map<string, V>` split across N shard files in one directory by a stable hash of
 * the key, plus an append-only journal. Reads are in memory. A save appends the changed keys to
 * `journal.jsonl` (one line each, then one fdatasync): a commit of a few hundred files costs one
 * small write, not a rewrite (and serialisation) of every shard it touches. Once the journal
 * holds more lines than half the map (at least 4096), the shards it covers are rewritten
 * atomically and the journal is emptied. Opening
 * loads the shards, then replays the journal (a torn last line, from a crash mid-append, is
 * dropped: its save never completed). N is fixed when the directory is created (`meta.json`).
 * Values must be JSON-serialisable; a value mutated in place must be `set` again to be saved.
 */
export class ShardedMap<V> {
  private closed = false;
  private count = 0;
  /** Keys changed since the last journal append. */
  private readonly unsaved = new Set<string>();
  /** Shards whose file lags behind the journal. */
  private readonly staleShards = new Set<number>();
  private readonly coalescer: Coalescer;

  private constructor(
    readonly dir: string,
    /** Values as stored: `V` itself, or its codec string. */
    private readonly maps: Array<Map<string, unknown>>,
    private readonly codec: ValueCodec<V> | null,
    private readonly journal: fsp.FileHandle,
    private journalLines: number,
    private journalBytes: number,
    options: StoreOptions,
  ) {
    for (const m of maps) this.count += m.size;
    for (let i = 0; i < maps.length && journalLines > 0; i++) this.staleShards.add(i);
    this.coalescer = new Coalescer(() => this.save(), options.onWriteError, options.saveDelayMs ?? 0);
  }

  /**
   * Opens (creating, mode 0700) the directory, loads every shard and replays the journal. A corrupt
   * shard, meta or journal file throws `StateCorruptError`, or with `onCorrupt: 'reset'` is moved
   * aside (a shard or meta then starts empty; a journal loses the lines from the corrupt one on).
   */
  static async open<V>(dir: string, options: ShardedMapOptions<V> = {}): Promise<ShardedMap<V>> {
    const requested = options.shards ?? DEFAULT_SHARDS;
    if (!Number.isInteger(requested) || requested < 1 || requested > MAX_SHARDS) {
      throw new PersistenceError('INVALID_OPTION', `shards: expected an integer 1-${MAX_SHARDS}, got ${String(requested)}`);
    }
    await ensurePrivateDir(dir);
    const names = await fsp.readdir(dir);
    await Promise.all(names.filter((n) => n.includes(TEMP_INFIX)).map((n) => fsp.rm(path.join(dir, n), { force: true })));

    const shards = await readShardCount(dir, names, requested, options.onCorrupt);

    const validateEntry = (e: unknown): [string, V] => {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string') throw new Error('expected entries of [key, value]');
      return [e[0], options.validateValue ? options.validateValue(e[1]) : (e[1] as V)];
    };
    const codec = options.codec ?? null;
    const stored = (value: V): unknown => (codec === null ? value : codec.encode(value));
    const maps = await Promise.all(
      Array.from({ length: shards }, (_, i) => loadShard(dir, i, shards, validateEntry, stored, options.onCorrupt)),
    );

    const journalFile = path.join(dir, JOURNAL_FILE);
    const replayed = await replayJournal(journalFile, (line) => {
      if (!Array.isArray(line) || typeof line[0] !== 'string' || line.length > 2) throw new Error('expected [key, value] or [key]');
      const map = maps[hashKey(line[0]) % shards] as Map<string, unknown>;
      if (line.length === 2) map.set(line[0], stored(validateEntry(line)[1]));
      else map.delete(line[0]);
    }, options.onCorrupt ?? 'throw');
    const journal = await fsp.open(journalFile, 'a', FILE_MODE);
    try {
      // Drop a torn last line (or what followed a corrupt one), so that appends start clean.
      await journal.truncate(replayed.goodBytes);
      await journal.chmod(FILE_MODE);
    } catch (err) {
      await journal.close();
      throw err;
    }
    return new ShardedMap<V>(dir, maps, codec, journal, replayed.lines, replayed.goodBytes, options);
  }

  private shardOf(key: string): number {
    return hashKey(key) % this.maps.length;
  }

  private mapOf(key: string): Map<string, unknown> {
    return this.maps[this.shardOf(key)] as Map<string, unknown>;
  }

  private decoded(stored: unknown): V {
    return this.codec === null ? (stored as V) : this.codec.decode(stored as string);
  }

  /** Number of shard files (fixed per directory). */
  get shardCount(): number {
    return this.maps.length;
  }

  get size(): number {
    return this.count;
  }

  /** The value, or null if the key is absent. */
  get(key: string): V | null {
    const m = this.mapOf(key);
    return m.has(key) ? this.decoded(m.get(key)) : null;
  }

  has(key: string): boolean {
    return this.mapOf(key).has(key);
  }

  /** Sets the value and schedules a save. */
  set(key: string, value: V): void {
    if (this.closed) throw new StoreClosedError(`sharded map ${this.dir}`);
    if (typeof key !== 'string') throw new PersistenceError('INVALID_KEY', `sharded map keys must be strings, got ${typeof key}`);
    const m = this.mapOf(key);
    if (!m.has(key)) this.count++;
    m.set(key, this.codec === null ? value : this.codec.encode(value));
    this.unsaved.add(key);
    this.coalescer.markDirty();
  }

  /** Deletes the key; returns whether it was present. Schedules a save if it was. */
  delete(key: string): boolean {
    if (this.closed) throw new StoreClosedError(`sharded map ${this.dir}`);
    if (!this.mapOf(key).delete(key)) return false;
    this.count--;
    this.unsaved.add(key);
    this.coalescer.markDirty();
    return true;
  }

  *keys(): IterableIterator<string> {
    for (const m of this.maps) yield* m.keys();
  }

  /** Every entry, each value decoded afresh when there is a codec. */
  *entries(): IterableIterator<[string, V]> {
    for (const m of this.maps) for (const [key, stored] of m) yield [key, this.decoded(stored)];
  }

  /**
   * Every entry as stored: the codec's string (or the value itself without a codec). For scans
   * that can answer from the encoded form without decoding every value.
   */
  *storedEntries(): IterableIterator<[string, unknown]> {
    for (const m of this.maps) yield* m.entries();
  }

  /** The stored form of one value (see `storedEntries`), or undefined if the key is absent. */
  stored(key: string): unknown {
    return this.mapOf(key).get(key);
  }

  /**
   * Appends what changed to the journal, then compacts if due. The changed values are taken at
   * once (their stored forms), then serialised and appended a slice at a time: one string for a
   * save of 100k keys would be ~20 MB, straight into V8's old generation as garbage.
   */
  private async save(): Promise<void> {
    const snapshot = [...this.unsaved].map((key): [string, unknown] => [key, this.mapOf(key).has(key) ? this.mapOf(key).get(key) : DELETED]);
    this.unsaved.clear();
    if (snapshot.length > 0) {
      let written = 0;
      try {
        for (let start = 0; start < snapshot.length; start += CHUNK_ENTRIES) {
          let text = '';
          for (const [key, stored] of snapshot.slice(start, start + CHUNK_ENTRIES)) {
            text += `${JSON.stringify(stored === DELETED ? [key] : [key, this.decoded(stored)])}\n`;
          }
          await this.journal.write(text);
          written += Buffer.byteLength(text);
        }
        await this.journal.datasync();
      } catch (cause) {
        for (const [key] of snapshot) this.unsaved.add(key);
        await this.journal.truncate(this.journalBytes).catch(() => undefined); // no torn line before the next append
        throw new PersistenceError('STATE_WRITE', `cannot append to ${path.join(this.dir, JOURNAL_FILE)}: ${describe(cause)}`, { cause });
      }
      this.journalBytes += written;
      this.journalLines += snapshot.length;
      for (const [key] of snapshot) this.staleShards.add(this.shardOf(key));
    }
    if (this.journalLines > Math.max(COMPACT_MIN_LINES, this.count / 2)) await this.compact();
  }

  /**
   * A shard file's text, `{"entries":[[key, value], ...]}` byte for byte as `JSON.stringify` makes
   * it of the whole, a slice of entries at a time: a shard of a 100k-entry map is ~400 KB of JSON,
   * and one string that size goes straight to V8's old generation and stays there as garbage.
   */
  private *shardChunks(snapshot: Array<[string, unknown]>): Generator<string> {
    yield '{"entries":[';
    for (let start = 0; start < snapshot.length; start += CHUNK_ENTRIES) {
      const slice = snapshot.slice(start, start + CHUNK_ENTRIES).map(([key, stored]): [string, V] => [key, this.decoded(stored)]);
      yield `${start === 0 ? '' : ','}${JSON.stringify(slice).slice(1, -1)}`;
    }
    yield ']}\n';
  }

  /** Rewrites the shards the journal covers (each atomically), then empties the journal. */
  private async compact(): Promise<void> {
    const shards = [...this.staleShards];
    this.staleShards.clear();
    try {
      // A few shards at a time, each taken at once and written a slice at a time (shardChunks).
      let next = 0;
      const writeShards = async (): Promise<void> => {
        for (let i = shards[next++]; i !== undefined; i = shards[next++]) {
          const snapshot = [...(this.maps[i] as Map<string, unknown>)];
          await writeFileAtomic(path.join(this.dir, shardFileName(i)), this.shardChunks(snapshot));
        }
      };
      await Promise.all(Array.from({ length: COMPACT_CONCURRENCY }, writeShards));
    } catch (err) {
      for (const i of shards) this.staleShards.add(i);
      throw err;
    }
    // Every line is now in a shard file; later changes wait in `unsaved` for the next append.
    await this.journal.truncate(0);
    await this.journal.datasync();
    this.journalLines = 0;
    this.journalBytes = 0;
  }

  /** Resolves when every change made before the call is durable on disk (in the journal or a shard). */
  async flush(): Promise<void> {
    await this.coalescer.flush();
  }

  /** Flushes and folds the journal into the shards, then refuses further changes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.flush();
      if (this.journalLines > 0) await this.compact();
    } finally {
      await this.journal.close();
    }
  }
}

/**
 * Reads a JSON-lines journal and hands each line to `apply`, in order. Returns how many lines were
 * applied and the length of the good prefix. A last line without its newline is a torn append
 * (dropped). Any other bad line is corruption: `StateCorruptError`, or with 'reset' the
 * file is copied aside and the lines from that one on are dropped.
 */
async function replayJournal(file: string, apply: (line: unknown) => void, onCorrupt: OnCorrupt): Promise<{ lines: number; goodBytes: number }> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if (isNotFound(err)) return { lines: 0, goodBytes: 0 };
    throw new PersistenceError('STATE_READ', `cannot read state file ${file}: ${describe(err)}`, { cause: err });
  }
  let lines = 0;
  let offset = 0;
  for (;;) {
    const end = text.indexOf('\n', offset);
    // A last line without its newline is a torn append: its save never completed.
    if (end === -1) break;
    try {
      apply(JSON.parse(text.slice(offset, end)));
    } catch (cause) {
      const err = new StateCorruptError(file, `line ${lines + 1}: ${describe(cause)}`, { cause });
      if (onCorrupt !== 'reset') throw err;
      await fsp.copyFile(file, `${file}.corrupt-${Date.now()}`);
      break;
    }
    offset = end + 1;
    lines++;
  }
  return { lines, goodBytes: Buffer.byteLength(text.slice(0, offset)) };
}

/**
 * Persistent state on local disk: small lowdb JSON files and a sharded persistent map.
 *
 * lowdb gives the interface (an `Adapter<T>` with `read()`/`write()`); this file adds what lowdb
 * lacks: atomic *and durable* writes (temp file, fsync, rename, fsync of the directory), private
 * file modes, coalesced writes, and for large maps shards plus an append-only journal, so that a
 * change costs one appended line instead of a rewrite.
 *
 * Durability contract shared by every store here: `flush()` resolves once everything changed
 * before the call is on disk (fsynced, renamed into place, directory fsynced; or appended to a
 * journal and fdatasynced). A crash at any moment leaves each JSON file either at its old or at
 * its new content, never half of one; a journal may end in a torn line, which is dropped on load.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import { Low, type Adapter } from 'lowdb';
import { SystemsyncError } from './core/errors.js';

/** Base of the errors thrown by this module; callers branch on `code`. */
export class PersistenceError extends SystemsyncError {}

/** A state file exists but cannot be read as what it should hold (bad JSON, wrong shape). */
export class StateCorruptError extends PersistenceError {
  readonly file: string;
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super('STATE_CORRUPT', `state file ${file} is corrupt: ${reason}`, options);
    this.file = file;
  }
}

/** A store was used after `close()`. */
export class StoreClosedError extends PersistenceError {
  constructor(what: string) {
    super('STORE_CLOSED', `${what} is closed`);
  }
}

/** What to do when a state file is corrupt: throw `StateCorruptError`, or move it aside and start empty. */
export type OnCorrupt = 'throw' | 'reset';

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
const TEMP_INFIX = '.tmp-';

/**
 * `mkdir -p` with mode 0700; if the directory already exists its mode is set to 0700.
 * Throws a `PersistenceError` ('STATE_DIR') naming the path if it cannot be made a directory.
 */
export async function ensurePrivateDir(dirPath: string): Promise<void> {
  try {
    await fsp.mkdir(dirPath, { recursive: true, mode: DIR_MODE });
    const st = await fsp.stat(dirPath);
    if (!st.isDirectory()) throw new Error('not a directory');
    if ((st.mode & 0o7777) !== DIR_MODE) await fsp.chmod(dirPath, DIR_MODE);
  } catch (cause) {
    throw new PersistenceError('STATE_DIR', `cannot use ${dirPath} as a private state directory: ${describe(cause)}`, { cause });
  }
}

/**
 * The directory a Unix socket is bound in. One this call creates is made 0700. One that already
 * exists (e.g. the home directory, for `[rpc] socket = ~/rpc.sock`) is never chmod'ed: it must be
 * a directory owned by this user (or root) that nobody else can write into, unless its sticky bit
 * keeps others from removing or replacing the socket; otherwise this refuses with a
 * `PersistenceError` ('SOCKET_DIR') naming the directory and its mode. The socket file itself is
 * 0600, so a readable parent is fine.
 */
export async function ensureSocketDir(dirPath: string): Promise<void> {
  let st: Stats;
  try {
    const created = await fsp.mkdir(dirPath, { recursive: true, mode: DIR_MODE });
    if (created !== undefined) return;
    st = await fsp.stat(dirPath);
  } catch (cause) {
    throw new PersistenceError('SOCKET_DIR', `cannot use ${dirPath} for a socket: ${describe(cause)}`, { cause });
  }
  const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
  if (!st.isDirectory()) throw new PersistenceError('SOCKET_DIR', `cannot use ${dirPath} for a socket: not a directory`);
  const uid = process.getuid?.() ?? st.uid;
  if (st.uid !== uid && st.uid !== 0) {
    throw new PersistenceError('SOCKET_DIR', `refusing to put a socket in ${dirPath}: it is owned by uid ${st.uid}, not by this user (uid ${uid}) or root`);
  }
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
    throw new PersistenceError(
      'SOCKET_DIR',
      `refusing to put a socket in ${dirPath}: mode ${mode} lets other users replace it; make that directory not group/other-writable, or choose a socket path in a private directory (systemsync does not change the mode of a directory it did not create)`,
    );
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

async function fsyncDir(dirPath: string): Promise<void> {
  const handle = await fsp.open(dirPath, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes `text` to `file` atomically and durably: a temp file beside it (mode 0600), fsync,
 * rename into place, fsync of the directory. `text` may come as chunks, written in order (each
 * produced only when the previous one is written).
 */
export async function writeFileAtomic(file: string, text: string | Iterable<string>): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `${path.basename(file)}${TEMP_INFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
  let renamed = false;
  try {
    const handle = await fsp.open(temp, 'wx', FILE_MODE);
    try {
      await handle.chmod(FILE_MODE); // independent of the umask
      if (typeof text === 'string') await handle.writeFile(text, 'utf8');
      else for (const chunk of text) await handle.writeFile(chunk, 'utf8'); // at the current position, all of it
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, file);
    renamed = true;
    await fsyncDir(dir);
  } catch (cause) {
    if (!renamed) await fsp.rm(temp, { force: true }).catch(() => undefined);
    throw new PersistenceError('STATE_WRITE', `cannot write state file ${file}: ${describe(cause)}`, { cause });
  }
}

/** Removes temp files left beside `file` by writes that a crash interrupted. */
async function removeLeftoverTemps(file: string): Promise<void> {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}${TEMP_INFIX}`;
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  await Promise.all(names.filter((n) => n.startsWith(prefix)).map((n) => fsp.rm(path.join(dir, n), { force: true })));
}

/** Moves a corrupt file aside to `<file>.corrupt-<ms timestamp>`; returns the new name. */
async function moveAside(file: string): Promise<string> {
  let aside = `${file}.corrupt-${Date.now()}`;
  for (let i = 1; await exists(aside); i++) aside = `${file}.corrupt-${Date.now()}-${i}`;
  await fsp.rename(file, aside);
  await fsyncDir(path.dirname(file));
  return aside;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/**
 * lowdb adapter for one JSON file with atomic, fsynced writes and mode 0600.
 * `read()` returns null if the file does not exist and throws `StateCorruptError` if it is not
 * valid JSON or `validate` rejects it. `write()` serialises synchronously, before its first
 * await, so the snapshot written is the data as it was at the call.
 */
export class AtomicJsonFile<T> implements Adapter<T> {
  constructor(
    readonly file: string,
    private readonly validate: ((raw: unknown) => T) | null = null,
  ) {}

  async read(): Promise<T | null> {
    let text: string;
    try {
      text = await fsp.readFile(this.file, 'utf8');
    } catch (err) {
      if (isNotFound(err)) return null;
      throw new PersistenceError('STATE_READ', `cannot read state file ${this.file}: ${describe(err)}`, { cause: err });
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (cause) {
      throw new StateCorruptError(this.file, `not valid JSON (${describe(cause)})`, { cause });
    }
    if (this.validate === null) return raw as T;
    try {
      return this.validate(raw);
    } catch (cause) {
      throw new StateCorruptError(this.file, describe(cause), { cause });
    }
  }

  write(data: T): Promise<void> {
    const text = JSON.stringify(data);
    if (text === undefined) return Promise.reject(new PersistenceError('STATE_WRITE', `cannot serialise state for ${this.file}`));
    return writeFileAtomic(this.file, text + '\n');
  }
}

/**
 * Coalesces saves: `markDirty()` schedules one run of `save` on the next turn of the event loop,
 * however many times it is called; a run never overlaps another. `flush()` resolves when every
 * change marked before the call has been saved (and rejects with the save's error if it failed;
 * the state then stays dirty and is retried by the next `markDirty()` or `flush()`).
 * `save` must take its snapshot synchronously, before its first await.
 * A failed background save with nobody flushing goes to `onError`.
 */
export class Coalescer {
  private dirty = false;
  private scheduled = false;
  private markedDuringRun = false;
  private running: Promise<void> | null = null;
  private nextWaiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];

  /**
   * @param delayMs how long a background save waits after the first change: 0 saves on the next
   *   tick; a longer delay folds many changes into one write. `flush()` never waits for it.
   */
  constructor(
    private readonly save: () => Promise<void>,
    private readonly onError: (err: unknown) => void = () => undefined,
    private readonly delayMs = 0,
  ) {}

  /** True while a change has not yet been handed to a save. */
  get isDirty(): boolean {
    return this.dirty;
  }

  markDirty(): void {
    this.dirty = true;
    if (this.running !== null) {
      this.markedDuringRun = true;
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    const run = (): void => {
      this.scheduled = false;
      this.kick();
    };
    if (this.delayMs > 0) setTimeout(run, this.delayMs).unref();
    else setImmediate(run);
  }

  flush(): Promise<void> {
    if (this.dirty) {
      const done = new Promise<void>((resolve, reject) => this.nextWaiters.push({ resolve, reject }));
      this.kick();
      return done;
    }
    return this.running ?? Promise.resolve();
  }

  private kick(): void {
    if (this.running !== null || !this.dirty) return;
    this.dirty = false;
    this.markedDuringRun = false;
    const waiters = this.nextWaiters;
    this.nextWaiters = [];
    let run: Promise<void>;
    try {
      run = this.save();
    } catch (err) {
      run = Promise.reject(err);
    }
    const settled = run.then(
      () => {
        for (const w of waiters) w.resolve();
      },
      (err: unknown) => {
        this.dirty = true; // what failed to save is still unsaved
        if (waiters.length === 0) this.onError(err);
        for (const w of waiters) w.reject(err);
        throw err;
      },
    );
    this.running = settled;
    settled.then(
      () => this.afterRun(true),
      () => this.afterRun(false),
    );
  }

  private afterRun(succeeded: boolean): void {
    this.running = null;
    // After a failure, retry only if someone changed something or is waiting: no busy loop on a dead disk.
    if (this.dirty && (succeeded || this.markedDuringRun || this.nextWaiters.length > 0)) this.kick();
  }
}

export interface StoreOptions {
  /** Default 'throw'. */
  onCorrupt?: OnCorrupt;
  /** Called with the error of a background save that no `flush()` was waiting for. */
  onWriteError?: (err: unknown) => void;
  /**
   * Delay of background saves in ms (default 0: next tick). Stores whose callers `flush()`
   * before anything depends on durability use a longer delay, so a burst of changes costs one
   * write per file instead of one per change.
   */
  saveDelayMs?: number;
}

export interface JsonStoreOptions<T> extends StoreOptions {
  /** Checks and converts what was read; throwing marks the file corrupt. */
  validate?: (raw: unknown) => T;
}

/**
 * One small JSON state file kept in memory as `data`. Change it only through `update()`, which
 * schedules a coalesced atomic save.
 */
export class JsonStore<T> {
  private closed = false;

  private constructor(
    private readonly low: Low<T>,
    private readonly coalescer: Coalescer,
    readonly file: string,
  ) {}

  /**
   * Loads `file` (creating its directory with mode 0700), or starts from a deep copy of
   * `defaults` if it does not exist. A corrupt file throws `StateCorruptError`, or with
   * `onCorrupt: 'reset'` is renamed to `<file>.corrupt-<ts>` and the store starts from defaults.
   */
  static async open<T>(file: string, defaults: T, options: JsonStoreOptions<T> = {}): Promise<JsonStore<T>> {
    await ensurePrivateDir(path.dirname(file));
    await removeLeftoverTemps(file);
    const adapter = new AtomicJsonFile<T>(file, options.validate ?? null);
    const low = new Low<T>(adapter, structuredClone(defaults));
    try {
      await low.read();
    } catch (err) {
      if (!(err instanceof StateCorruptError) || options.onCorrupt !== 'reset') throw err;
      await moveAside(file);
      low.data = structuredClone(defaults);
    }
    const coalescer = new Coalescer(() => low.write(), options.onWriteError, options.saveDelayMs ?? 0);
    return new JsonStore(low, coalescer, file);
  }

  /** The live data. Mutate it only inside `update()`. */
  get data(): T {
    return this.low.data;
  }

  /** Applies `fn` to the data and schedules a save (coalesced with other updates in this tick). */
  update(fn: (data: T) => void): void {
    if (this.closed) throw new StoreClosedError(`store ${this.file}`);
    fn(this.low.data);
    this.coalescer.markDirty();
  }

  /** Resolves when every update made before the call is durable on disk. */
  flush(): Promise<void> {
    return this.coalescer.flush();
  }

  /** Flushes, then refuses further updates. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.coalescer.flush();
  }
}

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

/**
 * A persistent `Map<string, V>` split across N shard files in one directory by a stable hash of
 * the key, plus an append-only journal. Reads are in memory. A save appends the changed keys to
 * `journal.jsonl` (one line each, then one fdatasync): a commit of a few hundred files costs one
 * small write, not a rewrite of every shard it touches (measured: a 10k-file sync spent 1.5 s of
 * the server's CPU serialising shards). Once the journal holds more lines than half the map (at
 * least 4096), the shards it covers are rewritten atomically and the journal is emptied. Opening
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

    const metaFile = path.join(dir, META_FILE);
    const metaAdapter = new AtomicJsonFile<ShardedMapMeta>(metaFile, validateMeta);
    let meta: ShardedMapMeta | null;
    try {
      meta = await metaAdapter.read();
    } catch (err) {
      if (!(err instanceof StateCorruptError) || options.onCorrupt !== 'reset') throw err;
      await moveAside(metaFile);
      meta = null;
    }
    if (meta === null) {
      // A directory whose meta is missing or was reset keeps the shard count its files show.
      const existing = names.filter((n) => /^shard-\d{4}\.json$/.test(n)).length;
      meta = { format: 'systemsync-sharded-map', version: 1, shards: existing > 0 ? existing : requested };
      await metaAdapter.write(meta);
    }
    const shards = meta.shards;

    const validateEntry = (e: unknown): [string, V] => {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string') throw new Error('expected entries of [key, value]');
      return [e[0], options.validateValue ? options.validateValue(e[1]) : (e[1] as V)];
    };
    const validateShard = (raw: unknown): ShardFile<V> => {
      const f = raw as Partial<ShardFile<V>> | null;
      if (typeof f !== 'object' || f === null || !Array.isArray(f.entries)) throw new Error('expected {"entries": [...]}');
      f.entries = f.entries.map(validateEntry);
      return f as ShardFile<V>;
    };

    const codec = options.codec ?? null;
    const stored = (value: V): unknown => (codec === null ? value : codec.encode(value));
    const maps: Array<Map<string, unknown>> = [];
    await Promise.all(
      Array.from({ length: shards }, async (_, i) => {
        const file = path.join(dir, shardFileName(i));
        const adapter = new AtomicJsonFile<ShardFile<V>>(file, validateShard);
        let content: ShardFile<V> | null;
        try {
          content = await adapter.read();
        } catch (err) {
          if (!(err instanceof StateCorruptError) || options.onCorrupt !== 'reset') throw err;
          await moveAside(file);
          content = null;
        }
        const map = new Map<string, unknown>();
        for (const [key, value] of content?.entries ?? []) {
          if (hashKey(key) % shards !== i) {
            const err = new StateCorruptError(file, `key ${JSON.stringify(key)} does not belong in shard ${i} of ${shards}`);
            if (options.onCorrupt !== 'reset') throw err;
            continue; // dropped; the shard is rewritten below
          }
          map.set(key, stored(value));
        }
        maps[i] = map;
      }),
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

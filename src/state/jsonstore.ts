import path from 'node:path';
import { Low } from 'lowdb';
import { AtomicJsonFile, ensurePrivateDir, moveAside, removeLeftoverTemps } from './atomicfile.js';
import { Coalescer } from './coalescer.js';
import { StateCorruptError, StoreClosedError, type OnCorrupt } from './errors.js';

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

/** A FIFO mutex: `run(fn)` waits for every earlier `run` to settle, then runs `fn`. */
export class SerialLock {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** Run `worker` over `items` with at most `limit` in flight; resolves when all settled. */
export async function forEachLimited<T>(
  items: Iterable<T>,
  limit: number,
  worker: (item: T) => Promise<void>,
): Promise<void> {
  const iterator = items[Symbol.iterator]();
  const lanes = Array.from({ length: Math.max(1, limit) }, async () => {
    for (let next = iterator.next(); !next.done; next = iterator.next()) await worker(next.value);
  });
  await Promise.all(lanes);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Collects items and hands all of them to `run` once, `delayMs` after the first one came; items
 * added meanwhile join that batch. The timer never keeps the process alive.
 */
export class DelayedBatch<T> {
  private readonly items = new Set<T>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly delayMs: number,
    private readonly run: (items: T[]) => void,
  ) {}

  add(items: Iterable<T>): void {
    for (const item of items) this.items.add(item);
    if (this.timer !== null || this.items.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const due = [...this.items];
      this.items.clear();
      this.run(due);
    }, this.delayMs);
    this.timer.unref();
  }

  /** Drop what is waiting (at stop). */
  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.items.clear();
  }
}

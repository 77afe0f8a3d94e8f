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
 * Hands each item to `run` no sooner than `delayMs` after it was last added (and no later than
 * about 1.4 × `delayMs`): items that come close together are handed over together, and `run`
 * is called at most every `delayMs / 3`. Adding an item that is waiting restarts its delay.
 * The timer never keeps the process alive.
 */
export class DelayedBatch<T> {
  /** Each waiting item and when it is due; insertion order is due order. */
  private readonly due = new Map<T, number>();
  private timer: NodeJS.Timeout | null = null;
  private notBefore = 0;

  constructor(
    private readonly delayMs: number,
    private readonly run: (items: T[]) => void,
  ) {}

  add(items: Iterable<T>): void {
    const at = Date.now() + this.delayMs;
    for (const item of items) {
      this.due.delete(item);
      this.due.set(item, at);
    }
    this.arm();
  }

  private arm(): void {
    if (this.timer !== null) return;
    const first = this.due.values().next();
    if (first.done === true) return;
    this.timer = setTimeout(() => this.fire(), Math.max(0, Math.max(first.value, this.notBefore) - Date.now()));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = null;
    const now = Date.now();
    const ready: T[] = [];
    for (const [item, at] of this.due) {
      if (at > now) break;
      ready.push(item);
    }
    for (const item of ready) this.due.delete(item);
    this.notBefore = now + this.delayMs / 3;
    this.arm();
    if (ready.length > 0) this.run(ready);
  }

  /** Drop what is waiting (at stop). */
  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.due.clear();
  }
}

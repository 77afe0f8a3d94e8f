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

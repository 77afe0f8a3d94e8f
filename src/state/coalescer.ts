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

/**
 * The simulated clock and the scheduler. Every concurrent activity of every node is a task: a
 * generator that yields at each point where the real daemon awaits (a file system call, a
 * message, a timer). The scheduler alone decides which ready task runs next, with its own
 * seeded PRNG, so a seed fixes the whole interleaving.
 */
import type { Rng } from './prng.js';

/** What a task waits for: nothing (just let others run), a condition, or simulated time. */
export type Wait = undefined | { until: () => boolean } | { sleep: number };
export type Proc<T = void> = Generator<Wait, T, void>;

interface Task {
  id: number;
  owner: string;
  label: string;
  gen: Proc;
  wait: Wait;
  wakeAt: number;
}

interface Timer {
  at: number;
  seq: number;
  owner: string;
  fn: () => void;
}

export class Scheduler {
  now = 0;
  steps = 0;
  private nextId = 1;
  private timerSeq = 0;
  private tasks: Task[] = [];
  private timers: Timer[] = [];
  private currentTask: Task | null = null;

  /** The task being advanced (for locks that want to say who holds them). */
  get current(): string {
    const t = this.currentTask;
    return t === null ? '' : `${t.owner}/${t.label}#${t.id}`;
  }
  /** Uncaught errors of tasks: a daemon would crash or log; the simulation reports them. */
  readonly crashes: string[] = [];

  constructor(private readonly rng: Rng) {}

  spawn(owner: string, label: string, gen: Proc): void {
    this.tasks.push({ id: this.nextId++, owner, label, gen, wait: undefined, wakeAt: this.now });
  }

  /** Run `fn` at simulated time `at` (no interleaving inside it). Timers are kept in (at, seq) order. */
  at(at: number, owner: string, fn: () => void): void {
    const timer: Timer = { at: Math.max(at, this.now), seq: this.timerSeq++, owner, fn };
    let lo = 0;
    let hi = this.timers.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.timers[mid]!.at <= timer.at) lo = mid + 1;
      else hi = mid;
    }
    this.timers.splice(lo, 0, timer);
  }

  after(ms: number, owner: string, fn: () => void): void {
    this.at(this.now + ms, owner, fn);
  }

  /** Forget every task and timer of `owner` (a killed process). */
  kill(owner: string): void {
    this.tasks = this.tasks.filter((t) => t.owner !== owner);
    this.timers = this.timers.filter((t) => t.owner !== owner);
  }

  hasTask(owner: string, label: string): boolean {
    return this.tasks.some((t) => t.owner === owner && t.label === label);
  }

  private isReady(t: Task): boolean {
    if (t.wait === undefined) return true;
    if ('sleep' in t.wait) return t.wakeAt <= this.now;
    return t.wait.until();
  }

  private readonly readyScratch: Task[] = [];

  /**
   * One step: a due timer, or one ready task advanced to its next yield. When nothing is ready,
   * the clock jumps to the next timer or wake-up. Returns false when nothing is left to do.
   */
  step(): boolean {
    this.steps++;
    let due = 0;
    while (due < this.timers.length && this.timers[due]!.at <= this.now) due++;
    const ready = this.readyScratch;
    ready.length = 0;
    for (const t of this.tasks) if (this.isReady(t)) ready.push(t);
    const total = due + ready.length;
    if (total === 0) {
      let next = this.timers.length > 0 ? this.timers[0]!.at : Infinity;
      for (const t of this.tasks) if (t.wait !== undefined && 'sleep' in t.wait) next = Math.min(next, t.wakeAt);
      if (next === Infinity) return false;
      this.now = next;
      return true;
    }
    const k = this.rng.int(total);
    if (k < due) {
      // Timers due at the same moment fire in the order they were set, one per step.
      const first = this.timers.shift()!;
      first.fn();
      return true;
    }
    const task = ready[k - due]!;
    this.now += 1; // every step takes a little time: mtimes and ctimes move
    this.currentTask = task;
    let res: IteratorResult<Wait, void>;
    try {
      res = task.gen.next();
    } catch (err) {
      this.removeTask(task);
      this.crashes.push(`${task.owner}/${task.label}: ${(err as Error).stack ?? String(err)}`);
      return true;
    }
    if (res.done === true) {
      this.removeTask(task);
      return true;
    }
    task.wait = res.value;
    if (res.value !== undefined && 'sleep' in res.value) task.wakeAt = this.now + res.value.sleep;
    return true;
  }

  private removeTask(task: Task): void {
    const i = this.tasks.indexOf(task);
    if (i >= 0) this.tasks.splice(i, 1);
  }

  /** How many tasks could run now. */
  get idleTasks(): number {
    let n = 0;
    for (const t of this.tasks) if (this.isReady(t)) n++;
    return n;
  }

  pendingTimers(): number {
    return this.timers.length;
  }

  taskLabels(): string[] {
    return this.tasks.map((t) => `${t.owner}/${t.label}`);
  }
}

/** Let other tasks run. */
export function* pause(): Proc {
  yield undefined;
}

export function* sleep(ms: number): Proc {
  yield { sleep: ms };
}

export function* waitUntil(cond: () => boolean): Proc {
  while (!cond()) yield { until: cond };
}

/** A mutex for tasks, first come first served (the daemons' SerialLock is a promise queue). */
export class SimLock {
  private held = false;
  private readonly queue: number[] = [];
  private nextTicket = 0;
  holder = '';

  constructor(private readonly sched?: Scheduler) {}

  *acquire(): Proc {
    const ticket = this.nextTicket++;
    this.queue.push(ticket);
    yield* waitUntil(() => !this.held && this.queue[0] === ticket);
    this.queue.shift();
    this.held = true;
    this.holder = this.sched?.current ?? '';
  }

  release(): void {
    this.held = false;
    this.holder = '';
  }

  get isHeld(): boolean {
    return this.held;
  }
}

/**
 * src/node/lock.ts DelayedBatch: each item is handed to `run` no sooner than `delayMs` after it
 * was last added; items due together go together, and `run` is called at most every `delayMs / 3`.
 */
export class SimDelayedBatch<T> {
  private readonly due = new Map<T, number>();
  private isArmed = false;
  private notBefore = 0;

  constructor(
    private readonly sched: Scheduler,
    private readonly owner: string,
    private readonly delayMs: number,
    private readonly run: (items: T[]) => void,
  ) {}

  add(items: Iterable<T>): void {
    const at = this.sched.now + this.delayMs;
    for (const item of items) {
      this.due.delete(item);
      this.due.set(item, at);
    }
    this.arm();
  }

  private arm(): void {
    if (this.isArmed) return;
    const first = this.due.values().next();
    if (first.done === true) return;
    this.isArmed = true;
    this.sched.at(Math.max(first.value, this.notBefore), this.owner, () => this.fire());
  }

  private fire(): void {
    this.isArmed = false;
    const now = this.sched.now;
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

  /** Drop what is waiting (a killed process loses its timers). */
  cancel(): void {
    this.isArmed = false;
    this.notBefore = 0;
    this.due.clear();
  }
}

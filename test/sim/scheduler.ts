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
  /** The task being advanced (for locks that want to say who holds them). */
  current = '';
  /** Uncaught errors of tasks: a daemon would crash or log; the simulation reports them. */
  readonly crashes: string[] = [];

  constructor(private readonly rng: Rng) {}

  spawn(owner: string, label: string, gen: Proc): void {
    this.tasks.push({ id: this.nextId++, owner, label, gen, wait: undefined, wakeAt: this.now });
  }

  /** Run `fn` at simulated time `at` (no interleaving inside it). */
  at(at: number, owner: string, fn: () => void): void {
    this.timers.push({ at: Math.max(at, this.now), seq: this.timerSeq++, owner, fn });
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

  /**
   * One step: a due timer, or one ready task advanced to its next yield. When nothing is ready,
   * the clock jumps to the next timer or wake-up. Returns false when nothing is left to do.
   */
  step(): boolean {
    this.steps++;
    const dueTimers = this.timers.filter((t) => t.at <= this.now);
    const ready = this.tasks.filter((t) => this.isReady(t));
    const total = dueTimers.length + ready.length;
    if (total === 0) {
      let next = Infinity;
      for (const t of this.timers) next = Math.min(next, t.at);
      for (const t of this.tasks) if (t.wait !== undefined && 'sleep' in t.wait) next = Math.min(next, t.wakeAt);
      if (next === Infinity) return false;
      this.now = next;
      return true;
    }
    const k = this.rng.int(total);
    if (k < dueTimers.length) {
      // Timers due at the same moment fire in the order they were set, one per step.
      const first = dueTimers.reduce((a, b) => (a.at < b.at || (a.at === b.at && a.seq < b.seq) ? a : b));
      this.timers = this.timers.filter((t) => t !== first);
      first.fn();
      return true;
    }
    const task = ready[k - dueTimers.length]!;
    this.now += 1; // every step takes a little time: mtimes and ctimes move
    let res: IteratorResult<Wait, void>;
    this.current = `${task.owner}/${task.label}#${task.id}`;
    try {
      res = task.gen.next();
    } catch (err) {
      this.tasks = this.tasks.filter((t) => t !== task);
      this.crashes.push(`${task.owner}/${task.label}: ${(err as Error).stack ?? String(err)}`);
      return true;
    }
    if (res.done === true) {
      this.tasks = this.tasks.filter((t) => t !== task);
      return true;
    }
    task.wait = res.value;
    if (res.value !== undefined && 'sleep' in res.value) task.wakeAt = this.now + res.value.sleep;
    return true;
  }

  /** Nothing runnable now and nothing scheduled except the given owners' periodic timers. */
  get idleTasks(): number {
    return this.tasks.filter((t) => this.isReady(t)).length;
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

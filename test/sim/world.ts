/**
 * One simulated run: a server and several clients in one process, every source of
 * nondeterminism behind one seed (op stream, scheduler, network delays), user ops and faults
 * as a trace of events, then a quiet phase with faults healed, then the invariants.
 */
import { MemFs } from './fs.js';
import { Rng } from './prng.js';
import { Scheduler } from './scheduler.js';
import { Network } from './network.js';
import { ServerShell, type SimInjection } from './server.js';
import { ClientShell } from './client.js';
import { emptyPersisted } from './clientstate.js';
import { type Fault, type GenOptions, type TraceEvent, type UserOp, applyUserOp, areasOf, generateOp } from './ops.js';
import { type Violation, checkConverged, checkNoStrayTemp, checkNothingLost, checkOwnAreas, describeTree } from './invariants.js';

export interface SimOptions {
  seed: number;
  /** Replay these events instead of generating them (shrinking, or a saved failure). */
  trace?: TraceEvent[];
  clients?: number;
  opsPerNode?: number;
  faults?: number;
  /** Keep the shells' log lines (for printing a failure). */
  keepLog?: boolean;
  /** A deliberately broken rule (the engine's tests use it to show that the invariants catch it). */
  inject?: SimInjection;
  /** How long the quiet phase may take (simulated ms) before the run counts as not converging. */
  quietLimitMs?: number;
  /** Which kinds of op the generator makes (all by default). */
  gen?: GenOptions;
}

export interface SimResult {
  seed: number;
  trace: TraceEvent[];
  violation: Violation | null;
  log: string[];
  steps: number;
  simTime: number;
  /** Why the run stopped: all quiet and converged, the quiet phase's time limit, the step limit, or nothing left to run. */
  ended: 'quiet' | 'time' | 'steps' | 'drained';
}

/** How long the quiet phase may take by default (simulated ms): longer than the longest retry backoff (60 s). */
const QUIET_LIMIT_MS = 70_000;
const STEP_LIMIT = 2_000_000;

export function runSim(options: SimOptions): SimResult {
  const seed = options.seed >>> 0;
  const gen = options.gen ?? {};
  const quietLimit = options.quietLimitMs ?? QUIET_LIMIT_MS;
  const opsRng = Rng.derive(seed, 'ops');
  const sched = new Scheduler(Rng.derive(seed, 'sched'));
  const net = new Network(sched, Rng.derive(seed, 'net'));
  const clock = (): number => sched.now;
  let ino = 100;
  const newIno = (): number => ++ino;
  const log: string[] = [];
  const say = (line: string): void => {
    if (options.keepLog === true) log.push(`t=${sched.now} ${line}`);
  };

  const serverFs = new MemFs(clock, newIno);
  const server = new ServerShell(serverFs, sched, () => new Date(Date.UTC(2026, 10, 23, 14, 0, 0) + sched.now), options.inject ?? null);
  const nClients = options.clients ?? 3;
  const names = Array.from({ length: nClients }, (_, i) => `c${i}`);
  const fsOf = new Map<string, MemFs>([['server', serverFs]]);
  const created = new Set<string>();
  const destroyed = new Set<string>();
  const ownLeft = new Map<string, Map<string, string>>();
  const armed = new Map<string, number>();
  const counters = new Map<string, number>();
  const fresh = (node: string) => (): string => {
    const n = (counters.get(node) ?? 0) + 1;
    counters.set(node, n);
    return `${node}.${n}`;
  };

  const clients = new Map<string, ClientShell>();
  const hooks = {
    window: (node: string, path: string, where: string): void => {
      const n = armed.get(node) ?? 0;
      if (n === 0) return;
      const fs = fsOf.get(node)!;
      const kind = fs.lstat(path)?.kind;
      if (kind !== 'file' && kind !== 'symlink') return;
      // Only where this node's user writes: its own area or the shared one.
      if (!areasOf(node).some((area) => path.startsWith(`${area}/`))) return;
      armed.set(node, n - 1);
      say(`${node} racing write to ${path} at ${where}`);
      // A file is overwritten; a link is replaced by a new file (a version that must not be lost).
      userOp(node, kind === 'file' ? { kind: 'write', path, mode: 0o644 } : { kind: 'retype', path, to: 'file' });
    },
    log: (node: string, line: string): void => say(`${node} ${line}`),
  };
  for (const name of names) {
    const fs = new MemFs(clock, newIno);
    fsOf.set(name, fs);
    clients.set(name, new ClientShell(name, fs, emptyPersisted(), sched, net, server, hooks));
  }
  const nodes = ['server', ...names];

  function userOp(node: string, op: UserOp): void {
    const fs = fsOf.get(node)!;
    const done = applyUserOp(fs, op, fresh(node));
    if (done.created.length > 0 || done.destroyed.length > 0) say(`${node} user ${op.kind}: made ${JSON.stringify(done.created)} destroyed ${JSON.stringify(done.destroyed)}`);
    for (const c of done.created) created.add(c);
    for (const c of done.destroyed) destroyed.add(c);
    const own = areasOf(node)[0]!;
    ownLeft.set(node, describeTree(fs, own));
    if (done.hints.length === 0) return;
    // The watcher reports a little later (and not at all to a daemon that is down). Like
    // src/fs/watch.ts, it walks every hinted directory and hints its descendants too.
    sched.after(1 + net.rng.int(20), 'world', () => {
      const hints = new Set(done.hints);
      for (const p of done.hints) if (fs.lstat(p)?.kind === 'dir') for (const q of fs.walk(p)) hints.add(q);
      if (node === 'server') server.hint([...hints]);
      else clients.get(node)!.onHints([...hints]);
    });
  }

  const down = new Set<string>();
  function restart(node: string): void {
    if (!down.has(node)) return;
    down.delete(node);
    say(`${node} restarts`);
    if (node === 'server') server.start();
    else clients.get(node)!.start();
  }
  function fault(node: string, f: Fault): void {
    if (f.kind === 'race') {
      armed.set(node, (armed.get(node) ?? 0) + 1);
      return;
    }
    if (down.has(node)) return;
    if (f.kind === 'cut') {
      say(`${node} connection cut`);
      net.cut(node === 'server' ? null : node);
      return;
    }
    say(`${node} killed for ${f.down} ms`);
    down.add(node);
    if (node === 'server') {
      server.kill();
      net.cut(null);
    } else {
      clients.get(node)!.kill();
    }
    sched.after(f.down, 'world', () => restart(node));
  }

  // -- the trace: generated lazily from the op stream, or replayed ------------------------------
  // Events keep the order in which their timers were set (not the order they fired), so that a
  // replay sets its timers in the same order and the scheduler makes the same choices.
  const slots: Array<TraceEvent | undefined> = [];
  const fire = (slot: number, e: TraceEvent): void => {
    slots[slot] = e;
    if (e.op.kind === 'cut' || e.op.kind === 'kill' || e.op.kind === 'race') fault(e.node, e.op);
    else userOp(e.node, e.op);
  };
  const plan = (at: number, make: () => TraceEvent): void => {
    const slot = slots.length;
    slots.push(undefined);
    sched.at(at, 'world', () => fire(slot, make()));
  };
  let opsEnd = 0;
  if (options.trace !== undefined) {
    for (const e of options.trace) {
      plan(e.at, () => e);
      opsEnd = Math.max(opsEnd, e.at);
    }
  } else {
    const perNode = options.opsPerNode ?? 12;
    for (const node of nodes) {
      let at = 0;
      const count = node === 'server' ? Math.ceil(perNode / 2) : perNode;
      for (let i = 0; i < count; i++) {
        at += opsRng.chance(0.3) ? opsRng.range(200, 1500) : opsRng.range(0, 40);
        const when = at;
        plan(when, () => ({ at: when, node, op: generateOp(opsRng, fsOf.get(node)!, node, gen) }));
        opsEnd = Math.max(opsEnd, at);
      }
    }
    const faults = options.faults ?? 3;
    for (let i = 0; i < faults; i++) {
      const at = opsRng.range(0, Math.max(1, opsEnd));
      const node = opsRng.pick(nodes);
      const roll = opsRng.int(3);
      const op: Fault = roll === 0 ? { kind: 'cut' } : roll === 1 ? { kind: 'kill', down: opsRng.range(10, 3000) } : { kind: 'race' };
      if (op.kind === 'race' && gen.races === false) continue;
      if (op.kind === 'kill' && gen.kills === false) continue;
      plan(at, () => ({ at, node, op }));
    }
  }

  // -- run --------------------------------------------------------------------------------------
  for (const name of names) clients.get(name)!.start();
  server.start();
  const quietFrom = opsEnd + 1;
  let healed = false;
  let violation: Violation | null = null;
  let lastCheck = -1;
  let checkEvery = 50;
  const isQuiet = (): boolean => {
    if (sched.now <= quietFrom || !healed) return false;
    for (const c of clients.values()) if (!c.isIdle(server.head)) return false;
    return checkConverged(serverFs, names.map((n) => [n, fsOf.get(n)!])) === null;
  };
  let idle = false;
  let ended: SimResult['ended'] = 'steps';
  while (sched.steps < STEP_LIMIT) {
    if (!healed && sched.now > quietFrom) {
      healed = true;
      for (const node of [...down]) restart(node);
      armed.clear();
    }
    if (sched.now > quietFrom + quietLimit) {
      ended = 'time';
      break;
    }
    if (sched.now !== lastCheck && sched.idleTasks === 0 && sched.now - lastCheck >= checkEvery) {
      lastCheck = sched.now;
      // Look often at first, then less often while the run stays unsettled (retries back off too).
      if (sched.now > quietFrom) checkEvery = Math.min(checkEvery * 2, 2000);
      if (isQuiet()) {
        idle = true;
        ended = 'quiet';
        break;
      }
    }
    if (!sched.step()) {
      ended = 'drained';
      break;
    }
  }

  // -- invariants -------------------------------------------------------------------------------
  const all: Array<[string, MemFs]> = nodes.map((n) => [n, fsOf.get(n)!]);
  if (sched.crashes.length > 0) violation = { kind: 'crash', detail: sched.crashes[0]! };
  violation ??= checkConverged(serverFs, names.map((n) => [n, fsOf.get(n)!]));
  violation ??= checkOwnAreas(ownLeft, all, (node) => areasOf(node)[0]!);
  violation ??= checkNothingLost(created, destroyed, all, server.trashContents());
  violation ??= checkNoStrayTemp(all);
  if (violation !== null && violation.kind !== 'crash') {
    violation.detail += `\nstate at the end (t=${sched.now}, ${ended}): server head ${server.head}; ${names.map((n) => clients.get(n)!.describe()).join(' | ')}; waiting requests: ${[...net.requests.values()].join(', ')}`;
  }
  if (violation === null && !idle) {
    const busy = names.filter((n) => !clients.get(n)!.isIdle(server.head));
    violation = {
      kind: 'stuck',
      detail: `trees agree but work is left after ${quietLimit} ms quiet: ${busy
        .map((n) => {
          const c = clients.get(n)!;
          return `${n} (outbox ${c.state.dirtyPaths().slice(0, 4).join(',')}; failed ${c.state.failed
            .slice(0, 3)
            .map((t) => `${t.op} ${t.path}: ${t.lastError}`)
            .join('; ')}; cursor ${c.state.cursor}/${server.head})`;
        })
        .join(' | ')}`,
    };
  }
  const trace = slots.filter((e): e is TraceEvent => e !== undefined);
  return { seed, trace, violation, log, steps: sched.steps, simTime: sched.now, ended };
}


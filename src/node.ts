/**
 * What server and client share: lifecycle (start, stop), the state dir, the control socket
 * (`status`, `tasks`, `retry`, `stop` for the CLI), and the status/task vocabulary.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Config } from './cli/config.js';
import type { Logger } from './node/log.js';
import { createRpcPeer, type RpcPeer } from './rpc.js';
import { ensurePrivateDir, ensureSocketDir } from './persistence.js';
import { SyncError } from './core/errors.js';
import { VERSION } from './version.js';
import type { ConflictsParams, ConflictsResult, ResolveParams, ResolveResult, RestoreParams, RestoreResultWire, VersionsParams, VersionsResult } from './rpc.js';

export interface FolderStatus {
  name: string;
  path: string;
  files: number;
  bytes: number;
  pendingPush: number;
  pendingPull: number;
  conflicts: number;
  failed: number;
  /** null, or why the folder is paused, in words. */
  paused: string | null;
  lastSync: string | null;
  head?: number;
  cursor?: number;
  /** Server: the versions kept of deleted and replaced files, and the bytes they take. */
  versions?: { count: number; bytes: number };
}

export interface TransferStatus {
  folder: string;
  path: string;
  direction: 'push' | 'pull';
  done: number;
  total: number;
  /** Bytes per second since the transfer started. */
  rate: number;
  startedAt: string;
}

export interface ClientStatus {
  name: string;
  connected: boolean;
  lastSeen: string | null;
  behind: number;
}

export interface StatusReport {
  /** The systemsync version of the daemon. */
  version: string;
  node: string;
  role: 'client' | 'server';
  connected: boolean;
  pid: number;
  folders: FolderStatus[];
  transfers: TransferStatus[];
  clients?: ClientStatus[];
  /** Present when the event-loop monitor is on (env SYSTEMSYNC_EVENT_LOOP_MONITOR=1). */
  eventLoop?: EventLoopStats;
  /** Bytes: the process's resident set, and how much of it V8's heap and external buffers use. */
  memory: { rss: number; heapTotal: number; heapUsed: number; external: number };
}

/**
 * Event-loop delays, in milliseconds. The window runs from the previous `status` call (or the
 * start) to this one: reading the status starts a new window. `maxStallMs` covers the whole run.
 */
export interface EventLoopStats {
  maxStallMs: number;
  windowMaxStallMs: number;
  windowP99Ms: number;
  windowMeanMs: number;
  windowMs: number;
}

/** Whether the opt-in event-loop monitor is asked for by the environment. */
export function eventLoopMonitorWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.SYSTEMSYNC_EVENT_LOOP_MONITOR === '1';
}

/**
 * Longest event-loop stalls, for operators and `npm run bench`: a `perf_hooks` delay histogram
 * sampled every 10 ms. `read()` returns the stats of the current window and starts a new one.
 */
export class EventLoopMonitor {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private windowStart = Date.now();
  private maxEverMs = 0;

  constructor() {
    this.histogram.enable();
  }

  read(): EventLoopStats {
    const h = this.histogram;
    const toMs = (ns: number): number => Math.round((ns / 1e6) * 10) / 10;
    const hasSamples = h.count > 0;
    const windowMax = hasSamples ? toMs(h.max) : 0;
    this.maxEverMs = Math.max(this.maxEverMs, windowMax);
    const now = Date.now();
    const stats: EventLoopStats = {
      maxStallMs: this.maxEverMs,
      windowMaxStallMs: windowMax,
      windowP99Ms: hasSamples ? toMs(h.percentile(99)) : 0,
      windowMeanMs: hasSamples ? toMs(h.mean) : 0,
      windowMs: now - this.windowStart,
    };
    h.reset();
    this.windowStart = now;
    return stats;
  }

  stop(): void {
    this.histogram.disable();
  }
}

export interface TaskInfo {
  folder: string;
  path: string;
  op: string;
  state: 'queued' | 'failed';
  attempts: number;
  lastError: string | null;
  permanent: boolean;
  since: string;
}

/** Words for a failed fs or SFTP call: the errno code and the message. */
export function describeFsError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== undefined && !err.message.includes(String(code)) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

export function controlSocketPath(config: Config): string {
  return path.join(config.node.stateDir, 'control.sock');
}

/** Live transfers, for `status`. */
export class TransferBoard {
  private readonly live = new Map<number, TransferStatus>();
  private nextId = 1;

  begin(folder: string, p: string, direction: 'push' | 'pull', total: number): { id: number; progress(done: number): void; end(): void } {
    const id = this.nextId++;
    const started = Date.now();
    const status: TransferStatus = { folder, path: p, direction, done: 0, total, rate: 0, startedAt: new Date(started).toISOString() };
    this.live.set(id, status);
    return {
      id,
      progress: (done) => {
        status.done = done;
        const seconds = (Date.now() - started) / 1000;
        status.rate = seconds > 0 ? Math.round(done / seconds) : 0;
      },
      end: () => this.live.delete(id),
    };
  }

  list(): TransferStatus[] {
    return [...this.live.values()].map((t) => ({ ...t }));
  }
}

export abstract class NodeBase {
  readonly transfers = new TransferBoard();
  private control: net.Server | null = null;
  private readonly controlPeers = new Set<RpcPeer>();
  private stopping: Promise<void> | null = null;
  private readonly eventLoop: EventLoopMonitor | null = eventLoopMonitorWanted() ? new EventLoopMonitor() : null;
  private resolveStopRequest!: () => void;
  /** Resolves when someone asked this daemon to stop through the control socket. */
  readonly stopRequested = new Promise<void>((resolve) => (this.resolveStopRequest = resolve));
  /** Set when the daemon gave up for a reason that retrying cannot fix; the command exits 1. */
  fatalError: Error | null = null;

  /** Gives up: logs `err`, records it and asks for a stop (monitor exits 1). */
  protected giveUp(err: Error): void {
    if (this.fatalError !== null) return;
    this.fatalError = err;
    this.logger.error(`giving up: ${err.message}`);
    setImmediate(() => this.resolveStopRequest());
  }

  constructor(
    readonly config: Config,
    readonly logger: Logger,
  ) {}

  protected abstract startRole(): Promise<void>;
  protected abstract stopRole(): Promise<void>;
  protected abstract folderStatuses(): FolderStatus[];
  protected extraStatus(): Partial<StatusReport> {
    return {};
  }
  tasks(): TaskInfo[] {
    return [];
  }
  /** Send failed tasks back to the queue; returns how many. */
  retry(): number {
    return 0;
  }

  /** Start one folder; one that cannot start is paused with the reason, and the others go on. */
  protected async startFolder(name: string, folder: { paused: string | null; start(): Promise<void> }): Promise<void> {
    try {
      await folder.start();
    } catch (err) {
      folder.paused = `could not start: ${(err as Error).message}`;
      this.logger.child(name).error(folder.paused);
    }
  }

  async start(): Promise<void> {
    await ensurePrivateDir(this.config.node.stateDir);
    await this.listenControl();
    await this.startRole();
  }

  /** Graceful stop: in-flight work is finished or left safely queued. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info('stopping');
      for (const peer of this.controlPeers) peer.close();
      await new Promise<void>((resolve) => (this.control ? this.control.close(() => resolve()) : resolve()));
      await fs.rm(controlSocketPath(this.config), { force: true });
      await this.stopRole();
      this.eventLoop?.stop();
      this.logger.info('stopped');
    })();
    return this.stopping;
  }

  /** Versions, restore, conflicts, resolve: the server answers them, a client asks its server. */
  versions(_params: VersionsParams): Promise<VersionsResult> {
    return Promise.reject(new SyncError('UNSUPPORTED', 'versions: not available on this node'));
  }
  restore(_params: RestoreParams): Promise<RestoreResultWire> {
    return Promise.reject(new SyncError('UNSUPPORTED', 'restore: not available on this node'));
  }
  conflicts(_params: ConflictsParams): Promise<ConflictsResult> {
    return Promise.reject(new SyncError('UNSUPPORTED', 'conflicts: not available on this node'));
  }
  resolve(_params: ResolveParams): Promise<ResolveResult> {
    return Promise.reject(new SyncError('UNSUPPORTED', 'resolve: not available on this node'));
  }

  status(): StatusReport {
    return {
      version: VERSION,
      node: this.config.node.name,
      role: this.config.node.role,
      connected: false,
      pid: process.pid,
      folders: this.folderStatuses(),
      transfers: this.transfers.list(),
      ...this.extraStatus(),
      memory: memoryNow(),
      ...(this.eventLoop !== null ? { eventLoop: this.eventLoop.read() } : {}),
    };
  }

  private async listenControl(): Promise<void> {
    this.control = await listenPrivateSocket(controlSocketPath(this.config), (socket) => {
      const peer = createRpcPeer(socket, {
        context: null,
        log: (level, message) => this.logger[level](`control: ${message}`),
        handlers: {
          status: () => ({ ...this.status() }),
          tasks: () => ({ tasks: this.tasks() }),
          retry: () => ({ retried: this.retry() }),
          versions: (params) => this.versions(params),
          restore: (params) => this.restore(params),
          conflicts: (params) => this.conflicts(params),
          resolve: (params) => this.resolve(params),
          stop: () => {
            setImmediate(() => this.resolveStopRequest());
            return { stopping: true };
          },
        },
      });
      this.controlPeers.add(peer);
      void peer.closed.then(() => this.controlPeers.delete(peer));
    });
  }
}

/**
 * Listen on a Unix socket only the owner can use (created under umask 0177, then chmod 0600, in
 * a 0700 directory). A socket file left by a killed daemon is removed; one that answers means
 * another daemon uses this state_dir, and is an error.
 */
export async function listenPrivateSocket(socketPath: string, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
  await ensureSocketDir(path.dirname(socketPath));
  const isAlive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (isAlive) throw new SyncError('ALREADY_RUNNING', `${socketPath} is in use: another daemon is running with this state_dir`);
  await fs.rm(socketPath, { force: true });
  const server = net.createServer(onConnection);
  const previousMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
  } finally {
    process.umask(previousMask);
  }
  await fs.chmod(socketPath, 0o600);
  return server;
}

function memoryNow(): StatusReport['memory'] {
  const { rss, heapTotal, heapUsed, external } = process.memoryUsage();
  return { rss, heapTotal, heapUsed, external };
}

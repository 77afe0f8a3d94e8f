/**
 * What server and client share: lifecycle (start, stop), the state dir, the control socket
 * (`status`, `tasks`, `retry`, `stop` for the CLI), and the status/task vocabulary.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { createRpcPeer, type RpcPeer } from './rpc.js';
import { ensurePrivateDir } from './persistence.js';

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
  node: string;
  role: 'client' | 'server';
  connected: boolean;
  pid: number;
  folders: FolderStatus[];
  transfers: TransferStatus[];
  clients?: ClientStatus[];
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
  private resolveStopRequest!: () => void;
  /** Resolves when someone asked this daemon to stop through the control socket. */
  readonly stopRequested = new Promise<void>((resolve) => (this.resolveStopRequest = resolve));

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
      this.logger.info('stopped');
    })();
    return this.stopping;
  }

  status(): StatusReport {
    return {
      node: this.config.node.name,
      role: this.config.node.role,
      connected: false,
      pid: process.pid,
      folders: this.folderStatuses(),
      transfers: this.transfers.list(),
      ...this.extraStatus(),
    };
  }

  private async listenControl(): Promise<void> {
    const socketPath = controlSocketPath(this.config);
    await ensurePrivateDir(path.dirname(socketPath));
    const inUse = await new Promise<boolean>((resolve) => {
      const probe = net.connect(socketPath);
      probe.once('connect', () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (inUse) {
      throw Object.assign(new Error(`another daemon is running with state_dir ${this.config.node.stateDir} (${socketPath} answers)`), { code: 'ALREADY_RUNNING' });
    }
    await fs.rm(socketPath, { force: true });
    const server = net.createServer((socket) => {
      const peer = createRpcPeer(socket, {
        context: null,
        log: (level, message) => this.logger[level](`control: ${message}`),
        handlers: {
          status: () => ({ ...this.status() }),
          tasks: () => ({ tasks: this.tasks() }),
          retry: () => ({ retried: this.retry() }),
          stop: () => {
            setImmediate(() => this.resolveStopRequest());
            return { stopping: true };
          },
        },
      });
      this.controlPeers.add(peer);
      void peer.closed.then(() => this.controlPeers.delete(peer));
    });
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
    this.control = server;
  }
}

/**
 * The client: one SSH connection to the server (one SFTP session, one RPC stream to its
 * `rpc.sock`), reconnecting with backoff, and the folders it syncs over it. Each folder
 * (client/folder.ts) pushes its outbox (client/pusher.ts) and pulls the feed (client/puller.ts);
 * this file wires them to the connection and answers the control socket.
 */
import path from 'node:path';
import type { Config } from './cli/config.js';
import { ClientFolderState } from './client/clientstate.js';
import { SyncedFolder, type ClientContext } from './client/folder.js';
import { SyncError } from './core/errors.js';
import { sleep } from './node/lock.js';
import type { Logger } from './node/log.js';
import { createProgress, showPath } from './node/log.js';
import { createRpcPeer, type RpcPeer } from './rpc.js';
import { connectSsh, type SshSession } from './ssh/transfer.js';
import { openRpcStream } from './client/rpcstream.js';
import type { ConflictsParams, ParamsOf, ResolveParams, RestoreParams, ResultOf, VersionsParams } from './rpc.js';
import { NodeBase, type FolderStatus, type StatusReport, type TaskInfo } from './node.js';

/** How long a stop waits for work in flight before cutting the connection. */
const STOP_GRACE_MS = 5000;
/**
 * Events are hints: a full comparison with the base index catches anything they missed.
 * SYSTEMSYNC_RESCAN_INTERVAL_MS changes the period; 0 turns the periodic rescan off (the churn
 * test does, so that it cannot hide a missed change).
 */
const RESCAN_INTERVAL_MS = rescanIntervalMs(process.env.SYSTEMSYNC_RESCAN_INTERVAL_MS);

function rescanIntervalMs(text: string | undefined): number {
  const fallback = 30 * 60 * 1000;
  if (text === undefined || text === '') return fallback;
  const ms = Number(text);
  return Number.isSafeInteger(ms) && ms >= 0 ? ms : fallback;
}

/** The connection to the server: SFTP over SSH, and the RPC stream. */
interface ServerConnection {
  ssh: SshSession;
  peer: RpcPeer;
}

export class SyncClient extends NodeBase {
  private readonly folders = new Map<string, SyncedFolder>();
  private connection: ServerConnection | null = null;
  private stopped = false;
  private readonly stopController = new AbortController();
  private loop: Promise<void> | null = null;

  constructor(config: Config, logger: Logger) {
    super(config, logger);
  }

  protected override async startRole(): Promise<void> {
    for (const folder of this.config.folders) {
      const state = await ClientFolderState.open(path.join(this.config.node.stateDir, 'client', folder.name));
      const client: ClientContext = {
        nodeName: this.config.node.name,
        stateDir: this.config.node.stateDir,
        isStopping: () => this.stopped,
        beginTransfer: (p, direction, total) => this.beginTransfer(folder.name, p, direction, total),
      };
      const synced = new SyncedFolder(folder.name, folder.path, state, client, this.logger.child(folder.name), this.config.ignore.patterns);
      this.folders.set(folder.name, synced);
      await this.startFolder(folder.name, synced);
    }
    this.loop = this.connectLoop();
    const presence = setInterval(() => {
      for (const folder of this.folders.values()) {
        void folder.refreshPresence().catch(() => undefined);
        folder.retryDue(false);
      }
    }, 2000);
    presence.unref();
    const rescan = setInterval(() => {
      for (const folder of this.folders.values()) folder.rescan();
    }, RESCAN_INTERVAL_MS === 0 ? 2 ** 31 - 1 : RESCAN_INTERVAL_MS);
    if (RESCAN_INTERVAL_MS === 0) clearInterval(rescan);
    rescan.unref();
    this.stopController.signal.addEventListener('abort', () => {
      clearInterval(presence);
      clearInterval(rescan);
    });
  }

  private beginTransfer(folder: string, p: string, direction: 'push' | 'pull', total: number): { progress(done: number): void; end(): void } {
    const board = this.transfers.begin(folder, p, direction, total);
    const shown = createProgress(`[${folder}] ${direction} ${showPath(p)}`, total, {
      logger: this.logger,
      tty: process.stderr.isTTY ? process.stderr : null,
    });
    return {
      progress: (done) => {
        board.progress(done);
        shown.update(done);
      },
      end: () => {
        board.end();
        shown.end();
      },
    };
  }

  private async connectLoop(): Promise<void> {
    const server = this.config.server!;
    let backoff = 250;
    while (!this.stopped) {
      let ssh: SshSession | null = null;
      try {
        ssh = await connectSsh({
          host: server.host,
          port: server.port,
          username: server.user,
          privateKey: server.identity,
          knownHostsPath: server.knownHosts,
          hostKeyCheck: server.hostKeyCheck,
          readyTimeoutMs: server.connectTimeoutMs,
          keepaliveIntervalMs: 5000,
        });
        const { stream } = await openRpcStream(ssh, server.rpcSocket);
        const peer = createRpcPeer(stream, {
          context: null,
          log: (level, message) => this.logger[level](`rpc: ${message}`),
          handlers: {
            changed: (params) => {
              this.folders.get(params.folder)?.requestPull();
            },
          },
        });
        const hello = await peer.request(
          'hello',
          { node: this.config.node.name, folders: [...this.folders.keys()], protocol: 1 },
          30_000,
        );
        const refused = new Map<string, string>();
        for (const name of hello.missing) {
          refused.set(name, `the server ${hello.server} does not serve it`);
          this.logger.child(name).error(`the server ${hello.server} does not serve folder ${name}`);
        }
        for (const name of hello.denied ?? []) {
          refused.set(name, `the server ${hello.server} does not let this node sync it (not in the folder's [access] there)`);
          this.logger.child(name).error(`the server ${hello.server} does not let this node (${this.config.node.name}) sync folder ${name}: it is not in the folder's [access] there`);
        }
        for (const [name, folder] of this.folders) {
          const info = hello.folders[name];
          const folderConnection = info === undefined ? null : { ssh, peer, remote: { root: info.root, tmp: info.tmp }, sessionHead: info.head };
          folder.connect(folderConnection, refused.get(name) ?? null);
        }
        this.connection = { ssh, peer };
        backoff = 250;
        this.logger.info(`connected to ${hello.server} (${server.host}:${server.port})`);
        for (const folder of this.folders.values()) {
          folder.requestPull();
          folder.schedulePush();
        }
        await Promise.race([peer.closed, ssh.closed, new Promise((r) => this.stopController.signal.addEventListener('abort', r))]);
        if (!this.stopped) this.logger.warn('connection to the server lost; reconnecting');
      } catch (err) {
        // The server bound this key to another node name: no retry can fix that.
        if ((err as { code?: unknown }).code === 'NODE_NAME_MISMATCH') {
          this.giveUp(err as Error);
          break;
        }
        if (!this.stopped) this.logger.warn(`cannot reach the server: ${(err as Error).message}; retrying in ${(backoff / 1000).toFixed(1)} s`);
      } finally {
        this.connection = null;
        for (const folder of this.folders.values()) folder.disconnect();
        await ssh?.close().catch(() => undefined);
      }
      if (this.stopped) break;
      await sleep(backoff * (0.8 + Math.random() * 0.4), this.stopController.signal);
      backoff = Math.min(backoff * 2, 30_000);
    }
  }

  protected override async stopRole(): Promise<void> {
    this.stopped = true;
    // Give a batch in progress a moment to finish (its results land in the base index); then
    // cut the connection, which fails what is still in flight: those paths stay in the
    // persisted outbox and go out at the next start.
    const settled = Promise.all([...this.folders.values()].map((f) => f.lock.run(() => undefined)));
    await Promise.race([settled, sleep(STOP_GRACE_MS)]);
    this.stopController.abort();
    await this.connection?.ssh.close().catch(() => undefined);
    await settled;
    await this.loop;
    for (const folder of this.folders.values()) await folder.stop();
  }

  protected override folderStatuses(): FolderStatus[] {
    return [...this.folders.values()].map((f) => f.status());
  }

  protected override extraStatus(): Partial<StatusReport> {
    return { connected: this.connection !== null };
  }

  override tasks(): TaskInfo[] {
    return [...this.folders.values()].flatMap((f) => f.tasks());
  }

  override retry(): number {
    let n = 0;
    for (const folder of this.folders.values()) n += folder.retryDue(true);
    return n;
  }

  // Versions and conflicts live on the server: the CLI's questions go there over the session.
  override versions(params: VersionsParams) {
    return this.askServer('versions', params);
  }
  override restore(params: RestoreParams) {
    return this.askServer('restore', params);
  }
  override conflicts(params: ConflictsParams) {
    return this.askServer('conflicts', params);
  }
  override resolve(params: ResolveParams) {
    return this.askServer('resolve', params);
  }

  private askServer<M extends 'versions' | 'restore' | 'conflicts' | 'resolve'>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    if (!this.folders.has(params.folder)) return Promise.reject(new SyncError('UNKNOWN_FOLDER', `folder ${JSON.stringify(params.folder)} is not synced by this node`));
    if (this.connection === null) return Promise.reject(new SyncError('NOT_CONNECTED', `not connected to the server ${this.config.server?.host ?? ''}: try again once 'systemsync status' says connected`));
    return this.connection.peer.request(method, params, 600_000);
  }
}

/**
 * The hub. Serves each configured folder (server/folder.ts): accepts commits from clients over
 * JSON-RPC (one connection per client, reaching `rpc.sock` through the client's SSH connection
 * or the embedded endpoint), keeps the change log, tells every other client what changed, and
 * watches its own folders (promise 11). This file holds the sessions, the RPC handlers and the
 * periodic maintenance, and wires the folders to them.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import path from 'node:path';
import type { Config } from './cli/config.js';
import type { PushOp, PushResult } from './core/types.js';
import { ChangeLog } from './server/changelog.js';
import { SyncError } from './core/errors.js';
import type { Logger } from './node/log.js';
import { showPath } from './node/log.js';
import { createRpcPeer, prepareNotification, type RpcPeer } from './rpc.js';
import { cleanTempDir } from './fs/apply.js';
import { RESERVED_DIR } from './core/paths.js';
import { safeLstat, safeUnlink } from './fs/safefs.js';
import { TempQuota, type HeldTemp } from './server/tempquota.js';
import { isFolderAllowed } from './core/access.js';
import { Endpoint } from './endpoint/server.js';
import { PageBudget } from './wire/budget.js';
import { describeFsError, listenPrivateSocket, NodeBase, type FolderStatus, type StatusReport, type TaskInfo } from './node.js';
import { VersionStore } from './server/versions.js';
import { listConflicts, listVersions, resolveConflicts, restoreVersion } from './server/recovery.js';
import { ServedFolder, type HubContext } from './server/folder.js';
import type { ConflictsParams, ResolveParams, RestoreParams, VersionsParams } from './rpc.js';

/** A temp file untouched for this long belongs to no transfer in flight. */
const ORPHAN_UPLOAD_MS = 60 * 60 * 1000;

interface Session {
  id: number;
  peer: RpcPeer;
  node: string | null;
  /** Embedded endpoint: the node name bound to the key the client signed in with; null through a system sshd. */
  boundNode: string | null;
  folders: Set<string>;
  connectedAt: Date;
}

/**
 * Push results hold one result per op, but the `moved` list of a directory rename holds one entry
 * per path under it: 100k children of long (or control-character) names would pass the line
 * limit, and the client would drop the connection and retry the same push forever. Past the
 * byte budget the lists are left out; a client without one keeps each moved child's old seq and
 * verifies it against the feed (which carries every moved path).
 */
function boundMovedLists(results: PushResult[]): PushResult[] {
  const budget = new PageBudget();
  return results.map((r) => {
    if (budget.fits(r) || r.status !== 'ok' || r.moved === undefined) return r;
    const { moved: _dropped, ...rest } = r;
    budget.count(rest);
    return rest;
  });
}

export class SyncServer extends NodeBase {
  private readonly folders = new Map<string, ServedFolder>();
  private readonly sessions = new Set<Session>();
  /** Temp space held by the bundles each session asked for (see TempQuota). */
  readonly tempQuota = new TempQuota();
  private rpcServer: net.Server | null = null;
  private endpoint: Endpoint | null = null;
  private nextSessionId = 1;
  private maintenanceTimer: NodeJS.Timeout | null = null;

  constructor(config: Config, logger: Logger) {
    super(config, logger);
  }

  get nodeName(): string {
    return this.config.node.name;
  }

  protected override async startRole(): Promise<void> {
    for (const folder of this.config.folders) {
      const stateDir = path.join(this.config.node.stateDir, 'server', folder.name);
      const log = await ChangeLog.open(stateDir);
      const kept = await VersionStore.open(folder.path, stateDir, (p) => log.get(p)?.entry ?? null);
      const hub: HubContext = {
        nodeName: this.nodeName,
        notifyChanged: (head) => this.notifyChanged(folder.name, head),
        reserveTemp: (sessionId, temp) => this.reserveTemp(sessionId, temp),
        releaseTemp: (sessionId, temp) => this.tempQuota.release(sessionId, temp),
      };
      const served = new ServedFolder(folder.name, folder.path, log, hub, this.logger.child(folder.name), this.config.ignore.patterns, kept);
      this.folders.set(folder.name, served);
      await this.startFolder(folder.name, served);
    }
    await this.listenRpc(this.config.rpc.socket);
    if (this.config.listen !== null) {
      this.endpoint = new Endpoint({
        listen: this.config.listen,
        clients: this.config.clients,
        access: this.config.access,
        folders: this.config.folders.map((f) => ({ name: f.name, root: f.path })),
        logger: this.logger,
        onRpc: (stream, node) => this.accept(stream, node),
      });
      await this.endpoint.start();
    }
    await this.maintenance();
    this.maintenanceTimer = setInterval(() => void this.maintenance(), 5_000);
    this.maintenanceTimer.unref();
    this.logger.info(`server ${this.nodeName} serving ${this.folders.size} folder(s) on ${this.config.rpc.socket}`);
  }

  /** Periodic: resume paused folders that came back, prune trash and pulled tombstones. */
  private async maintenance(): Promise<void> {
    for (const folder of this.folders.values()) {
      try {
        // A root that vanished pauses the folder even when no event or commit looks at it; one
        // that came back resumes (refreshPresence restarts its watcher and rescans it).
        if (!folder.isStarted) {
          if ((await folder.refreshPresence()) === null) await folder.start();
          continue;
        }
        if ((await folder.refreshPresence()) !== null) continue;
        await folder.pruneVersions(this.config.versions, new Date());
        // Uploads of a client killed before it committed them are never claimed: drop them
        // once nothing has written to them for a long while.
        const orphans = await cleanTempDir(folder.root, new Date(Date.now() - ORPHAN_UPLOAD_MS));
        if (orphans > 0) this.logger.child(folder.name).info(`removed ${orphans} abandoned upload(s)`);
        await folder.lock.run(async () => {
          if (folder.log.pruneTombstones(new Date(), this.config.trash.retentionDays * 86_400_000) > 0) await folder.log.flush();
        });
      } catch (err) {
        this.logger.child(folder.name).warn(`maintenance: ${(err as Error).message}`);
      }
    }
  }

  private async listenRpc(socketPath: string): Promise<void> {
    this.rpcServer = await listenPrivateSocket(socketPath, (socket) => this.accept(socket));
    this.rpcServer.on('error', (err) => this.logger.error(`rpc socket: ${err.message}`));
  }

  /** A new RPC stream: from rpc.sock (a system sshd's forwarding), or from the endpoint with the key's node name. */
  private accept(socket: Duplex, boundNode: string | null = null): void {
    const session: Session = { id: this.nextSessionId++, peer: null as unknown as RpcPeer, node: null, boundNode, folders: new Set(), connectedAt: new Date() };
    session.peer = createRpcPeer(socket, {
      context: session,
      log: (level, message) => this.logger[level](`rpc session ${session.id}${session.node ? ` (${session.node})` : ''}: ${message}`),
      handlers: {
        hello: (params) => this.hello(session, params),
        push: (params) => this.push(session, params),
        changes: (params) => this.changes(session, params),
        bundle: (params) => this.folderFor(session, params.folder).makeBundle(params.files, session.id),
        blocks: (params) => this.folderFor(session, params.folder).blockList(params),
        ack: (params) => this.ack(session, params),
        versions: (params) => this.versions(params, session),
        restore: (params) => this.restore(params, session),
        conflicts: (params) => this.conflicts(params, session),
        resolve: (params) => this.resolve(params, session),
      },
    });
    this.sessions.add(session);
    void session.peer.closed.then(() => {
      this.sessions.delete(session);
      void this.removeSessionTemps(session.id);
      if (session.node !== null) {
        this.logger.info(`client ${session.node} disconnected`);
        for (const name of session.folders) this.folders.get(name)?.log.touchClient(session.node, new Date());
      }
    });
  }

  /**
   * Counts a bundle against its session and the total (TempQuota), first forgetting the bundles
   * that clients have removed since. @throws SyncError 'TEMP_FULL'
   */
  async reserveTemp(sessionId: number, temp: HeldTemp): Promise<void> {
    const needed = (): boolean => this.tempQuota.used(sessionId) + temp.bytes > this.tempQuota.perSession || this.tempQuota.used() + temp.bytes > this.tempQuota.total;
    if (needed()) {
      for (const [id, held] of this.tempQuota.list()) {
        const st = await safeLstat(held.root, `${RESERVED_DIR}/tmp/${held.name}`, { allowReserved: true }).catch(() => null);
        if (st === null) this.tempQuota.release(id, held);
      }
    }
    try {
      this.tempQuota.reserve(sessionId, temp);
    } catch (err) {
      this.logger.warn(`bundle refused: ${(err as Error).message}`);
      throw err;
    }
  }

  /** A session ended: the bundles it did not remove are removed (through checked paths only). */
  private async removeSessionTemps(sessionId: number): Promise<void> {
    for (const held of this.tempQuota.endSession(sessionId)) {
      try {
        await safeUnlink(held.root, `${RESERVED_DIR}/tmp/${held.name}`, { allowReserved: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.warn(`cannot remove bundle ${held.name}: ${describeFsError(err)}`);
      }
    }
  }

  private requireHello(session: Session): string {
    if (session.node === null) throw new SyncError('NO_HELLO', 'call hello first');
    return session.node;
  }

  private folderFor(session: Session, name: string): ServedFolder {
    this.requireHello(session);
    const folder = this.folders.get(name);
    if (folder === undefined || !session.folders.has(name)) {
      throw new SyncError('UNKNOWN_FOLDER', `folder ${JSON.stringify(name)} is not served here`);
    }
    return folder;
  }

  private async hello(session: Session, params: { node: string; folders: string[]; protocol: number }) {
    if (session.boundNode !== null && params.node !== session.boundNode) {
      this.logger.warn(`refused hello as ${params.node} from the key of client ${session.boundNode}`);
      throw new SyncError(
        'NODE_NAME_MISMATCH',
        `this client's key belongs to node ${session.boundNode} in the server's [clients], but hello says ${params.node}: set [node] name = ${session.boundNode} in the client's config (or bind this key to ${params.node} on the server)`,
      );
    }
    if (params.node === this.nodeName) {
      throw new SyncError('NAME_TAKEN', `node name ${params.node} is the server's own name: give the client another [node] name`);
    }
    for (const other of this.sessions) {
      if (other !== session && other.node === params.node) {
        this.logger.warn(`client ${params.node} connected again: closing its previous session`);
        other.peer.close();
      }
    }
    session.node = params.node;
    const folders: Record<string, { root: string; tmp: string; head: number; cursor: number; floor: number }> = {};
    const missing: string[] = [];
    const denied: string[] = [];
    for (const name of params.folders) {
      const folder = this.folders.get(name);
      if (folder === undefined) {
        missing.push(name);
        continue;
      }
      if (session.boundNode !== null && !isFolderAllowed(this.config.access, name, session.boundNode)) {
        denied.push(name);
        continue;
      }
      session.folders.add(name);
      folder.log.touchClient(params.node, new Date());
      folders[name] = {
        root: folder.root,
        tmp: folder.tmpDir,
        head: folder.durableHead,
        cursor: folder.log.clientCursor(params.node)?.cursor ?? 0,
        floor: folder.log.floor,
      };
    }
    this.logger.info(`client ${params.node} connected (${Object.keys(folders).length} folder(s)${missing.length ? `, not served here: ${missing.join(', ')}` : ''})`);
    if (denied.length > 0) this.logger.warn(`refused folder(s) ${denied.join(', ')} to client ${params.node}: not in its [access]`);
    return { server: this.nodeName, folders, missing, ...(denied.length > 0 ? { denied } : {}) };
  }

  private async push(session: Session, params: { folder: string; ops: PushOp[] }) {
    const folder = this.folderFor(session, params.folder);
    const results = await folder.commit(params.ops, session.node!);
    return { results: boundMovedLists(results) };
  }

  private async changes(session: Session, params: { folder: string; after: number; limit: number }) {
    const folder = this.folderFor(session, params.folder);
    if (folder.paused !== null) throw new SyncError('FOLDER_PAUSED', `folder ${folder.name} is paused on the server: ${folder.paused}`);
    return folder.feed.page(params.after, params.limit, folder.durableHead);
  }

  private async ack(session: Session, params: { folder: string; seq: number }) {
    const folder = this.folderFor(session, params.folder);
    folder.log.setCursor(session.node!, params.seq, new Date());
    return {};
  }

  /** The folder `name` for a client's session (one it said hello for), or for the server's own CLI (session null). */
  private recoveryFolder(name: string, session: Session | null): ServedFolder {
    if (session !== null) return this.folderFor(session, name);
    const folder = this.folders.get(name);
    if (folder === undefined) throw new SyncError('UNKNOWN_FOLDER', `folder ${JSON.stringify(name)} is not served here`);
    return folder;
  }

  override async versions(params: VersionsParams, session: Session | null = null) {
    return listVersions(this.recoveryFolder(params.folder, session), params.path);
  }

  override async restore(params: RestoreParams, session: Session | null = null) {
    const node = session?.node ?? this.nodeName;
    const result = await restoreVersion(this.recoveryFolder(params.folder, session), params.path, params.version, params.as, node);
    this.logger.child(params.folder).info(`restored ${showPath(params.path)} version ${result.version}${params.as !== null ? ` as ${showPath(params.as)}` : ''} for ${node}`);
    return result;
  }

  override async conflicts(params: ConflictsParams, session: Session | null = null) {
    return listConflicts(this.recoveryFolder(params.folder, session));
  }

  override async resolve(params: ResolveParams, session: Session | null = null) {
    const node = session?.node ?? this.nodeName;
    const result = await resolveConflicts(this.recoveryFolder(params.folder, session), params.copy, params.keep, node);
    if (result.count > 0) this.logger.child(params.folder).info(`resolved ${result.count} conflict(s) for ${node} (keep ${params.keep})`);
    return result;
  }

  /**
   * Tell every connected client that has this folder. The one that made the change is told
   * too: its pull skips its own versions without I/O, and its cursor moves past them.
   */
  notifyChanged(folder: string, head: number): void {
    const feed = this.folders.get(folder)?.feed;
    let line: string | null = null;
    for (const session of this.sessions) {
      if (!session.folders.has(folder)) continue;
      line ??= feed?.changedLine(head) ?? prepareNotification('changed', { folder, head });
      session.peer.sendPrepared(line);
    }
    if (line === null) feed?.skipTo(head);
  }

  protected override async stopRole(): Promise<void> {
    if (this.maintenanceTimer !== null) clearInterval(this.maintenanceTimer);
    for (const session of this.sessions) session.peer.close();
    await this.endpoint?.stop();
    await new Promise<void>((resolve) => (this.rpcServer ? this.rpcServer.close(() => resolve()) : resolve()));
    await fs.rm(this.config.rpc.socket, { force: true });
    for (const folder of this.folders.values()) await folder.stop();
  }

  protected override folderStatuses(): FolderStatus[] {
    return [...this.folders.values()].map((f) => ({
      name: f.name,
      path: f.root,
      files: f.log.files,
      bytes: f.log.bytes,
      pendingPush: 0,
      pendingPull: 0,
      conflicts: f.log.conflicts,
      failed: f.unsendable.size,
      paused: f.paused,
      lastSync: f.lastSync?.toISOString() ?? null,
      head: f.log.head,
      versions: { count: f.kept.count, bytes: f.kept.bytes },
    }));
  }

  override tasks(): TaskInfo[] {
    return [...this.folders.values()].flatMap((f) => f.unsendable.tasks(f.name));
  }

  protected override extraStatus(): Partial<StatusReport> {
    const clients = new Map<string, { name: string; connected: boolean; lastSeen: string | null; behind: number }>();
    for (const folder of this.folders.values()) {
      for (const [name, cursor] of folder.log.clients()) {
        const entry = clients.get(name) ?? { name, connected: false, lastSeen: null, behind: 0 };
        entry.behind += folder.log.countAfter(cursor.cursor, name);
        if (entry.lastSeen === null || cursor.lastSeen > entry.lastSeen) entry.lastSeen = cursor.lastSeen;
        clients.set(name, entry);
      }
    }
    for (const session of this.sessions) {
      if (session.node === null) continue;
      const entry = clients.get(session.node) ?? { name: session.node, connected: true, lastSeen: null, behind: 0 };
      entry.connected = true;
      entry.lastSeen = new Date().toISOString();
      clients.set(session.node, entry);
    }
    return { connected: true, clients: [...clients.values()] };
  }
}

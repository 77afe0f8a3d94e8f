/**
 * The embedded SSH endpoint (`[listen]`): an ssh2 `Server` in the server daemon. A client signs in
 * with a key of `[clients]` (auth.ts), which fixes its node name; it may then open the `sftp`
 * subsystem, confined to its folders (sftp.ts), and the RPC subsystem, handed to the daemon with
 * the bound name (`onRpc`). Everything else is refused with a log line (policy.ts).
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import ssh2, { type Connection, type ServerChannel } from 'ssh2';
import type { ClientKeyConfig, ListenConfig } from '../cli/config.js';
import { isFolderAllowed } from '../core/access.js';
import type { Logger } from '../node/log.js';
import { coalesceWrites } from '../ssh/transfer.js';
import { ClientKeys } from './auth.js';
import { loadOrCreateHostKey, type HostKey } from './hostkey.js';
import { MAX_SESSIONS, refuseForwarding, refuseSessionExtras, RPC_SUBSYSTEM } from './policy.js';
import { serveConfinedSftp, type ConfinedFolder } from './sftp.js';

/**
 * The identification string. "OpenSSH_" keeps ssh2's client on OpenSSH-sized SFTP requests
 * (256 KiB instead of 32 KiB); "systemsync-endpoint" is how a client tells this server from a
 * system sshd (see isEmbeddedEndpointIdent).
 */
export const ENDPOINT_IDENT = 'OpenSSH_9.9-compatible systemsync-endpoint';

/** Whether the server's identification line (e.g. "SSH-2.0-OpenSSH_9.2p1 Debian-2") is this endpoint's. */
export function isEmbeddedEndpointIdent(ident: string): boolean {
  return / systemsync-endpoint\s*$/.test(ident);
}

export interface EndpointOptions {
  listen: ListenConfig;
  clients: readonly ClientKeyConfig[];
  access: Readonly<Record<string, readonly string[]>>;
  folders: readonly ConfinedFolder[];
  logger: Logger;
  /** A client opened its RPC stream; `node` is the name bound to its key. */
  onRpc(stream: Duplex, node: string): void;
}

export class Endpoint {
  private server: net.Server | null = null;
  private readonly connections = new Set<Connection>();
  private readonly keys: ClientKeys;
  private readonly logger: Logger;
  hostKey: HostKey | null = null;
  /** The port listened on (the one asked for, or the one the kernel chose for port 0). */
  port = 0;

  constructor(private readonly options: EndpointOptions) {
    this.keys = new ClientKeys(options.clients);
    this.logger = options.logger;
  }

  async start(): Promise<void> {
    const { listen } = this.options;
    this.hostKey = await loadOrCreateHostKey(listen.hostKey);
    if (this.hostKey.created) this.logger.info(`created the host key ${listen.hostKey} (${this.hostKey.type} ${this.hostKey.fingerprint})`);
    const ssh = new ssh2.Server({ hostKeys: [this.hostKey.privateKey], ident: ENDPOINT_IDENT }, (conn, info) =>
      this.accept(conn, `${info.ip}:${info.port}`),
    );
    // Our own listener: each socket sends without Nagle's delay, and what one turn of the event
    // loop writes goes out in one writev (ssh2 writes every SSH packet by itself), as the client does.
    const server = net.createServer((sock) => {
      sock.setNoDelay(true);
      coalesceWrites(sock);
      ssh.injectSocket(sock);
    });
    server.on('error', (err: Error) => this.logger.error(`endpoint: ${err.message}`));
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`cannot listen on ${listen.address}:${listen.port}: ${err.message}`, { cause: err }));
      server.once('error', onError);
      server.listen(listen.port, listen.address, () => {
        server.off('error', onError);
        resolve();
      });
    });
    this.server = server;
    this.port = (server.address() as net.AddressInfo).port;
    if (this.keys.size === 0) this.logger.warn('endpoint: [clients] lists no key: no client can sign in');
    this.logger.info(`endpoint listening on ${listen.address}:${this.port} (host key ${this.hostKey.type} ${this.hostKey.fingerprint})`);
  }

  async stop(): Promise<void> {
    for (const conn of this.connections) conn.end();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(conn: Connection, peer: string): void {
    this.connections.add(conn);
    let node: string | null = null;
    let sessions = 0;
    let hasRpc = false;
    const loggedKeys = new Set<string>();
    const refuse = (what: string): void => this.logger.warn(`endpoint: refused ${what} for client ${node ?? '(not signed in)'} from ${peer}`);
    conn.on('error', (err: Error) => this.logger.debug(`endpoint: connection from ${peer}: ${err.message}`));
    conn.on('close', () => this.connections.delete(conn));
    conn.on('authentication', (ctx) =>
      this.keys.answer(ctx, peer, (line) => this.logger.warn(`endpoint: ${line}`), (name) => (node = name), loggedKeys),
    );
    conn.on('ready', () => {
      const name = node!;
      this.logger.debug(`endpoint: client ${name} signed in from ${peer}`);
      refuseForwarding(conn, refuse);
      conn.on('session', (accept, reject) => {
        if (sessions >= MAX_SESSIONS) {
          refuse(`a session channel beyond ${MAX_SESSIONS}`);
          return reject();
        }
        sessions++;
        const session = accept();
        session.on('close', () => sessions--);
        refuseSessionExtras(session, refuse);
        session.on('sftp', (acceptSftp) => {
          const sftp = acceptSftp();
          serveConfinedSftp(sftp, {
            node: name,
            folders: this.options.folders,
            isAllowed: (folder) => isFolderAllowed(this.options.access, folder, name),
            log: (line) => this.logger.warn(`endpoint: ${line} (${peer})`),
          });
        });
        session.on('subsystem', (acceptSub, rejectSub, info: { name: string }) => {
          if (info.name !== RPC_SUBSYSTEM) {
            refuse(`the subsystem ${JSON.stringify(info.name.slice(0, 100))}`);
            return rejectSub();
          }
          if (hasRpc) {
            refuse('a second RPC stream on one connection');
            return rejectSub();
          }
          hasRpc = true;
          const channel: ServerChannel = acceptSub();
          channel.on('close', () => (hasRpc = false));
          this.options.onRpc(channel, name);
        });
      });
    });
  }
}

/**
 * A rogue server for a real client daemon: the client connects as usual (real SSH to a real
 * test sshd, RPC over the forwarded Unix socket), and the socket is served by handlers the test
 * writes, through the real RPC layer (src/rpc.ts, schemas included). SFTP is the real sshd's, on
 * `serverRoot`, a directory the test controls.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createRpcPeer, type Handlers, type RpcPeer } from '../../src/rpc.js';
import { Daemon, waitConnected } from './daemons.js';
import { startSshd, type TestSshd } from './sshd.js';
import { tempDir } from './tree.js';

export interface Rogue {
  client: Daemon;
  /** The client's folder `docs`. */
  local: string;
  serverRoot: string;
  stop(): Promise<void>;
}

/** The `hello` answer of a server that serves `docs` at `serverRoot`. */
export function helloFor(serverRoot: string) {
  return { server: 'rogue', folders: { docs: { root: serverRoot, tmp: path.join(serverRoot, '.systemsync', 'tmp'), head: 0, cursor: 0, floor: 0 } }, missing: [] };
}

export async function startRogue(
  handlers: (serverRoot: string, local: string) => Handlers<null>,
  prepare: (serverRoot: string, local: string) => Promise<void>,
): Promise<Rogue> {
  const dir = await tempDir('systemsync-rogue-');
  const sshd: TestSshd = await startSshd({ dir: path.join(dir, 'sshd') });
  const serverRoot = path.join(dir, 'served');
  const local = path.join(dir, 'alpha', 'docs');
  await fs.mkdir(path.join(serverRoot, '.systemsync', 'tmp'), { recursive: true });
  await fs.mkdir(local, { recursive: true });
  await prepare(serverRoot, local);
  const peers: RpcPeer[] = [];
  const socketPath = path.join(dir, 'rogue.sock');
  const fake = net.createServer((socket) => peers.push(createRpcPeer(socket, { context: null, handlers: handlers(serverRoot, local) })));
  await new Promise<void>((resolve) => fake.listen(socketPath, resolve));
  const client = new Daemon('alpha', 'client', dir, { docs: local });
  client.writeConfig(
    `[node]\nname = alpha\nrole = client\nstate_dir = ${client.stateDir}\n\n` +
      `[server]\nhost = 127.0.0.1\nport = ${sshd.port}\nuser = ${sshd.user}\nidentity = ${sshd.clientKeyPath}\n` +
      `known_hosts = ${sshd.knownHostsPath}\nhost_key_check = yes\nrpc_socket = ${socketPath}\nconnect_timeout = 5\n\n[folders]\ndocs = ${local}\n`,
  );
  client.start();
  await waitConnected(client);
  return {
    client,
    local,
    serverRoot,
    async stop() {
      await client.stop().catch(() => client.stop('SIGKILL'));
      for (const peer of peers) peer.close();
      await new Promise<void>((resolve) => fake.close(() => resolve()));
      await sshd.stop();
    },
  };
}

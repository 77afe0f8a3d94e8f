/**
 * `systemsync check`: one PASS/FAIL line per thing the node needs. Returns the exit code; never
 * calls `process.exit` (monitor.ts does).
 *
 * What `check` does on the server, and why: to learn where the server keeps each folder it sends
 * the same `hello` the client daemon sends (this node's name and folders). That registers the
 * node with the server exactly as its first real connection will; nothing else changes there.
 * A second `hello` under the same name replaces the session of a client daemon that is already
 * connected, so when this node's daemon answers on its control socket, check trusts its
 * connection instead and leaves the server-side folder checks to `systemsync status`.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import ssh2 from 'ssh2';
import { RESERVED_DIR } from '../core/paths.js';
import { escapeControls } from '../core/text.js';
import { isEmbeddedEndpointIdent } from '../endpoint/server.js';
import { tmpDirOf } from '../fs/apply.js';
import { openRpcStream } from '../client/rpcstream.js';
import type { StatusReport } from '../node.js';
import { createRpcPeer, type HelloResult } from '../rpc.js';
import {
  AuthFailedError,
  connectSsh,
  ConnectError,
  IdentityError,
  TransferError,
  toSftpError,
  type SshSession,
} from '../ssh/transfer.js';
import type { Config } from './config.js';
import { askDaemon } from './control.js';
import { authorizedKeysLine } from './init.js';

const ssh2Utils = ssh2.utils;

type Outcome = 'PASS' | 'FAIL' | 'INFO';

class Report {
  failed = 0;
  pass(what: string): void {
    this.line('PASS', what);
  }
  fail(what: string, why: string): void {
    this.failed++;
    this.line('FAIL', `${what}: ${why}`);
  }
  info(what: string): void {
    this.line('INFO', what);
  }
  private line(outcome: Outcome, text: string): void {
    process.stdout.write(`${outcome} ${escapeControls(text)}\n`);
  }
}

/**
 * `systemsync check`: prints one `PASS <what>` / `FAIL <what>: <why and what to do>` line per
 * check (plus `INFO` lines that are not checks) and returns 0 when none failed, else 1.
 * A client checks its identity, the TCP connection, the host key, the key's acceptance, the RPC
 * socket (a real `hello` round trip), each folder on the server (exists, writable through SFTP)
 * and here. A server checks its folders, its state_dir and its RPC socket's directory. After a
 * failure, the checks that depend on it are printed as FAIL "skipped: ...".
 */
export async function check(config: Config): Promise<number> {
  const report = new Report();
  report.pass(`config ${config.file} is valid (role ${config.node.role}, node ${config.node.name})`);
  if (config.node.role === 'client') await checkClientNetwork(config, report);
  for (const folder of config.folders) {
    const what = `folder ${folder.name} exists and is writable here (${folder.path})`;
    const problem = await localFolderProblem(folder.path);
    if (problem === null) report.pass(what);
    else report.fail(what, problem);
  }
  await checkWritableDir(report, `state_dir ${config.node.stateDir} is writable`, config.node.stateDir);
  if (config.node.role === 'server') {
    const socketDir = path.dirname(config.rpc.socket);
    await checkWritableDir(report, `rpc socket directory ${socketDir} is writable`, socketDir);
  }
  const daemon = await daemonStatus(config);
  report.info(
    daemon === null
      ? `no ${config.node.role} daemon is running with this config (systemsync monitor --config ${config.file} starts one)`
      : `the ${config.node.role} daemon is running${config.node.role === 'client' ? (daemon.connected ? ' and connected' : ' but not connected') : ''}`,
  );
  return report.failed === 0 ? 0 : 1;
}

async function daemonStatus(config: Config): Promise<StatusReport | null> {
  try {
    return await askDaemon<StatusReport>(config, 'status', 5_000);
  } catch {
    return null;
  }
}

async function checkClientNetwork(config: Config, report: Report): Promise<void> {
  const server = config.server!;
  const hostPort = `${server.host}:${server.port}`;
  const labels = {
    identity: `identity ${server.identity} is usable`,
    reachable: `server ${hostPort} is reachable`,
    hostKey: `host key of ${hostPort} is known and matches (${server.knownHosts})`,
    auth: `key is accepted by ${server.user}@${hostPort}`,
    rpc: `rpc socket ${server.rpcSocket} answers on the server`,
    folder: (name: string) => `folder ${name} exists and is writable on the server`,
  };
  const skipRest = (from: 'hostKey' | 'auth' | 'rpc' | 'folders', why: string): void => {
    const order = ['hostKey', 'auth', 'rpc', 'folders'] as const;
    for (const step of order.slice(order.indexOf(from))) {
      if (step === 'folders') for (const f of config.folders) report.fail(labels.folder(f.name), `skipped: ${why}`);
      else report.fail(labels[step], `skipped: ${why}`);
    }
  };

  // 1. The private key.
  const identity = await readIdentity(server.identity);
  if (identity.problem === null) report.pass(`${labels.identity} (${identity.type})`);
  else report.fail(labels.identity, identity.problem);

  // 2. TCP.
  const tcpProblem = await tcpProblemOf(server.host, server.port, server.connectTimeoutMs);
  if (tcpProblem !== null) {
    report.fail(labels.reachable, tcpProblem);
    skipRest('hostKey', 'server unreachable');
    return;
  }
  report.pass(labels.reachable);

  // 3 and 4. Host key, then authentication. Without a usable identity a throwaway key still
  // gets through the host key check (auth is refused after it, which proves the key matched).
  const privateKey = identity.data ?? Buffer.from(ssh2Utils.generateKeyPairSync('ed25519').private);
  let ssh: SshSession;
  const knownBefore = await fsp.readFile(server.knownHosts, 'utf8').catch(() => '');
  try {
    ssh = await connectSsh({
      host: server.host,
      port: server.port,
      username: server.user,
      privateKey,
      knownHostsPath: server.knownHosts,
      hostKeyCheck: server.hostKeyCheck,
      readyTimeoutMs: server.connectTimeoutMs,
    });
  } catch (err) {
    reportConnectFailure(err, identity, report, labels, skipRest);
    return;
  }
  try {
    const knownAfter = await fsp.readFile(server.knownHosts, 'utf8').catch(() => '');
    report.pass(knownAfter !== knownBefore ? `${labels.hostKey} (it was new: added, as host_key_check = accept-new says)` : labels.hostKey);
    if (identity.data === null) {
      // Only reachable when the throwaway key was accepted, which a real sshd never does.
      report.fail(labels.auth, 'skipped: the identity is not usable');
      skipRest('rpc', 'not logged in with the identity');
      return;
    }
    if (isEmbeddedEndpointIdent(ssh.serverIdent)) {
      labels.auth = `key is accepted by the embedded endpoint at ${hostPort}`;
      labels.rpc = 'rpc stream of the embedded endpoint answers';
    }
    report.pass(labels.auth);
    await checkRpcAndFolders(config, ssh, report, labels, skipRest);
  } finally {
    await ssh.close().catch(() => undefined);
  }
}

/**
 * The checks a failed SSH connection settles: a refused key proves the host key matched (sshd
 * verifies its host key before it looks at ours); any other failure fails the host key check.
 */
function reportConnectFailure(
  err: unknown,
  identity: IdentityInfo,
  report: Report,
  labels: { hostKey: string; auth: string },
  skipRest: (from: 'auth' | 'rpc', why: string) => void,
): void {
  if (err instanceof IdentityError) {
    // readIdentity accepted the key, so this is unexpected; say what connectSsh said.
    report.fail(labels.hostKey, `skipped: the identity could not be loaded`);
    report.fail(labels.auth, err.message);
    skipRest('rpc', 'not logged in');
    return;
  }
  if (err instanceof AuthFailedError) {
    // sshd verifies its host key before it looks at ours: a refused key proves the host key matched.
    report.pass(labels.hostKey);
    if (identity.data === null) report.fail(labels.auth, `skipped: the identity is not usable`);
    else report.fail(labels.auth, `${(err as Error).message}${identity.publicLine === null ? '' : `. The line to append there: ${authorizedKeysLine(identity.publicLine)}`}`);
    skipRest('rpc', 'not logged in');
    return;
  }
  const message = (err as Error).message;
  const why = err instanceof ConnectError ? `the SSH handshake failed: ${message}` : message;
  report.fail(labels.hostKey, why);
  skipRest('auth', 'host key not verified');
}

async function checkRpcAndFolders(
  config: Config,
  ssh: SshSession,
  report: Report,
  labels: { rpc: string; folder: (name: string) => string },
  skipRest: (from: 'rpc' | 'folders', why: string) => void,
): Promise<void> {
  const server = config.server!;
  // A second hello under this node's name would replace the running daemon's session.
  const daemon = await daemonStatus(config);
  if (daemon?.connected === true) {
    report.pass(`${labels.rpc} (this node's running client daemon is connected through it)`);
    for (const folder of config.folders) {
      report.info(`folder ${folder.name} on the server: not checked while this node's daemon is connected (a second hello would replace its session); see systemsync status`);
    }
    return;
  }

  let socketPath = server.rpcSocket;
  let isEmbedded = false;
  let hello: HelloResult;
  try {
    const opened = await openRpcStream(ssh, server.rpcSocket);
    socketPath = opened.via;
    isEmbedded = opened.isEmbedded;
    const stream = opened.stream;
    const peer = createRpcPeer(stream, { context: null, handlers: {} });
    try {
      hello = await peer.request('hello', { node: config.node.name, folders: config.folders.map((f) => f.name), protocol: 1 }, 15_000);
    } finally {
      peer.close();
    }
  } catch (err) {
    const message = (err as Error).message;
    const hint =
      (err as TransferError).code === 'STREAM_OPEN_FAILED'
        ? `. Is the server daemon running (systemsync monitor --role server), and is rpc_socket its [rpc] socket (${socketPath})? The server's sshd needs AllowStreamLocalForwarding yes and AllowTcpForwarding yes or local; an authorized_keys line with "restrict" needs "port-forwarding" too.`
        : '';
    report.fail(labels.rpc, `${message}${hint}`);
    skipRest('folders', 'the rpc socket does not answer');
    return;
  }
  report.pass(`${labels.rpc} (server ${hello.server}${socketPath === server.rpcSocket || isEmbedded ? '' : `, ${socketPath}`})`);

  for (const folder of config.folders) {
    const what = labels.folder(folder.name);
    const info = hello.folders[folder.name];
    if (hello.denied?.includes(folder.name) === true) {
      report.fail(what, `the server ${hello.server} serves it but does not let this node (${config.node.name}) sync it: add ${config.node.name} to "${folder.name} = ..." in [access] of the server's config`);
      continue;
    }
    if (info === undefined) {
      report.fail(what, `the server ${hello.server} does not serve it: add "${folder.name} = /path/there" to [folders] in the server's config and restart its daemon`);
      continue;
    }
    const problem = await remoteFolderProblem(ssh, info.root, info.tmp);
    if (problem === null) report.pass(`${what} (${info.root})`);
    else report.fail(what, problem);
  }
}

/** Why the folder at `root` on the server is not usable, or null. Writes and removes a probe in `tmp`. */
async function remoteFolderProblem(ssh: SshSession, root: string, tmp: string): Promise<string | null> {
  try {
    const info = await ssh.stat(root);
    if (info === null) return `${root} does not exist on the server: create it there (the server daemon pauses a folder whose root is missing)`;
    if (info.type !== 'dir') return `${root} on the server is not a directory`;
    const tmpInfo = await ssh.stat(tmp);
    if (tmpInfo?.type !== 'dir') return `${tmp} is missing on the server: the server daemon creates it when it serves the folder; see its log`;
    const probe = `${tmp}/check-${randomBytes(6).toString('hex')}.probe`;
    const sftp = ssh.sftp;
    const handle = await new Promise<Buffer>((resolve, reject) => sftp.open(probe, 'wx', 0o600, (err, h) => (err ? reject(toSftpError(err, 'open', probe)) : resolve(h))));
    await new Promise<void>((resolve, reject) => sftp.close(handle, (err) => (err ? reject(toSftpError(err, 'close', probe)) : resolve())));
    await ssh.unlink(probe);
    return null;
  } catch (err) {
    const code = (err as TransferError).code;
    return `${(err as Error).message}${code === 'PERMISSION_DENIED' ? ` (the SSH user may not write in ${tmp})` : ''}`;
  }
}

/** Why the local folder is not usable, or null. Probes inside `.systemsync/` (never synced) when it exists. */
async function localFolderProblem(root: string): Promise<string | null> {
  const info = await fsp.stat(root).catch((err: NodeJS.ErrnoException) => err);
  if (info instanceof Error) {
    return info.code === 'ENOENT'
      ? `${root} does not exist: create it (mkdir -p ${root}) or fix its path in [folders]`
      : `cannot stat ${root}: ${info.message}`;
  }
  if (!info.isDirectory()) return `${root} is not a directory`;
  for (const dir of [tmpDirOf(root), path.join(root, RESERVED_DIR)]) {
    if ((await fsp.stat(dir).catch(() => null))?.isDirectory() !== true) continue;
    return probeWrite(dir);
  }
  // A folder not yet served has no .systemsync/: ask the kernel instead of writing in the folder.
  return fsp.access(root, fsConstants.W_OK).then(
    () => null,
    (err: Error) => `${root} is not writable: ${err.message}`,
  );
}

async function probeWrite(dir: string): Promise<string | null> {
  const probe = path.join(dir, `check-${randomBytes(6).toString('hex')}.probe`);
  try {
    await fsp.writeFile(probe, 'systemsync check\n', { flag: 'wx', mode: 0o600 });
    await fsp.rm(probe, { force: true });
    return null;
  } catch (err) {
    return `cannot write in ${dir}: ${(err as Error).message}`;
  }
}

/** A directory that must be writable; if it does not exist yet, its nearest existing parent must be. */
async function checkWritableDir(report: Report, what: string, dir: string): Promise<void> {
  let current = dir;
  for (;;) {
    const info = await fsp.stat(current).catch(() => null);
    if (info !== null) {
      if (!info.isDirectory()) return report.fail(what, `${current} is not a directory`);
      const problem = current === dir ? await probeWrite(dir) : await fsp.access(current, fsConstants.W_OK).then(() => null, (err: Error) => `${current} is not writable: ${err.message}`);
      if (problem !== null) return report.fail(what, problem);
      return report.pass(current === dir ? what : `${what} (it will be created inside ${current})`);
    }
    const parent = path.dirname(current);
    if (parent === current) return report.fail(what, `no part of ${dir} exists`);
    current = parent;
  }
}

interface IdentityInfo {
  data: Buffer | null;
  type: string | null;
  publicLine: string | null;
  problem: string | null;
}

async function readIdentity(file: string): Promise<IdentityInfo> {
  let data: Buffer;
  try {
    data = await fsp.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'it does not exist: create one with "systemsync init --role client", or set [server] identity' : (err as Error).message;
    return { data: null, type: null, publicLine: null, problem: `cannot read ${file}: ${why}` };
  }
  const parsed = ssh2Utils.parseKey(data);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key === undefined || key instanceof Error || key.isPrivateKey() !== true) {
    const why = key instanceof Error ? key.message : 'it holds no private key';
    const hint = /encrypt|passphrase/i.test(why) ? ' (a key with a passphrase cannot be used unattended: use one without)' : '';
    return { data: null, type: null, publicLine: null, problem: `${file} is not a usable private key: ${why}${hint}` };
  }
  return { data, type: key.type, publicLine: `${key.type} ${key.getPublicSSH().toString('base64')}`, problem: null };
}

/** Why a TCP connection to host:port fails within `timeoutMs`, or null when it connects. */
async function tcpProblemOf(host: string, port: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (problem: string | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(problem);
    };
    const timer = setTimeout(
      () => done(`no answer within ${timeoutMs / 1000} s (connect_timeout): a wrong host, or a firewall in between`),
      timeoutMs,
    );
    socket.once('connect', () => done(null));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      switch (err.code) {
        case 'ECONNREFUSED':
          return done(`connection refused: nothing listens on port ${port} there; is sshd running, and is [server] port right?`);
        case 'ENOTFOUND':
        case 'EAI_AGAIN':
          return done(`cannot resolve the host name ${host}: fix [server] host`);
        default:
          return done(`${err.code ?? 'error'}: ${err.message}`);
      }
    });
  });
}

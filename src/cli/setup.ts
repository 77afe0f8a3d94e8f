/**
 * `systemsync init` (a commented config, an SSH key, the authorized_keys line) and
 * `systemsync check` (one PASS/FAIL line per thing the node needs). Both return the exit code;
 * neither calls `process.exit` (monitor.ts does).
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
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ssh2 from 'ssh2';
import { RESERVED_DIR } from '../core/paths.js';
import { tmpDirOf } from '../fs/apply.js';
import { CONFIG_DEFAULTS, parseConfig, readConfigEnvironment, type Config, type Role } from './config.js';
import { hostKeyKnownHostsLine, loadOrCreateHostKey } from '../endpoint/hostkey.js';
import { askDaemon } from './control.js';
import type { StatusReport } from '../node.js';
import { SystemsyncError } from '../core/errors.js';
import { escapeControls } from '../core/text.js';
import { createRpcPeer, type HelloResult } from '../rpc.js';
import { openRpcStream } from '../client/rpcstream.js';
import { isEmbeddedEndpointIdent } from '../endpoint/server.js';
import {
  AuthFailedError,
  connectSsh,
  ConnectError,
  IdentityError,
  TransferError,
  toSftpError,
  type SshSession,
} from '../ssh/transfer.js';

const ssh2Utils = ssh2.utils;

// ---------------------------------------------------------------------------------------------
// init

/** What `init` needs from the command line. */
export interface InitArgs {
  role?: Role;
  config?: string;
}

/**
 * The OpenSSH options put before the key in the server's authorized_keys:
 * `restrict` turns off port, agent and X11 forwarding, PTY allocation and ~/.ssh/rc;
 * `port-forwarding` turns forwarding back on, which `direct-streamlocal` (the RPC stream to the
 * server daemon's Unix socket) needs; `command="internal-sftp"` makes every session the
 * built-in SFTP server, so the key cannot run a shell or any other command. Verified against a
 * real sshd by test/cli-setup.test.ts.
 */
export const AUTHORIZED_KEYS_OPTIONS = 'restrict,port-forwarding,command="internal-sftp"';

/** The authorized_keys line for a public key line ("ssh-ed25519 AAAA... comment"). */
export function authorizedKeysLine(publicKeyLine: string): string {
  return `${AUTHORIZED_KEYS_OPTIONS} ${publicKeyLine.trim()}`;
}

/** The `[clients]` line that binds `node` to its public key line on an embedded-endpoint server. */
export function clientsLine(node: string, publicKeyLine: string): string {
  return `${node} = ${publicKeyLine.trim()}`;
}

/** The node name the written client config gives (its default: the host name). */
function nodeNameOf(text: string, configPath: string): string {
  try {
    return parseConfig(text, configPath, { home: os.homedir(), hostname: os.hostname(), username: 'user', sshDirListing: ['id_ed25519'] }).node.name;
  } catch {
    return os.hostname();
  }
}

/** Thrown inside init for a refusal the user can fix; becomes exit 1 with its message. */
class InitError extends SystemsyncError {
  constructor(message: string) {
    super('INIT_REFUSED', message);
  }
}

/**
 * `systemsync init --role client|server [--config FILE]`: writes a commented config for the role
 * (never over an existing file), creates `~/.ssh/id_ed25519` on a client that has none of
 * id_ed25519, id_ecdsa, id_rsa (never over an existing key), and prints the authorized_keys
 * line and the next steps. Returns 0, or 1 with a message on stderr (nothing overwritten), or 2
 * without --role.
 */
export async function init(args: InitArgs): Promise<number> {
  if (args.role === undefined) {
    process.stderr.write('systemsync init: --role client or --role server is required\n');
    return 2;
  }
  try {
    await runInit(args.role, path.resolve(args.config ?? CONFIG_DEFAULTS.configFiles[0]!));
    return 0;
  } catch (err) {
    if (err instanceof InitError) {
      process.stderr.write(`systemsync init: ${escapeControls(err.message)}\n`);
      return 1;
    }
    throw err;
  }
}

async function runInit(role: Role, configPath: string): Promise<void> {
  const existing = await fsp.lstat(configPath).catch(() => null);
  if (existing !== null) {
    throw new InitError(`${configPath} already exists: not overwriting it. Edit it, or pass --config with another file name.`);
  }
  const home = os.homedir();
  const text = configTemplate(await readExample(), role, new Date());
  // The template must parse (with the key init guarantees); a broken example is a bug, not the user's problem.
  parseConfig(text, configPath, { home, hostname: 'node', username: 'user', sshDirListing: ['id_ed25519'] });

  const out: string[] = [];
  let key: { path: string; created: boolean; publicLine: string | null; problem: string | null } | null = null;
  if (role === 'client') key = await ensureKey(path.join(home, '.ssh'));

  await fsp.mkdir(path.dirname(configPath), { recursive: true });
  try {
    await fsp.writeFile(configPath, text, { flag: 'wx', mode: 0o644 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new InitError(`${configPath} already exists: not overwriting it.`);
    throw new InitError(`cannot write ${configPath}: ${(err as Error).message}`);
  }
  out.push(`wrote ${configPath} (role ${role})`);

  if (role === 'server') {
    // The written config as the daemon will read it: where its host key goes, which port.
    const config = parseConfig(text, configPath, { ...(await readConfigEnvironment()), role: 'server' });
    const listen = config.listen!;
    const hostKey = await loadOrCreateHostKey(listen.hostKey).catch((err: Error) => {
      throw new InitError(err.message);
    });
    const host = os.hostname();
    out.push(
      `${hostKey.created ? 'created' : 'using'} the host key ${listen.hostKey} (${hostKey.type} ${hostKey.fingerprint}; .pub beside it)`,
      '',
      `The embedded SSH endpoint ([listen]) will listen on ${listen.address}:${listen.port}; no system sshd is needed.`,
      "Each client appends this line to its known_hosts (use the name or address the client dials",
      `instead of ${host} if it differs):`,
      '',
      hostKeyKnownHostsLine(hostKey, host, listen.port),
      '',
      'Next steps:',
      `  1. Edit ${configPath}: [folders] (the same names as on the clients; the paths on this machine).`,
      '  2. On each client: systemsync init --role client, then add the [clients] line it prints to',
      `     ${configPath} (and [access] to limit a folder to some clients).`,
      `  3. Check it:   systemsync check --config ${configPath}`,
      `  4. Run it:     systemsync monitor --config ${configPath}   (as a service: see docs/RUNNING.md)`,
      '  To use the system sshd instead: remove [listen]; each client\'s authorized_keys line then goes to',
      `  ~/.ssh/authorized_keys of the user the clients log in as here (${os.userInfo().username} if that is you).`,
    );
  } else if (key !== null) {
    out.push(key.created ? `created the key ${key.path} (ed25519, no passphrase)` : `using the existing key ${key.path}`);
    if (key.publicLine !== null) {
      out.push(
        '',
        "For a server with the embedded endpoint ([listen]), add this line to the server config's [clients]:",
        '',
        clientsLine(nodeNameOf(text, configPath), key.publicLine),
        '',
        'For a server reached through its system sshd, append this line to ~/.ssh/authorized_keys of the',
        'user systemsync logs in as there:',
        '',
        authorizedKeysLine(key.publicLine),
        '',
        '(restrict: no shell, PTY, agent or X11 forwarding; port-forwarding: lets systemsync reach the server',
        ' daemon\'s Unix socket; command="internal-sftp": every session is SFTP only. See docs/RUNNING.md.)',
      );
    } else {
      out.push('', `warning: ${key.problem}`);
    }
    out.push(
      '',
      'Next steps:',
      `  1. Edit ${configPath}: [server] host and port (2222 for a server's embedded endpoint; user and`,
      '     rpc_socket matter only with a system sshd), [folders].',
      "  2. Trust the server's host key: append the known_hosts line that \"systemsync init --role server\"",
      '     printed there (embedded endpoint), or for a system sshd: ssh-keyscan [-p PORT] HOST >> ~/.ssh/known_hosts,',
      '     after comparing its fingerprint with ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the server',
      '     (or set host_key_check = accept-new to trust it on first connection).',
      `  3. Check it:   systemsync check --config ${configPath}`,
      `  4. Run it:     systemsync monitor --config ${configPath}   (as a service: see docs/RUNNING.md)`,
    );
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

async function readExample(): Promise<string> {
  const url = new URL('../../systemsync.cfg.example', import.meta.url);
  try {
    return await fsp.readFile(url, 'utf8');
  } catch (err) {
    throw new InitError(`cannot read the config template ${fileURLToPath(url)}: ${(err as Error).message}`);
  }
}

/**
 * The config text `init` writes for `role`, made from the example: a header naming what wrote it;
 * for a server `role = server`, no [server] section, and [rpc] and [trash] as (empty) sections
 * with their defaults shown in comments. Pure.
 */
export function configTemplate(example: string, role: Role, now: Date): string {
  const header = [
    `; Written by "systemsync init --role ${role}" on ${now.toISOString().slice(0, 10)}.`,
    role === 'client'
      ? '; Set [server] host and [folders], then run "systemsync check".'
      : '; Set [folders], then run "systemsync check".',
    ';',
  ];
  let lines = example.replace(/\r\n?/g, '\n').split('\n');
  if (role === 'server') {
    lines = lines.map((line) => line.replace('This example is for a CLIENT.', 'This one is for a SERVER.'));
    // The example's note on how a server differs: this file is the server's, so it goes.
    const note = lines.findIndex((line) => /^\s*;\s*FOR A SERVER/.test(line));
    if (note !== -1) {
      let end = note + 1;
      while (end < lines.length && /^\s*;\s+-/.test(lines[end]!)) end++;
      lines.splice(note > 0 && /^\s*;\s*$/.test(lines[note - 1]!) ? note - 1 : note, end - note + (note > 0 && /^\s*;\s*$/.test(lines[note - 1]!) ? 1 : 0));
    }
    lines = lines.map((line) => (/^\s*role\s*=/.test(line) ? 'role = server' : line));
    // Drop the [server] section: from its header to the next section header (or a commented one).
    const start = lines.findIndex((line) => /^\s*\[server\]/.test(line));
    if (start !== -1) {
      let end = start + 1;
      while (end < lines.length && !/^\s*[;#]?\s*\[[a-z]+\]/.test(lines[end]!)) end++;
      lines.splice(start, end - start);
    }
    lines = lines.map((line) => {
      if (/^\s*;\s*-{2,}\s*Server only/.test(line)) return '; ---- Server only ----';
      const section = /^\s*;\s*(\[(?:rpc|trash|listen)\])\s*$/.exec(line);
      return section ? section[1]! : line;
    });
  }
  return `${[...header, ...lines].join('\n').replace(/\n*$/, '')}\n`;
}

interface KeyInfo {
  path: string;
  created: boolean;
  /** "ssh-ed25519 AAAA... comment", or null when it could not be read (see problem). */
  publicLine: string | null;
  problem: string | null;
}

/** The node's key: the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa, or a new ed25519 key. */
async function ensureKey(sshDir: string): Promise<KeyInfo> {
  for (const name of CONFIG_DEFAULTS.server.identityFiles) {
    const keyPath = path.join(sshDir, name);
    if ((await fsp.lstat(keyPath).catch(() => null)) === null) continue;
    return { path: keyPath, created: false, ...(await publicLineOf(keyPath)) };
  }
  const keyPath = path.join(sshDir, 'id_ed25519');
  const pubPath = `${keyPath}.pub`;
  if ((await fsp.lstat(pubPath).catch(() => null)) !== null) {
    throw new InitError(`${pubPath} exists without its private key ${keyPath}: not overwriting it. Move it away, or create a key yourself (ssh-keygen -t ed25519).`);
  }
  const pair = ssh2Utils.generateKeyPairSync('ed25519', { comment: `systemsync@${os.hostname()}` });
  try {
    await fsp.mkdir(sshDir, { recursive: true, mode: 0o700 });
    await fsp.writeFile(keyPath, pair.private, { flag: 'wx', mode: 0o600 });
    await fsp.chmod(keyPath, 0o600);
    await fsp.writeFile(pubPath, `${pair.public}\n`, { flag: 'wx', mode: 0o644 });
    await fsp.chmod(pubPath, 0o644);
  } catch (err) {
    throw new InitError(`cannot create the key ${keyPath}: ${(err as Error).message}`);
  }
  return { path: keyPath, created: true, publicLine: pair.public.trim(), problem: null };
}

/** The public key line of a private key file: from `<key>.pub`, else derived from the key. */
async function publicLineOf(keyPath: string): Promise<{ publicLine: string | null; problem: string | null }> {
  const pub = await fsp.readFile(`${keyPath}.pub`, 'utf8').catch(() => null);
  if (pub !== null && /^\S+ [A-Za-z0-9+/=]+/.test(pub.trim())) return { publicLine: pub.trim().split('\n')[0]!, problem: null };
  const data = await fsp.readFile(keyPath).catch((err: Error) => err);
  if (data instanceof Error) return { publicLine: null, problem: `cannot read ${keyPath}: ${data.message}` };
  const parsed = ssh2Utils.parseKey(data);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key === undefined || key instanceof Error) {
    const why = key instanceof Error ? key.message : 'no key in it';
    const encrypted = /encrypt|passphrase/i.test(why);
    return {
      publicLine: null,
      problem: encrypted
        ? `${keyPath} has a passphrase, which an unattended daemon cannot type: create a key without one (ssh-keygen -t ed25519 -N "" -f ~/.ssh/systemsync_ed25519) and set [server] identity to it.`
        : `cannot read the public key of ${keyPath} (${why}); print it with: ssh-keygen -y -f ${keyPath}`,
    };
  }
  return { publicLine: `${key.type} ${key.getPublicSSH().toString('base64')}`, problem: null };
}

// ---------------------------------------------------------------------------------------------
// check

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

/**
 * `systemsync init`: writes a commented config for the role, makes sure a client has an SSH key
 * (or a server its host key), and prints the lines the other side needs (authorized_keys,
 * `[clients]`, known_hosts). Returns the exit code; never calls `process.exit` (monitor.ts does).
 */
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ssh2 from 'ssh2';
import { SystemsyncError } from '../core/errors.js';
import { escapeControls } from '../core/text.js';
import { hostKeyKnownHostsLine, loadOrCreateHostKey } from '../endpoint/hostkey.js';
import { CONFIG_DEFAULTS, parseConfig, readConfigEnvironment, type Role } from './config.js';

const ssh2Utils = ssh2.utils;

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

  if (role === 'server') out.push(...(await serverNotes(text, configPath)));
  else if (key !== null) out.push(...clientNotes(key, text, configPath));
  process.stdout.write(`${out.join('\n')}\n`);
}

/** What init prints on a server: its host key, the known_hosts line for clients, the next steps. */
async function serverNotes(text: string, configPath: string): Promise<string[]> {
  const out: string[] = [];
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
  return out;
}

/** What init prints on a client: its key, the lines for the server, the next steps. */
function clientNotes(key: KeyInfo, text: string, configPath: string): string[] {
  const out: string[] = [];
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
  return out;
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

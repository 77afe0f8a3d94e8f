/** Step 3 of reading a config file: each section's values validated into its part of `Config`. */
import path from 'node:path';
import ssh2 from 'ssh2';
import type { KeepPolicy, VersionPolicy } from '../core/versionpolicy.js';
import { HOST_KEY_CHECKS, HOST_NAME, LOG_LEVELS, NODE_NAME, type SectionName, type Values } from './configsyntax.js';
import {
  CONFIG_DEFAULTS,
  ConfigError,
  UNIX_SOCKET_PATH_MAX,
  type ClientKeyConfig,
  type ClientServerConfig,
  type FolderConfig,
  type ListenConfig,
  type LogLevel,
  type ParseOptions,
} from './configtypes.js';
import { integer, isInside, localPath, oneOf, quote, type Where } from './configvalues.js';

const KEEP_POLICIES: readonly KeepPolicy[] = ['trash', 'simple', 'staggered'];

/** [node] name (the host name by default), state_dir (its control socket within the Unix socket limit), log_level. */
export function parseNodeSection(
  at: (section: SectionName, key: string) => Where,
  get: (section: SectionName, key: string) => string | undefined,
  hostname: string | undefined,
  home: string | undefined,
): { name: string; stateDir: string; logLevel: LogLevel } {
  const nameRaw = get('node', 'name');
  const name = nameRaw ?? hostname;
  if (name === undefined) {
    throw new ConfigError(at('node', 'name'), `expected a node name (the host name is unknown), got nothing`);
  }
  if (!NODE_NAME.test(name)) {
    const origin = nameRaw === undefined ? ' (the host name, the default; set name)' : '';
    throw new ConfigError(
      at('node', 'name'),
      `expected 1-64 letters, digits, ".", "_" or "-", got ${quote(name)}${origin}`,
    );
  }
  const stateDir = localPath(at('node', 'state_dir'), get('node', 'state_dir') ?? CONFIG_DEFAULTS.node.stateDir, home);
  const controlSocket = path.posix.join(stateDir, 'control.sock');
  if (Buffer.byteLength(controlSocket) > UNIX_SOCKET_PATH_MAX) {
    throw new ConfigError(
      at('node', 'state_dir'),
      `expected a directory short enough for ${quote(controlSocket)} to fit in ${UNIX_SOCKET_PATH_MAX} bytes (the Unix socket limit), got ${quote(stateDir)}`,
    );
  }
  const logLevelRaw = get('node', 'log_level');
  const logLevel = logLevelRaw === undefined ? CONFIG_DEFAULTS.node.logLevel : oneOf(at('node', 'log_level'), logLevelRaw, LOG_LEVELS);
  return { name, stateDir, logLevel };
}

/** [rpc] socket (server): the path of the RPC socket, <state_dir>/rpc.sock by default, within the Unix socket limit. */
export function parseRpcSocket(
  at: (section: SectionName, key: string) => Where,
  get: (section: SectionName, key: string) => string | undefined,
  stateDir: string,
  home: string | undefined,
): string {
  const socketRaw = get('rpc', 'socket');
  const rpcSocket =
    socketRaw === undefined
      ? path.posix.join(stateDir, CONFIG_DEFAULTS.rpc.socketName)
      : localPath(at('rpc', 'socket'), socketRaw, home);
  if (Buffer.byteLength(rpcSocket) > UNIX_SOCKET_PATH_MAX) {
    const where = socketRaw === undefined ? at('node', 'state_dir') : at('rpc', 'socket');
    const origin = socketRaw === undefined ? ' (the default <state_dir>/rpc.sock; set [rpc] socket or a shorter state_dir)' : '';
    throw new ConfigError(
      where,
      `expected a socket path of at most ${UNIX_SOCKET_PATH_MAX} bytes (the Unix socket limit), got ${quote(rpcSocket)}${origin}`,
    );
  }
  return rpcSocket;
}

/** [folders]: each "name = path" line, the paths apart from each other and from state_dir; at least one. */
export function parseFoldersSection(
  at: (section: SectionName, key?: string) => Where,
  values: Values,
  stateDir: string,
  home: string | undefined,
): FolderConfig[] {
  const folders: FolderConfig[] = [];
  for (const [folderName, raw] of values.get('folders') ?? []) {
    const where = at('folders', folderName);
    const folderPath = localPath(where, raw, home);
    for (const other of folders) {
      if (other.path === folderPath) {
        throw new ConfigError(where, `expected a path of its own, got ${quote(folderPath)}, the path of folder "${other.name}"`);
      }
      if (isInside(folderPath, other.path)) {
        throw new ConfigError(where, `expected a path outside every other folder, got ${quote(folderPath)}, inside folder "${other.name}" (${other.path}); folders may not nest`);
      }
      if (isInside(other.path, folderPath)) {
        throw new ConfigError(where, `expected a path outside every other folder, got ${quote(folderPath)}, which contains folder "${other.name}" (${other.path}); folders may not nest`);
      }
    }
    if (folderPath === stateDir || isInside(stateDir, folderPath) || isInside(folderPath, stateDir)) {
      throw new ConfigError(
        where,
        `expected a path apart from state_dir (${stateDir}), got ${quote(folderPath)}; the daemon's own files must not be synced`,
      );
    }
    folders.push({ name: folderName, path: folderPath });
  }
  if (folders.length === 0) {
    throw new ConfigError(at('folders'), `expected at least one "name = path" line, got ${values.has('folders') ? 'none' : 'no [folders] section'}`);
  }
  return folders;
}

/**
 * `[versions]`: keep (default staggered), days (maximum age, default 30), count (simple only,
 * default 5), max_size (optional). A lone `[trash] retention_days` means `keep = trash` for that
 * many days, as it did before `[versions]` existed.
 */
export function parseVersionsSection(
  at: (section: SectionName | null, key?: string | null) => Where,
  get: (section: SectionName, key: string) => string | undefined,
  retentionDays: number | null,
): VersionPolicy {
  const defaults = CONFIG_DEFAULTS.versions;
  const keepRaw = get('versions', 'keep');
  const daysRaw = get('versions', 'days');
  if (daysRaw !== undefined && retentionDays !== null) {
    throw new ConfigError(at('versions', 'days'), `expected either [versions] days or [trash] retention_days, got both; keep [versions] days`);
  }
  const keep = keepRaw === undefined ? (retentionDays !== null ? 'trash' : defaults.keep) : oneOf(at('versions', 'keep'), keepRaw, KEEP_POLICIES);
  const maxAgeDays = daysRaw !== undefined ? integer(at('versions', 'days'), daysRaw, 1, 36500) : (retentionDays ?? defaults.maxAgeDays);
  const countRaw = get('versions', 'count');
  if (countRaw !== undefined && keep !== 'simple') {
    throw new ConfigError(at('versions', 'count'), `expected count only with keep = simple, got it with keep = ${keep}`);
  }
  const count = countRaw === undefined ? defaults.count : integer(at('versions', 'count'), countRaw, 1, 100000);
  const sizeRaw = get('versions', 'max_size');
  const maxBytes = sizeRaw === undefined ? defaults.maxBytes : byteSize(at('versions', 'max_size'), sizeRaw);
  return { keep, maxAgeDays, count, maxBytes };
}

/** A size in bytes: an integer with an optional binary unit (K, M, G, T; "10G", "512M", "1.5T"). */
function byteSize(where: Where, value: string): number {
  const m = /^(\d{1,12}(?:\.\d{1,3})?)\s*([KMGT]?)(?:i?B)?$/i.exec(value);
  const n = m === null ? NaN : Math.floor(Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase()));
  if (!(n >= 1 && Number.isSafeInteger(n))) {
    throw new ConfigError(where, `expected a size such as 500M or 10G (a number of bytes with an optional K, M, G or T), got ${quote(value)}`);
  }
  return n;
}

export function parseServerSection(
  at: (section: SectionName, key: string) => Where,
  get: (section: SectionName, key: string) => string | undefined,
  opts: ParseOptions,
): ClientServerConfig {
  const d = CONFIG_DEFAULTS.server;
  const host = get('server', 'host');
  if (host === undefined || host === '') {
    throw new ConfigError(at('server', 'host'), `expected the server's host name or address (a client needs one), got ${host === undefined ? 'nothing' : '""'}`);
  }
  if (!HOST_NAME.test(host)) {
    throw new ConfigError(
      at('server', 'host'),
      `expected a host name or IP address (no user@, brackets or spaces; the port goes in "port"), got ${quote(host)}`,
    );
  }
  const portRaw = get('server', 'port');
  const port = portRaw === undefined ? d.port : integer(at('server', 'port'), portRaw, 1, 65535);

  const userRaw = get('server', 'user');
  const user = userRaw ?? opts.username;
  if (user === undefined) {
    throw new ConfigError(at('server', 'user'), `expected a user name (the local user name is unknown), got nothing`);
  }
  if (user === '' || /\s/.test(user) || user.length > 256) {
    throw new ConfigError(at('server', 'user'), `expected a user name without spaces, got ${quote(user)}`);
  }

  const identityRaw = get('server', 'identity');
  let identity: string;
  if (identityRaw !== undefined) {
    identity = localPath(at('server', 'identity'), identityRaw, opts.home);
  } else {
    const listing = opts.sshDirListing ?? [];
    const found = d.identityFiles.find((f) => listing.includes(f));
    if (found === undefined) {
      throw new ConfigError(
        at('server', 'identity'),
        `expected a key file, found none of ${d.identityFiles.map((f) => `~/.ssh/${f}`).join(', ')}; set identity or create a key with "systemsync init"`,
      );
    }
    identity = localPath(at('server', 'identity'), `~/.ssh/${found}`, opts.home);
  }
  const knownHosts = localPath(at('server', 'known_hosts'), get('server', 'known_hosts') ?? d.knownHosts, opts.home);
  const checkRaw = get('server', 'host_key_check');
  const hostKeyCheck = checkRaw === undefined ? d.hostKeyCheck : oneOf(at('server', 'host_key_check'), checkRaw, HOST_KEY_CHECKS);

  const rpcSocket = get('server', 'rpc_socket') ?? d.rpcSocket;
  if (!(rpcSocket.startsWith('/') || rpcSocket.startsWith('~/'))) {
    throw new ConfigError(
      at('server', 'rpc_socket'),
      `expected an absolute path on the server or one starting with ~/ (the SSH user's home there), got ${quote(rpcSocket)}`,
    );
  }

  const timeoutRaw = get('server', 'connect_timeout');
  let connectTimeoutMs = d.connectTimeoutSeconds * 1000;
  if (timeoutRaw !== undefined) {
    const seconds = /^\d{1,9}(\.\d{1,3})?$/.test(timeoutRaw) ? Number(timeoutRaw) : NaN;
    if (!(seconds > 0 && seconds <= 3600)) {
      throw new ConfigError(at('server', 'connect_timeout'), `expected a number of seconds above 0, at most 3600, got ${quote(timeoutRaw)}`);
    }
    connectTimeoutMs = Math.max(1, Math.round(seconds * 1000));
  }
  return { host, port, user, identity, knownHosts, hostKeyCheck, rpcSocket, connectTimeoutMs };
}

/** `[listen]`, `[clients]` and `[access]` (server only; the role check has already run). */
export function parseEndpointSections(
  at: (section: SectionName, key?: string | null) => Where,
  get: (section: SectionName, key: string) => string | undefined,
  values: Values,
  node: { name: string; stateDir: string; folders: FolderConfig[]; home: string | undefined },
): { listen: ListenConfig | null; clients: ClientKeyConfig[]; access: Record<string, string[]> } {
  const d = CONFIG_DEFAULTS.listen;
  const hasListen = values.has('listen');
  for (const section of ['clients', 'access'] as const) {
    if (values.has(section) && !hasListen) {
      throw new ConfigError(
        at(section),
        `expected a [listen] section beside [${section}], got none: [${section}] is for the embedded SSH endpoint only (with the system sshd, keys go in ~/.ssh/authorized_keys)`,
      );
    }
  }
  if (!hasListen) return { listen: null, clients: [], access: {} };

  const address = get('listen', 'address') ?? d.address;
  if (!HOST_NAME.test(address)) {
    throw new ConfigError(at('listen', 'address'), `expected a host name or IP address to listen on, got ${quote(address)}`);
  }
  const portRaw = get('listen', 'port');
  const port = portRaw === undefined ? d.port : integer(at('listen', 'port'), portRaw, 1, 65535);
  const hostKey = localPath(at('listen', 'host_key'), get('listen', 'host_key') ?? path.posix.join(node.stateDir, d.hostKeyName), node.home);

  const clients: ClientKeyConfig[] = [];
  for (const [clientName, raw] of values.get('clients') ?? []) {
    const where = at('clients', clientName);
    if (clientName === node.name) {
      throw new ConfigError(where, `expected a client's node name, got the server's own name ${quote(clientName)}`);
    }
    const key = parsePublicKeyLine(where, raw);
    const twin = clients.find((c) => c.blob === key.blob);
    if (twin !== undefined) {
      throw new ConfigError(where, `expected a key of its own, got the key of client "${twin.name}": a key names one node; give each node its own key`);
    }
    clients.push({ name: clientName, ...key });
  }

  const access: Record<string, string[]> = {};
  for (const [folderName, raw] of values.get('access') ?? []) {
    const where = at('access', folderName);
    if (!node.folders.some((f) => f.name === folderName)) {
      throw new ConfigError(where, `expected a folder of [folders], got ${quote(folderName)}, which is not one (${node.folders.map((f) => f.name).join(', ')})`);
    }
    const names = raw.split(',').map((n) => n.trim()).filter((n) => n !== '');
    if (names.length === 0) {
      throw new ConfigError(where, `expected the names of the clients that may sync it (comma-separated), got none; to serve it to nobody, remove it from [folders]`);
    }
    for (const clientName of names) {
      if (!clients.some((c) => c.name === clientName)) {
        const known = clients.length === 0 ? 'none' : clients.map((c) => c.name).join(', ');
        throw new ConfigError(where, `expected client names from [clients], got ${quote(clientName)}, which is not one (there: ${known})`);
      }
    }
    access[folderName] = [...new Set(names)];
  }
  return { listen: { address, port, hostKey }, clients, access };
}

/** `type base64 [comment]`: an OpenSSH public key line (as in `id_ed25519.pub`), without options. */
function parsePublicKeyLine(where: Where, raw: string): { type: string; blob: string } {
  const parts = raw.split(/\s+/);
  const [type, blob] = parts;
  const shown = raw.length > 60 ? `${raw.slice(0, 57)}...` : raw;
  if (type === undefined || blob === undefined || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) {
    throw new ConfigError(where, `expected a public key line "ssh-ed25519 AAAA... [comment]" (the client's .pub file), got ${quote(shown)}`);
  }
  const parsed = ssh2.utils.parseKey(`${type} ${blob}`);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key === undefined || key instanceof Error) {
    throw new ConfigError(where, `expected a public key line "ssh-ed25519 AAAA... [comment]", got one ssh2 cannot read (${key instanceof Error ? key.message : 'no key'}): ${quote(shown)}`);
  }
  if (key.type !== type) {
    throw new ConfigError(where, `expected the key type to match the key, got ${quote(type)} for a ${key.type} key`);
  }
  return { type, blob: key.getPublicSSH().toString('base64') };
}

/**
 * The config file: `systemsync.cfg` (INI, read with `ini`) parsed and validated into one typed,
 * deeply frozen `Config`.
 *
 * `ini` alone is too forgiving for a config where a typo must not silently change behaviour: it
 * reads `[server] ; comment` as a key, merges duplicate sections, lets a duplicate key win
 * silently, turns `key[]` into arrays, nests `[a.b]`, drops `__proto__`, reorders numeric keys and
 * truncates `~/C#code` at the `#`. So the text is first scanned line by line here (structure,
 * duplicates, known sections and keys, file order), then `ini` decodes the values, then every value
 * is validated. Every error is a `ConfigError` whose message names the file, the section and the
 * key, what was expected and what was found.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import ini from 'ini';
import ssh2 from 'ssh2';
import { SystemsyncError } from '../core/errors.js';
import type { KeepPolicy, VersionPolicy } from '../core/versionpolicy.js';

export type Role = 'client' | 'server';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export type HostKeyCheck = 'yes' | 'accept-new';

export interface FolderConfig {
  name: string;
  /** Absolute, `~` expanded, normalised (no trailing slash). */
  path: string;
}

/** How a client reaches the server (the `[server]` section). */
export interface ClientServerConfig {
  host: string;
  port: number;
  user: string;
  /** Absolute path of the private key. */
  identity: string;
  /** Absolute path of the OpenSSH known_hosts file. */
  knownHosts: string;
  hostKeyCheck: HostKeyCheck;
  /**
   * The server daemon's RPC socket, a path ON THE SERVER: absolute, or starting with `~/`
   * meaning the SSH user's home there. It is never expanded locally.
   */
  rpcSocket: string;
  connectTimeoutMs: number;
}

/** Server: the embedded SSH endpoint (`[listen]`). */
export interface ListenConfig {
  address: string;
  port: number;
  /** Absolute path of the host's private key (made on first start; `.pub` beside it). */
  hostKey: string;
}

/** Server: one `[clients]` line, a node name bound to its public key. */
export interface ClientKeyConfig {
  name: string;
  /** Key type as in the line ("ssh-ed25519", ...). */
  type: string;
  /** The public key blob (SSH wire format), base64 as in the line. */
  blob: string;
}

export interface Config {
  /** Absolute path of the config file read. */
  file: string;
  node: { name: string; role: Role; stateDir: string; logLevel: LogLevel };
  /** Set for role client, null for role server. */
  server: ClientServerConfig | null;
  /** Server: the absolute path of the RPC socket the daemon listens on (default <state_dir>/rpc.sock). */
  rpc: { socket: string };
  /** In file order. At least one. */
  folders: FolderConfig[];
  /** gitignore patterns applied to every folder; no built-in default. */
  ignore: { patterns: string[] };
  /** Server: days a file stays in `.systemsync/trash/` before it is removed (the versions' maximum age). */
  trash: { retentionDays: number };
  /** Server: the embedded SSH endpoint, or null (clients come in through the system sshd). */
  listen: ListenConfig | null;
  /** Server with `[listen]`: the clients and their keys, in file order. */
  clients: ClientKeyConfig[];
  /** Server with `[listen]`: folder name → the clients that may sync it. A folder not listed is open to every client. */
  access: Record<string, string[]>;
  /** Server: what is kept of deleted and replaced files (`[versions]`; `[trash] retention_days` still works). */
  versions: VersionPolicy;
}

/** What `parseConfig` may know of the machine; everything it does not get here it does not use. */
export interface ConfigEnvironment {
  /** Home directory of the local user, for `~` expansion and the `~/.ssh` defaults. */
  home?: string;
  /** Default node name. */
  hostname?: string;
  /** Default SSH user name. */
  username?: string;
  /** File names in `~/.ssh`, to choose the default identity. Missing means none. */
  sshDirListing?: readonly string[];
  /** Directory a relative config file name is resolved against (for `Config.file`). */
  cwd?: string;
}

export interface ParseOptions extends ConfigEnvironment {
  /** `--role`: wins over `[node] role`. */
  role?: Role;
}

/** Every default in one place. Defaults that depend on the machine are described in comments. */
export const CONFIG_DEFAULTS = deepFreeze({
  node: {
    // name: the host name
    stateDir: '~/.local/state/systemsync',
    logLevel: 'info' as LogLevel,
  },
  server: {
    port: 22,
    // user: the local user name
    /** The default identity is the first of these that exists in ~/.ssh. */
    identityFiles: ['id_ed25519', 'id_ecdsa', 'id_rsa'] as readonly string[],
    knownHosts: '~/.ssh/known_hosts',
    hostKeyCheck: 'yes' as HostKeyCheck,
    rpcSocket: '~/.local/state/systemsync/rpc.sock',
    connectTimeoutSeconds: 15,
  },
  rpc: {
    /** The socket's default is this name inside state_dir. */
    socketName: 'rpc.sock',
  },
  ignore: { patterns: [] as readonly string[] },
  trash: { retentionDays: 30 },
  listen: {
    address: '0.0.0.0',
    port: 2222,
    /** The host key's default is this name inside state_dir. */
    hostKeyName: 'ssh_host_ed25519_key',
  },
  versions: { keep: 'staggered' as KeepPolicy, maxAgeDays: 30, count: 5, maxBytes: null as number | null },
  /** Where the config file is looked for when --config is not given, in order. */
  configFiles: ['./systemsync.cfg', '~/.config/systemsync/systemsync.cfg'] as readonly string[],
});

/** Longest path a Unix socket can bind on Linux (sun_path is 108 bytes including the NUL). */
export const UNIX_SOCKET_PATH_MAX = 107;
/** A config file larger than this is refused (it is surely not a config file). */
export const CONFIG_FILE_MAX_BYTES = 1024 * 1024;

/** A bad config, a missing config file or an unreadable one. Callers branch on `code`. */
export class ConfigError extends SystemsyncError {
  /** The file as given (or null when no file was found at all). */
  readonly file: string | null;
  /** Section name without brackets, or null for a problem with the whole file. */
  readonly section: string | null;
  readonly key: string | null;
  /** The message without the "file [section] key: " prefix. */
  readonly detail: string;

  constructor(
    where: { file: string | null; section?: string | null; key?: string | null },
    detail: string,
    options?: { cause?: unknown },
  ) {
    const section = where.section ?? null;
    const key = where.key ?? null;
    const prefix = [where.file, section === null ? null : `[${section}]`, key]
      .filter((part): part is string => part !== null)
      .join(' ');
    super('CONFIG_INVALID', prefix === '' ? detail : `${prefix}: ${detail}`, options);
    this.file = where.file;
    this.section = section;
    this.key = key;
    this.detail = detail;
  }
}

// ---------------------------------------------------------------------------------------------
// The schema: sections and their keys.

type SectionName = 'node' | 'server' | 'rpc' | 'folders' | 'ignore' | 'trash' | 'listen' | 'clients' | 'access' | 'versions';

/** Fixed keys per section; `folders` and `access` have folder names as keys, `clients` node names. */
const SECTION_KEYS: Readonly<Record<SectionName, readonly string[] | 'folder-names' | 'node-names'>> = {
  node: ['name', 'role', 'state_dir', 'log_level'],
  server: ['host', 'port', 'user', 'identity', 'known_hosts', 'host_key_check', 'rpc_socket', 'connect_timeout'],
  rpc: ['socket'],
  folders: 'folder-names',
  ignore: ['patterns'],
  trash: ['retention_days'],
  listen: ['address', 'port', 'host_key'],
  clients: 'node-names',
  access: 'folder-names',
  versions: ['keep', 'days', 'count', 'max_size'],
};
const SECTION_NAMES = Object.keys(SECTION_KEYS) as SectionName[];
/** Sections that only one role may have, and why. */
const SECTION_ROLE: Partial<Record<SectionName, { role: Role; why: string }>> = {
  server: { role: 'client', why: 'how a client reaches the server' },
  rpc: { role: 'server', why: "the server daemon's RPC socket" },
  trash: { role: 'server', why: 'the server keeps the trash' },
  listen: { role: 'server', why: "the server's embedded SSH endpoint" },
  clients: { role: 'server', why: 'the keys the embedded endpoint accepts' },
  access: { role: 'server', why: 'which clients the server lets sync each folder' },
  versions: { role: 'server', why: 'the server keeps the versions' },
};

const ROLES: readonly Role[] = ['client', 'server'];
const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];
const HOST_KEY_CHECKS: readonly HostKeyCheck[] = ['yes', 'accept-new'];

const NODE_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const FOLDER_NAME = /^(?!\.)[A-Za-z0-9._-]{1,64}$/;
const HOST_NAME = /^(?!-)[A-Za-z0-9._:%-]{1,253}$/;
/** Control characters (tab aside) and the JS line separators, which `ini` cannot read. */
// eslint-disable-next-line no-control-regex
const CONTROL_CHAR = /[\u0000-\u0008\u000a-\u001f\u007f\u2028\u2029]/;

// ---------------------------------------------------------------------------------------------
// Step 1: scan the lines (structure only).

interface ScannedKey {
  key: string;
  line: number;
}
interface ScannedSection {
  name: SectionName;
  line: number;
  keys: ScannedKey[];
}

/** `ini`'s own test for a quoted value, which it then JSON-decodes instead of cutting comments. */
function isQuoted(value: string): boolean {
  return (value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'"));
}

/**
 * Checks the structure of the text and returns its sections in file order plus the normalised
 * text handed to `ini` (section headers stripped of their comments, comments and blanks dropped).
 */
function scanLines(text: string, file: string): { sections: ScannedSection[]; normalized: string } {
  const sections: ScannedSection[] = [];
  const out: string[] = [];
  let current: ScannedSection | null = null;
  const lines = text.split(/\r\n|\r|\n/);

  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (/^\s*$/.test(line) || /^\s*[;#]/.test(line)) return;
    const control = CONTROL_CHAR.exec(line);
    if (control) {
      const code = control[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
      throw new ConfigError(
        { file, section: current?.name ?? null },
        `expected text, got the control character U+${code} on line ${lineNo}`,
      );
    }
    const trimmed = line.trim();

    if (trimmed.startsWith('[')) {
      const header = /^\[([^\]]*)\]\s*(?:[;#].*)?$/.exec(trimmed);
      if (!header) {
        throw new ConfigError(
          { file },
          `expected a section header like [node] on line ${lineNo}, got ${quote(trimmed)}`,
        );
      }
      const name = header[1]!.trim();
      if (!isSectionName(name)) {
        const hint = name.includes('.') ? ' (sections do not nest)' : suggestion(name, SECTION_NAMES, (s) => `[${s}]`);
        throw new ConfigError(
          { file, section: name },
          `expected one of the sections ${SECTION_NAMES.map((s) => `[${s}]`).join(', ')}, got an unknown section${hint}`,
        );
      }
      const previous = sections.find((s) => s.name === name);
      if (previous) {
        throw new ConfigError(
          { file, section: name },
          `expected the section once, got it twice (lines ${previous.line} and ${lineNo}); merge them`,
        );
      }
      current = { name, line: lineNo, keys: [] };
      sections.push(current);
      out.push(`[${name}]`);
      return;
    }

    const eq = line.indexOf('=');
    if (eq === -1) {
      throw new ConfigError(
        { file, section: current?.name ?? null },
        `expected "key = value" on line ${lineNo}, got ${quote(trimmed)}`,
      );
    }
    const key = line.slice(0, eq).trim();
    const rawValue = line.slice(eq + 1).trim();
    if (key === '') {
      throw new ConfigError(
        { file, section: current?.name ?? null },
        `expected a key name before "=" on line ${lineNo}, got ${quote(trimmed)}`,
      );
    }
    if (current === null) {
      throw new ConfigError(
        { file, key },
        `expected a [section] line before this key (line ${lineNo}), got it outside any section`,
      );
    }
    const section: ScannedSection = current;
    checkKeyName(file, section.name, key);
    checkInlineComment(file, section.name, key, rawValue);
    const previous = section.keys.find((k) => k.key === key);
    if (previous) {
      throw new ConfigError(
        { file, section: section.name, key },
        `expected the key once, got it twice (lines ${previous.line} and ${lineNo}); keep one`,
      );
    }
    section.keys.push({ key, line: lineNo });
    out.push(`${key}=${line.slice(eq + 1)}`);
  });

  return { sections, normalized: out.join('\n') };
}

function isSectionName(name: string): name is SectionName {
  return Object.hasOwn(SECTION_KEYS, name);
}

function checkKeyName(file: string, section: SectionName, key: string): void {
  if (key.endsWith('[]')) {
    throw new ConfigError(
      { file, section, key },
      `expected a plain key, got an array key ("key[]" is not supported; give the key once)`,
    );
  }
  const known = SECTION_KEYS[section];
  if (known === 'node-names') {
    if (!NODE_NAME.test(key) || key === '__proto__') {
      throw new ConfigError({ file, section, key }, `expected a node name of 1-64 letters, digits, ".", "_" or "-", got ${quote(key)}`);
    }
    return;
  }
  if (known === 'folder-names') {
    if (!FOLDER_NAME.test(key)) {
      throw new ConfigError(
        { file, section, key },
        `expected a folder name of 1-64 letters, digits, ".", "_" or "-", not starting with ".", got ${quote(key)}`,
      );
    }
    if (key === '__proto__') {
      throw new ConfigError({ file, section, key }, `expected a folder name, got a reserved name`);
    }
    return;
  }
  if (!known.includes(key)) {
    throw new ConfigError(
      { file, section, key },
      `expected one of the keys ${known.join(', ')}, got an unknown key${suggestion(key, known, (k) => k)}`,
    );
  }
}

/**
 * `ini` cuts a value at the first unescaped `;` or `#`. The SPEC's own example uses inline
 * comments, so they work, but only after whitespace: `~/C#code` must not silently become `~/C`.
 */
function checkInlineComment(file: string, section: SectionName, key: string, rawValue: string): void {
  if (rawValue.length > 1 && isQuoted(rawValue)) return;
  if (/^["']/.test(rawValue)) {
    throw new ConfigError(
      { file, section, key },
      `expected a quoted value to end with its quote (no comment may follow it), got ${quote(rawValue)}`,
    );
  }
  let escaped = false;
  for (let i = 0; i < rawValue.length; i++) {
    const c = rawValue[i]!;
    if (escaped) {
      escaped = false;
    } else if (c === '\\') {
      escaped = true;
    } else if (c === ';' || c === '#') {
      if (i > 0 && !/\s/.test(rawValue[i - 1]!)) {
        throw new ConfigError(
          { file, section, key },
          `expected "${c}" only to start a comment after a space (write "\\${c}" or quote the value to keep it), got ${quote(rawValue)}`,
        );
      }
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Step 2: decode the values with `ini` and cross-check them against the scan.

type Values = Map<SectionName, Map<string, string>>;

function decodeValues(file: string, scanned: ScannedSection[], normalized: string): Values {
  const decoded: Record<string, unknown> = ini.parse(normalized);
  const values: Values = new Map();
  for (const section of scanned) {
    const object = decoded[section.name];
    const keys = new Map<string, string>();
    for (const { key } of section.keys) {
      if (typeof object !== 'object' || object === null || !Object.hasOwn(object, key)) {
        throw new ConfigError({ file, section: section.name, key }, `expected a key the ini reader keeps, got one it dropped`);
      }
      const value: unknown = (object as Record<string, unknown>)[key];
      keys.set(key, valueAsText(file, section.name, key, value));
    }
    values.set(section.name, keys);
  }
  return values;
}

/** `ini` turns true/false/null into JSON values and JSON-decodes quoted values: back to text. */
function valueAsText(file: string, section: string, key: string, value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'boolean' || typeof value === 'number' || value === null) text = String(value);
  else {
    throw new ConfigError({ file, section, key }, `expected a single value, got ${JSON.stringify(value)}`);
  }
  const control = CONTROL_CHAR.exec(text);
  if (control) {
    const code = control[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw new ConfigError({ file, section, key }, `expected text, got the control character U+${code}`);
  }
  return text.trim();
}

// ---------------------------------------------------------------------------------------------
// Step 3: validate into a Config.

/**
 * Parses and validates the text of a config file. Pure: it uses only `text`, `file` and what
 * `opts` passes in (no `~`, host name, user name or key files are guessed from the machine; a
 * default that needs one of them and does not get it is an error). `file` appears as given in
 * every message. Throws `ConfigError` and nothing else. The result is deeply frozen.
 */
export function parseConfig(text: string, file: string, opts: ParseOptions = {}): Config {
  const at = (section: SectionName | null, key: string | null = null) => ({ file, section, key });
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const { sections, normalized } = scanLines(body, file);
  const values = decodeValues(file, sections, normalized);
  const has = (section: SectionName) => values.has(section);
  const get = (section: SectionName, key: string): string | undefined => values.get(section)?.get(key);

  if (opts.home !== undefined && !path.isAbsolute(opts.home)) {
    throw new ConfigError(at(null), `expected an absolute home directory, got ${quote(opts.home)}`);
  }

  // Role: --role wins, but a bad value in the file is still an error.
  const fileRole = get('node', 'role');
  if (fileRole !== undefined) oneOf(at('node', 'role'), fileRole, ROLES);
  const role = opts.role ?? (fileRole as Role | undefined);
  if (role === undefined) {
    throw new ConfigError(at('node', 'role'), `expected client or server (here or with --role), got nothing`);
  }
  const roleOrigin = opts.role !== undefined ? ' (from --role)' : '';
  for (const section of SECTION_NAMES) {
    const only = SECTION_ROLE[section];
    if (only && only.role !== role && has(section)) {
      throw new ConfigError(
        at(section),
        `expected no [${section}] section on a ${role}${roleOrigin}, got one: it is for the ${only.role} only (${only.why}); remove it`,
      );
    }
  }

  // [node]
  const { name, stateDir, logLevel } = parseNodeSection(at, get, opts.hostname, opts.home);

  // [server] (client) and [rpc] (server)
  const server = role === 'client' ? parseServerSection(at, get, opts) : null;
  const rpcSocket = parseRpcSocket(at, get, stateDir, opts.home);

  // [folders]
  const folders = parseFoldersSection(at, values, stateDir, opts.home);

  // [ignore]
  const patternsRaw = get('ignore', 'patterns');
  const patterns =
    patternsRaw === undefined
      ? [...CONFIG_DEFAULTS.ignore.patterns]
      : patternsRaw
          .split(',')
          .map((p) => p.trim())
          .filter((p) => p !== '');

  // [trash]
  const retentionRaw = get('trash', 'retention_days');
  const retentionDays =
    retentionRaw === undefined
      ? CONFIG_DEFAULTS.trash.retentionDays
      : integer(at('trash', 'retention_days'), retentionRaw, 1, 36500);

  const { listen, clients, access } = parseEndpointSections(at, get, values, { name, stateDir, folders, home: opts.home });
  const versions = parseVersionsSection(at, get, retentionRaw === undefined ? null : retentionDays);

  const config: Config = {
    file: opts.cwd !== undefined ? path.resolve(opts.cwd, file) : path.resolve(file),
    node: { name, role, stateDir, logLevel },
    server,
    rpc: { socket: rpcSocket },
    folders,
    ignore: { patterns },
    listen,
    clients,
    access,
    trash: { retentionDays: versions.maxAgeDays },
    versions,
  };
  return deepFreeze(config);
}

const KEEP_POLICIES: readonly KeepPolicy[] = ['trash', 'simple', 'staggered'];

/** [node] name (the host name by default), state_dir (its control socket within the Unix socket limit), log_level. */
function parseNodeSection(
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
function parseRpcSocket(
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
function parseFoldersSection(
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
function parseVersionsSection(
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

function parseServerSection(
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
function parseEndpointSections(
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

// ---------------------------------------------------------------------------------------------
// Value checks.

type Where = { file: string; section: string | null; key: string | null };

function oneOf<T extends string>(where: Where, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    const list = allowed.length === 2 ? `${allowed[0]} or ${allowed[1]}` : allowed.join(', ');
    throw new ConfigError(where, `expected ${list}, got ${quote(value)}`);
  }
  return value as T;
}

function integer(where: Where, value: string, min: number, max: number): number {
  const n = /^\d{1,10}$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) {
    throw new ConfigError(where, `expected an integer ${min}-${max}, got ${quote(value)}`);
  }
  return n;
}

/** A local path: absolute, or `~` / `~/…` expanded with `home`; returned normalised without a trailing slash. */
function localPath(where: Where, value: string, home: string | undefined): string {
  let absolute: string;
  if (value === '~' || value.startsWith('~/')) {
    if (home === undefined) {
      throw new ConfigError(where, `expected a home directory to expand "~" in, got none (HOME is unknown); write an absolute path`);
    }
    absolute = path.posix.join(home, value.slice(1));
  } else if (path.posix.isAbsolute(value)) {
    absolute = value;
  } else {
    const tilde = value.startsWith('~') ? ' ("~user" is not supported)' : '';
    throw new ConfigError(where, `expected an absolute path or one starting with ~/${tilde}, got ${quote(value)}`);
  }
  const normalized = path.posix.normalize(absolute);
  return normalized.length > 1 && normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

/** Whether absolute normalised `inner` is strictly inside `outer`. */
function isInside(inner: string, outer: string): boolean {
  const prefix = outer.endsWith('/') ? outer : `${outer}/`;
  return inner !== outer && inner.startsWith(prefix);
}

function quote(value: string): string {
  return JSON.stringify(value);
}

/** " (did you mean x?)" when a known name is within two edits of `given`, else "". */
function suggestion(given: string, known: readonly string[], show: (name: string) => string): string {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(given.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best === null ? '' : ` (did you mean ${show(best)}?)`;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// I/O at the edge.

/** The places a config file is looked for without --config, in order, as absolute paths. */
export function configFileCandidates(cwd: string, home: string): string[] {
  return [path.resolve(cwd, 'systemsync.cfg'), path.join(home, '.config', 'systemsync', 'systemsync.cfg')];
}

/**
 * The config file to use: `explicit` (--config) as given, whether it exists or not (reading it
 * reports a missing file); else the first of `configFileCandidates(cwd, home)` that exists.
 * Throws `ConfigError` (file null) listing where it looked when none does.
 */
export function findConfigFile(explicit: string | undefined, cwd: string, home: string): string {
  if (explicit !== undefined) {
    if (explicit.trim() === '') throw new ConfigError({ file: null, key: '--config' }, `expected a file name, got ""`);
    return explicit;
  }
  const candidates = configFileCandidates(cwd, home);
  const found = candidates.find((candidate) => existsSync(candidate));
  if (found === undefined) {
    throw new ConfigError(
      { file: null },
      `no config file found: looked for ${candidates.join(' and ')}; pass --config FILE or write one with "systemsync init"`,
    );
  }
  return found;
}

/**
 * The machine's side of `ConfigEnvironment`: home, host name, user name, the names in ~/.ssh and
 * the current directory. Never throws; what cannot be found is left out.
 */
export async function readConfigEnvironment(): Promise<ConfigEnvironment> {
  const home = os.homedir();
  let username: string | undefined;
  try {
    username = os.userInfo().username;
  } catch {
    username = process.env.USER ?? process.env.LOGNAME;
  }
  let sshDirListing: string[] = [];
  try {
    sshDirListing = await readdir(path.join(home, '.ssh'));
  } catch {
    sshDirListing = [];
  }
  return { home, hostname: os.hostname(), username, sshDirListing, cwd: process.cwd() };
}

/**
 * Reads and parses a config file. `file` appears in messages as given. A missing, unreadable,
 * non-regular or oversized file is a `ConfigError` naming it. Environment values in `opts`
 * replace the machine's (for tests).
 */
export async function loadConfig(file: string, opts: ParseOptions = {}): Promise<Config> {
  let text: string;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new ConfigError({ file }, `expected a config file, got ${info.isDirectory() ? 'a directory' : 'something that is not a regular file'}`);
    if (info.size > CONFIG_FILE_MAX_BYTES) {
      throw new ConfigError({ file }, `expected a config file of at most ${CONFIG_FILE_MAX_BYTES} bytes, got ${info.size} bytes`);
    }
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'it does not exist' : code === 'EACCES' ? 'permission denied' : String((error as Error).message);
    throw new ConfigError({ file }, `expected a readable config file, got an error: ${reason}`, { cause: error });
  }
  const machine = await readConfigEnvironment();
  return parseConfig(text, file, { ...machine, ...definedOnly(opts) });
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

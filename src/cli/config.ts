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
import {
  parseEndpointSections,
  parseFoldersSection,
  parseNodeSection,
  parseRpcSocket,
  parseServerSection,
  parseVersionsSection,
} from './configsections.js';
import { decodeValues, ROLES, scanLines, SECTION_NAMES, SECTION_ROLE, type SectionName } from './configsyntax.js';
import {
  CONFIG_DEFAULTS,
  CONFIG_FILE_MAX_BYTES,
  ConfigError,
  deepFreeze,
  type Config,
  type ConfigEnvironment,
  type ParseOptions,
  type Role,
} from './configtypes.js';
import { integer, oneOf, quote } from './configvalues.js';

export {
  CONFIG_DEFAULTS,
  CONFIG_FILE_MAX_BYTES,
  ConfigError,
  UNIX_SOCKET_PATH_MAX,
  type ClientKeyConfig,
  type ClientServerConfig,
  type Config,
  type ConfigEnvironment,
  type FolderConfig,
  type HostKeyCheck,
  type ListenConfig,
  type LogLevel,
  type ParseOptions,
  type Role,
} from './configtypes.js';

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

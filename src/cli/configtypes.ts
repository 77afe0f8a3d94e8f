/**
 * What a parsed config is: the `Config` type and its parts, every default in one object, the
 * limits a config must keep, and `ConfigError`, the one error a bad or missing config raises.
 */
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

/** Freezes `value` and everything inside it. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

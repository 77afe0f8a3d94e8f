/**
 * JSON-RPC 2.0 over a byte stream, newline-delimited (one message per line), both directions on
 * one stream (`JSONRPCServerAndClient`). JSON-RPC only: method names, param schemas, framing,
 * limits and the one `errorToRpc`/`rpcToError` pair. No sync logic.
 *
 * Every incoming message is bounded (line length), parsed, checked as a JSON-RPC envelope, and its
 * params validated against the method's schema BEFORE the handler runs; a handler receives typed,
 * already-validated params. Results are validated too, on both sides, so that paths arriving from
 * the network are always checked. Bad input gets a JSON-RPC error and a log line; only an
 * over-long line (abuse) drops the connection.
 */
import type { Duplex } from 'node:stream';
import {
  JSONRPCClient,
  JSONRPCErrorCode,
  JSONRPCErrorException,
  JSONRPCServer,
  JSONRPCServerAndClient,
  createJSONRPCErrorResponse,
  createJSONRPCSuccessResponse,
  type JSONRPCID,
  type JSONRPCRequest,
  type JSONRPCResponse,
} from 'json-rpc-2.0';
import { BLOCK_HASH_BYTES, MAX_BLOCK_SIZE, MAX_BLOCKS, MIN_BLOCK_SIZE } from './core/blocks.js';
import { SyncError } from './core/errors.js';
import { pathProblem } from './core/paths.js';
import { permissionBits } from './core/modes.js';
import type { BundlePart, Change, Entry, PushOp, PushResult, Version } from './core/types.js';

// ---------------------------------------------------------------------------------------------
// A tiny schema library: exact objects, bounded strings and arrays, integer ranges, enums,
// nullables, tuples, records and unions discriminated by a tag.

/** A value that does not fit its schema; `field` is where ("params.ops[3].path"). */
export class SchemaError extends SyncError {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super('INVALID_PARAMS', `${field}: ${reason}`);
  }
}

/** Checks an untrusted value and returns it typed (objects are copied with only known keys). */
export interface Schema<T> {
  parse(value: unknown, at: string): T;
}
type Infer<S> = S extends Schema<infer T> ? T : never;
interface OptionalSchema<T> extends Schema<T | undefined> {
  readonly optional: true;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function fieldOf(at: string, key: string): string {
  if (IDENTIFIER.test(key) && key.length <= 64) return `${at}.${key}`;
  const shown = key.length > 64 ? `${key.slice(0, 64)}…` : key;
  return `${at}[${JSON.stringify(shown)}]`;
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

interface StringRules {
  min?: number;
  /** Maximum length in UTF-8 bytes. */
  maxBytes: number;
  pattern?: RegExp;
  /** Shown when `pattern` does not match. */
  patternHint?: string;
  /** Extra check: the reason the value is bad, or null. */
  check?: (s: string) => string | null;
}

export function str(rules: StringRules): Schema<string> {
  return {
    parse(v, at) {
      if (typeof v !== 'string') throw new SchemaError(at, `expected a string, got ${kindOf(v)}`);
      if (v.length < (rules.min ?? 0)) throw new SchemaError(at, v.length === 0 ? 'empty' : `shorter than ${rules.min}`);
      if (v.length > rules.maxBytes || utf8Bytes(v) > rules.maxBytes) throw new SchemaError(at, `longer than ${rules.maxBytes} bytes`);
      if (rules.pattern !== undefined && !rules.pattern.test(v)) throw new SchemaError(at, rules.patternHint ?? `does not match ${rules.pattern}`);
      const problem = rules.check?.(v) ?? null;
      if (problem !== null) throw new SchemaError(at, problem);
      return v;
    },
  };
}

export function int(min: number, max: number = Number.MAX_SAFE_INTEGER): Schema<number> {
  return {
    parse(v, at) {
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new SchemaError(at, `expected an integer, got ${typeof v === 'number' ? v : kindOf(v)}`);
      if (v < min || v > max) throw new SchemaError(at, `expected an integer ${min}..${max}, got ${v}`);
      return v;
    },
  };
}

export const bool: Schema<boolean> = {
  parse(v, at) {
    if (typeof v !== 'boolean') throw new SchemaError(at, `expected a boolean, got ${kindOf(v)}`);
    return v;
  },
};

export function oneOf<const T extends string | number>(...values: T[]): Schema<T> {
  return {
    parse(v, at) {
      if (!(values as unknown[]).includes(v)) throw new SchemaError(at, `expected ${values.map((x) => JSON.stringify(x)).join(' | ')}`);
      return v as T;
    },
  };
}

export function nullable<T>(s: Schema<T>): Schema<T | null> {
  return { parse: (v, at) => (v === null ? null : s.parse(v, at)) };
}

export function optional<T>(s: Schema<T>): OptionalSchema<T> {
  return { optional: true, parse: (v, at) => (v === undefined ? undefined : s.parse(v, at)) };
}

export function arrayOf<T>(item: Schema<T>, min: number, max: number): Schema<T[]> {
  return {
    parse(v, at) {
      if (!Array.isArray(v)) throw new SchemaError(at, `expected an array, got ${kindOf(v)}`);
      if (v.length < min) throw new SchemaError(at, `expected at least ${min} item${min === 1 ? '' : 's'}, got ${v.length}`);
      if (v.length > max) throw new SchemaError(at, `expected at most ${max} items, got ${v.length}`);
      return v.map((x, i) => item.parse(x, `${at}[${i}]`));
    },
  };
}

export function tuple<const S extends readonly Schema<unknown>[]>(...items: S): Schema<{ -readonly [K in keyof S]: Infer<S[K]> }> {
  return {
    parse(v, at) {
      if (!Array.isArray(v) || v.length !== items.length) throw new SchemaError(at, `expected an array of ${items.length}`);
      return items.map((s, i) => s.parse(v[i], `${at}[${i}]`)) as { -readonly [K in keyof S]: Infer<S[K]> };
    },
  };
}

type Shape = Record<string, Schema<unknown>>;
type ObjectOf<S extends Shape> = {
  [K in keyof S as S[K] extends OptionalSchema<unknown> ? never : K]: Infer<S[K]>;
} & {
  [K in keyof S as S[K] extends OptionalSchema<unknown> ? K : never]?: Exclude<Infer<S[K]>, undefined>;
};

/** An object with exactly these keys: a missing required key or any unknown key is an error. */
export function obj<const S extends Shape>(shape: S): Schema<ObjectOf<S>> {
  const keys = Object.keys(shape);
  return {
    parse(v, at) {
      if (!isPlainObject(v)) throw new SchemaError(at, `expected an object, got ${kindOf(v)}`);
      for (const key of Object.keys(v)) {
        if (!Object.prototype.hasOwnProperty.call(shape, key)) throw new SchemaError(fieldOf(at, key), 'unknown key');
      }
      const out: Record<string, unknown> = {};
      for (const key of keys) {
        const s = shape[key] as Schema<unknown> & { optional?: true };
        const present = Object.prototype.hasOwnProperty.call(v, key);
        if (!present) {
          if (s.optional === true) continue;
          throw new SchemaError(fieldOf(at, key), 'missing');
        }
        const parsed = s.parse(v[key], fieldOf(at, key));
        if (parsed !== undefined) out[key] = parsed;
      }
      return out as ObjectOf<S>;
    },
  };
}

/** One of several object schemas, chosen by the string value of `tag` in the input. */
export function union<const M extends Record<string, Schema<unknown>>>(tag: string, variants: M): Schema<Infer<M[keyof M]>> {
  const names = Object.keys(variants);
  return {
    parse(v, at) {
      if (!isPlainObject(v)) throw new SchemaError(at, `expected an object, got ${kindOf(v)}`);
      const t = v[tag];
      if (typeof t !== 'string' || !Object.prototype.hasOwnProperty.call(variants, t)) {
        throw new SchemaError(fieldOf(at, tag), `expected ${names.map((n) => JSON.stringify(n)).join(' | ')}`);
      }
      return (variants[t] as Schema<unknown>).parse(v, at) as Infer<M[keyof M]>;
    },
  };
}

/** An object used as a map: every key checked by `key`, every value by `value`, at most `maxKeys`. */
export function record<T>(key: Schema<string>, value: Schema<T>, maxKeys: number): Schema<Record<string, T>> {
  return {
    parse(v, at) {
      if (!isPlainObject(v)) throw new SchemaError(at, `expected an object, got ${kindOf(v)}`);
      const entries = Object.keys(v);
      if (entries.length > maxKeys) throw new SchemaError(at, `expected at most ${maxKeys} keys, got ${entries.length}`);
      const out: Record<string, T> = Object.create(null) as Record<string, T>;
      for (const k of entries) {
        const field = fieldOf(at, k);
        key.parse(k, field);
        out[k] = value.parse(v[k], field);
      }
      return { ...out };
    },
  };
}

/** Any JSON object, not looked into (control-socket results, whose shape belongs to the daemon). */
export const anyObject: Schema<Record<string, unknown>> = {
  parse(v, at) {
    if (!isPlainObject(v)) throw new SchemaError(at, `expected an object, got ${kindOf(v)}`);
    return v;
  },
};

// ---------------------------------------------------------------------------------------------
// The vocabulary on the wire.

/** A folder-relative path from the network: checkRelativePath's rules (`.systemsync/` refused). */
const relPath = str({ min: 1, maxBytes: 4096, check: (s) => pathProblem(s) });
/** Folder names: letters, digits, "._-", at most 64, no leading dot (the config rule). */
const folderName = str({ min: 1, maxBytes: 64, pattern: /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/, patternHint: 'expected letters, digits, "._-", not starting with a dot' });
/** Node names: letters, digits, "._-", at most 64, starting with a letter or digit (host names fit). */
const nodeName = str({ min: 1, maxBytes: 64, pattern: /^[A-Za-z0-9][A-Za-z0-9._-]*$/, patternHint: 'expected letters, digits, "._-", starting with a letter or digit' });
/** An absolute path on the server (SFTP reads there). */
const absPath = str({ min: 1, maxBytes: 4096, check: (s) => (!s.startsWith('/') ? 'expected an absolute path' : s.includes('\0') ? 'NUL byte' : null) });
const seq = int(0);
const baseSeq = nullable(int(0));
const uploadName = nullable(str({ min: 1, maxBytes: 128, pattern: /^[A-Za-z0-9._-]+$/, patternHint: 'expected a temp file name (letters, digits, "._-")', check: (s) => (s === '.' || s === '..' ? 'dot name' : null) }));

/** A bundle holds at most this many files, of at most BUNDLE_FILE_MAX bytes each, MAX_BUNDLE_BYTES in all. */
export const MAX_BUNDLE_FILES = 1000;
export const BUNDLE_FILE_MAX = 64 * 1024;
export const MAX_BUNDLE_BYTES = 16 * 1024 * 1024;

const contentHash = str({ maxBytes: 64, pattern: /^[0-9a-f]{64}$/, patternHint: 'expected 64 lowercase hex digits' });
/** A file in a bundle: at most BUNDLE_FILE_MAX bytes (bigger files travel on their own). */
const bundlePart: Schema<BundlePart> = obj({ offset: int(0, MAX_BUNDLE_BYTES), length: int(0, BUNDLE_FILE_MAX) });

/** Mode bits as sent (0..0o7777), kept to the permission bits: setuid, setgid and sticky never travel. */
const modeBits: Schema<number> = { parse: (v, at) => permissionBits(int(0, 0o7777).parse(v, at)) };

const entrySchema: Schema<Entry> = union('type', {
  file: obj({ type: oneOf('file'), size: int(0), mtime: int(Number.MIN_SAFE_INTEGER), mode: modeBits, hash: contentHash }),
  dir: obj({ type: oneOf('dir'), mode: modeBits }),
  symlink: obj({ type: oneOf('symlink'), target: str({ min: 1, maxBytes: 4096, check: (s) => (s.includes('\0') ? 'NUL byte' : null) }) }),
});

const pushOpSchema: Schema<PushOp> = union('op', {
  put: obj({ op: oneOf('put'), path: relPath, base: baseSeq, entry: entrySchema, upload: uploadName, part: optional(bundlePart), delta: optional(bool) }),
  delete: obj({ op: oneOf('delete'), path: relPath, base: baseSeq }),
  rename: obj({ op: oneOf('rename'), from: relPath, to: relPath, base: baseSeq, toBase: baseSeq, entry: entrySchema }),
});

const versionShape = { seq, entry: nullable(entrySchema), origin: nodeName, from: optional(relPath) };
const versionSchema: Schema<Version> = obj(versionShape);
const changeSchema: Schema<Change> = obj({ path: relPath, ...versionShape });

const MAX_MOVED = 1_000_000;
const pushResultSchema: Schema<PushResult> = union('status', {
  ok: obj({ status: oneOf('ok'), seq, moved: optional(arrayOf(tuple(relPath, seq), 0, MAX_MOVED)) }),
  same: obj({ status: oneOf('same'), seq, entry: nullable(entrySchema) }),
  conflict: obj({ status: oneOf('conflict'), copy: relPath, copySeq: seq, current: versionSchema }),
  stale: obj({ status: oneOf('stale'), current: nullable(versionSchema) }),
  error: obj({ status: oneOf('error'), code: str({ min: 1, maxBytes: 64, pattern: /^[A-Za-z0-9_.-]+$/ }), message: str({ maxBytes: 4096 }), permanent: bool }),
});

export const MAX_PUSH_OPS = 1000;
export const MAX_CHANGES_LIMIT = 5000;
export const MAX_FOLDERS = 1000;
export const PROTOCOL_VERSION = 1;

/** `hello`: the first request of a client session. */
export interface HelloParams {
  node: string;
  folders: string[];
  protocol: 1;
}
/** Per folder, where the server keeps it and where the feed stands. */
export interface FolderInfo {
  root: string;
  tmp: string;
  head: number;
  cursor: number;
  floor: number;
}
export interface HelloResult {
  server: string;
  folders: Record<string, FolderInfo>;
  missing: string[];
  /** Embedded endpoint: folders served here that this client may not use (`[access]`). */
  denied?: string[];
}
export interface PushParams {
  folder: string;
  ops: PushOp[];
}
export interface PushResponse {
  results: PushResult[];
}
export interface ChangesParams {
  folder: string;
  after: number;
  limit: number;
}
export interface ChangesResult {
  changes: Change[];
  head: number;
  reset: boolean;
}
/** `bundle`: the files wanted, each by the content hash the client expects. */
export interface BundleParams {
  folder: string;
  files: Array<{ path: string; hash: string }>;
}
/** The temp file (in the folder's tmp dir) holding the contents, and where each one lies; null: not included. */
export interface BundleResult {
  bundle: string | null;
  parts: Array<BundlePart | null>;
}
/** `blocks`: the block list at `blockSize` of the file at `path`, if its content is `hash`. */
export interface BlocksParams {
  folder: string;
  path: string;
  hash: string;
  blockSize: number;
  /** Only if `hash` is the content the server holds at `path` now (a pushing client's base). */
  current?: boolean;
}
/** The raw 32-byte sha256 digests of the blocks in order, base64; null: not that content (or too small). */
export interface BlocksResult {
  blocks: string | null;
}
export interface AckParams {
  folder: string;
  seq: number;
}
export interface ChangedParams {
  folder: string;
  head: number;
  /**
   * Optional, inline page: every change after `after` up to `head` (what `changes(after)` would
   * answer, complete), so that a client whose cursor is `after` needs no `changes` request.
   */
  after?: number;
  changes?: Change[];
}
/** At most this many changes travel inline in a `changed` notification. */
export const MAX_INLINE_CHANGES = 256;
export type EmptyParams = Record<string, never>;

/** `versions`: the versions kept of one path. */
export interface VersionsParams {
  folder: string;
  path: string;
}
/** One kept version (SPEC `versions --json`: id, path, time, size, node; the rest is extra). */
export interface VersionInfoWire {
  id: string;
  path: string;
  time: string;
  size: number;
  /** null: not known (kept before the server recorded who removed it). */
  node: string | null;
  type: 'file' | 'dir';
  because: 'deleted' | 'replaced';
  mtime: string | null;
  mode: number;
  entries?: number;
}
export interface VersionsResult {
  versions: VersionInfoWire[];
  truncated: boolean;
}
export interface RestoreParams {
  folder: string;
  path: string;
  /** null: the newest. */
  version: string | null;
  /** null: at `path`. */
  as: string | null;
}
export interface RestoreResultWire {
  path: string;
  version: string;
  restored: number;
  missing: number;
}
export interface ConflictsParams {
  folder: string;
}
export interface ConflictWire {
  folder: string;
  path: string;
  original: string;
  node: string;
  time: string;
  hasOriginal: boolean;
}
export interface ConflictsResult {
  conflicts: ConflictWire[];
  truncated: boolean;
}
export interface ResolveParams {
  folder: string;
  /** null: every conflict copy of the folder. */
  copy: string | null;
  keep: 'copy' | 'original' | 'newest';
}
export interface ResolveResult {
  count: number;
  resolved: Array<{ copy: string; original: string; kept: 'copy' | 'original' }>;
}
/** Control-socket results belong to the daemon (node.ts); the wire only requires an object. */
export type ControlResult = Record<string, unknown>;

/** Every method: its params and its result (`void` for notifications). */
export interface RpcMethods {
  /** Client → server. Introduces the node; answers per folder where it lives and the feed's state. */
  hello: { params: HelloParams; result: HelloResult };
  /** Client → server. Commits up to 1000 ops; `results` in the same order as `ops`. */
  push: { params: PushParams; result: PushResponse };
  /** Client → server. Versions with seq > `after`, ordered by seq, at most `limit`. */
  changes: { params: ChangesParams; result: ChangesResult };
  /**
   * Client → server. Writes the current contents of small files into one temp file in the
   * folder's tmp dir, for the client to download in one transfer and then remove. A file that is
   * not there, not a regular file, larger than BUNDLE_FILE_MAX or past the size limit gets null.
   */
  bundle: { params: BundleParams; result: BundleResult };
  /**
   * Client → server. The block list of a file the server holds (delta transfer): a pushing client
   * asks for its base, a pulling client for the new version. Servers without it answer
   * method-not-found, and the client sends and fetches whole files.
   */
  blocks: { params: BlocksParams; result: BlocksResult };
  /** Client → server. The client applied everything up to `seq`. */
  ack: { params: AckParams; result: EmptyParams };
  /** Client → server, and control socket. The versions kept of `path`, newest first (bounded: `truncated`). */
  versions: { params: VersionsParams; result: VersionsResult };
  /**
   * Client → server, and control socket. Puts a kept version back as a new change; what is at the
   * target now is kept as a version first. Errors: NO_VERSION, TARGET_IS_DIR, TARGET_IS_FILE, VERSION_GONE.
   */
  restore: { params: RestoreParams; result: RestoreResultWire };
  /** Client → server, and control socket. The folder's live conflict copies, by path (bounded: `truncated`). */
  conflicts: { params: ConflictsParams; result: ConflictsResult };
  /**
   * Client → server, and control socket. Keeps one side of a conflict (of every conflict with
   * `copy: null`); the other side becomes a version. Errors: NOT_A_CONFLICT, TARGET_IS_DIR.
   */
  resolve: { params: ResolveParams; result: ResolveResult };
  /** Server → client notification: the folder's head moved. */
  changed: { params: ChangedParams; result: void };
  /** Control socket: the daemon's status (shape: SPEC `status --json`). */
  status: { params: EmptyParams; result: ControlResult };
  /** Control socket: queued and failed tasks. */
  tasks: { params: EmptyParams; result: ControlResult };
  /** Control socket: retry failed tasks now. */
  retry: { params: EmptyParams; result: ControlResult };
  /** Control socket: graceful stop. */
  stop: { params: EmptyParams; result: ControlResult };
}
export type MethodName = keyof RpcMethods;
export type ParamsOf<M extends MethodName> = RpcMethods[M]['params'];
export type ResultOf<M extends MethodName> = RpcMethods[M]['result'];

const emptyParams: Schema<EmptyParams> = obj({}) as Schema<EmptyParams>;

/** Listings are cut well below the line limit: at most this many items. */
export const MAX_VERSIONS_LISTED = 1000;
export const MAX_CONFLICTS_LISTED = 1000;
export const MAX_RESOLVED_LISTED = 1000;
const versionId = str({ min: 1, maxBytes: 40, pattern: /^\d{8}-\d{6}-\d{1,9}$/, patternHint: 'expected a version id such as 20261123-140501-3' });
const isoTime = str({ min: 1, maxBytes: 40, pattern: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/, patternHint: 'expected an ISO 8601 UTC time' });
const versionInfoSchema: Schema<VersionInfoWire> = obj({
  id: versionId,
  path: relPath,
  time: isoTime,
  size: int(0),
  node: nullable(nodeName),
  type: oneOf('file', 'dir'),
  because: oneOf('deleted', 'replaced'),
  mtime: nullable(isoTime),
  mode: int(0, 0o7777),
  entries: optional(int(0)),
});
const conflictSchema: Schema<ConflictWire> = obj({ folder: folderName, path: relPath, original: relPath, node: str({ min: 1, maxBytes: 255 }), time: isoTime, hasOriginal: bool });

const METHOD_SCHEMAS: { [M in MethodName]: { params: Schema<ParamsOf<M>>; result: Schema<ResultOf<M>> } } = {
  hello: {
    params: obj({ node: nodeName, folders: arrayOf(folderName, 0, MAX_FOLDERS), protocol: oneOf(PROTOCOL_VERSION) }),
    result: obj({
      server: nodeName,
      folders: record(folderName, obj({ root: absPath, tmp: absPath, head: seq, cursor: seq, floor: seq }), MAX_FOLDERS),
      missing: arrayOf(folderName, 0, MAX_FOLDERS),
      denied: optional(arrayOf(folderName, 0, MAX_FOLDERS)),
    }),
  },
  push: {
    params: obj({ folder: folderName, ops: arrayOf(pushOpSchema, 1, MAX_PUSH_OPS) }),
    result: obj({ results: arrayOf(pushResultSchema, 0, MAX_PUSH_OPS) }),
  },
  changes: {
    params: obj({ folder: folderName, after: seq, limit: int(1, MAX_CHANGES_LIMIT) }),
    result: obj({ changes: arrayOf(changeSchema, 0, MAX_CHANGES_LIMIT), head: seq, reset: bool }),
  },
  bundle: {
    params: obj({ folder: folderName, files: arrayOf(obj({ path: relPath, hash: contentHash }), 1, MAX_BUNDLE_FILES) }),
    result: obj({ bundle: uploadName, parts: arrayOf(nullable(bundlePart), 0, MAX_BUNDLE_FILES) }),
  },
  blocks: {
    params: obj({ folder: folderName, path: relPath, hash: contentHash, blockSize: int(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE), current: optional(bool) }),
    result: obj({ blocks: nullable(str({ maxBytes: Math.ceil((MAX_BLOCKS * BLOCK_HASH_BYTES) / 3) * 4, pattern: /^[A-Za-z0-9+/]*={0,2}$/, patternHint: 'expected base64' })) }),
  },
  ack: { params: obj({ folder: folderName, seq }), result: emptyParams },
  changed: {
    params: obj({ folder: folderName, head: seq, after: optional(seq), changes: optional(arrayOf(changeSchema, 0, MAX_INLINE_CHANGES)) }),
    result: { parse: () => undefined },
  },
  versions: {
    params: obj({ folder: folderName, path: relPath }),
    result: obj({ versions: arrayOf(versionInfoSchema, 0, MAX_VERSIONS_LISTED), truncated: bool }),
  },
  restore: {
    params: obj({ folder: folderName, path: relPath, version: nullable(versionId), as: nullable(relPath) }),
    result: obj({ path: relPath, version: versionId, restored: int(0), missing: int(0) }),
  },
  conflicts: {
    params: obj({ folder: folderName }),
    result: obj({ conflicts: arrayOf(conflictSchema, 0, MAX_CONFLICTS_LISTED), truncated: bool }),
  },
  resolve: {
    params: obj({ folder: folderName, copy: nullable(relPath), keep: oneOf('copy', 'original', 'newest') }),
    result: obj({ count: int(0), resolved: arrayOf(obj({ copy: relPath, original: relPath, kept: oneOf('copy', 'original') }), 0, MAX_RESOLVED_LISTED) }),
  },
  status: { params: emptyParams, result: anyObject },
  tasks: { params: emptyParams, result: anyObject },
  retry: { params: emptyParams, result: anyObject },
  stop: { params: emptyParams, result: anyObject },
};

function isMethodName(name: string): name is MethodName {
  return Object.prototype.hasOwnProperty.call(METHOD_SCHEMAS, name);
}

/** Validates `params` of `method` as they arrive on the wire. @throws SchemaError naming the field. */
export function validateParams<M extends MethodName>(method: M, params: unknown): ParamsOf<M> {
  return METHOD_SCHEMAS[method].params.parse(params === undefined ? {} : params, 'params');
}

/** Validates the `result` of `method`. @throws SchemaError naming the field ("result.changes[2].path"). */
export function validateResult<M extends MethodName>(method: M, result: unknown): ResultOf<M> {
  return METHOD_SCHEMAS[method].result.parse(result, 'result');
}

// ---------------------------------------------------------------------------------------------
// Errors on the wire.

/** Our numeric codes, outside JSON-RPC's reserved -32768..-32000. Unlisted typed codes use APP_ERROR. */
export const RPC_ERROR_CODES: Readonly<Record<string, number>> = Object.freeze({
  APP_ERROR: -33000,
  BAD_PATH: -33001,
  UNSAFE_PATH: -33002,
  NOT_A_DIRECTORY: -33003,
  ROOT_MISSING: -33004,
  UNKNOWN_FOLDER: -33010,
  FOLDER_PAUSED: -33011,
  NO_HELLO: -33012,
  NODE_NAME_MISMATCH: -33014,
  RPC_TIMEOUT: -33100,
  RPC_CLOSED: -33101,
});

const STANDARD_CODES: Readonly<Record<number, string>> = Object.freeze({
  [JSONRPCErrorCode.ParseError]: 'RPC_PARSE_ERROR',
  [JSONRPCErrorCode.InvalidRequest]: 'RPC_INVALID_REQUEST',
  [JSONRPCErrorCode.MethodNotFound]: 'RPC_METHOD_NOT_FOUND',
  [JSONRPCErrorCode.InvalidParams]: 'INVALID_PARAMS',
  [JSONRPCErrorCode.InternalError]: 'RPC_INTERNAL',
});

const STRING_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

/** An error answered by the peer. `code` is the stable string code; `rpcCode` the numeric one. */
export class RemoteError extends SyncError {
  constructor(
    code: string,
    message: string,
    readonly rpcCode: number,
    readonly data: unknown,
  ) {
    super(code, message);
  }
}

/** The connection closed before (or while) a request was answered. code 'RPC_CLOSED'. */
export class RpcClosedError extends SyncError {
  constructor(reason: string) {
    super('RPC_CLOSED', `RPC connection closed: ${reason}`);
  }
}

/** No answer in time. code 'RPC_TIMEOUT'. */
export class RpcTimeoutError extends SyncError {
  constructor(method: string, ms: number) {
    super('RPC_TIMEOUT', `${method}: no answer within ${ms} ms`);
  }
}

type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type RpcLog = (level: LogLevel, msg: string) => void;

/**
 * Maps a handler's error to a JSON-RPC error: a SyncError (or any error with a stable
 * upper-case string `code`, e.g. RemoteError) → our numeric code with data {code}; a
 * SchemaError → -32602; a JSONRPCErrorException passes through; anything else → -32603 with a
 * generic message (the detail goes to `log`, never to the peer).
 */
export function errorToRpc(err: unknown, log?: RpcLog): JSONRPCErrorException {
  if (err instanceof JSONRPCErrorException) return err;
  if (err instanceof SchemaError) {
    return new JSONRPCErrorException(err.message, JSONRPCErrorCode.InvalidParams, { code: err.code, field: err.field, reason: err.reason });
  }
  if (err instanceof SyncError && STRING_CODE.test(err.code)) {
    const numeric = RPC_ERROR_CODES[err.code] ?? (err instanceof RemoteError && err.rpcCode <= -32769 ? err.rpcCode : RPC_ERROR_CODES.APP_ERROR);
    return new JSONRPCErrorException(err.message.slice(0, 4096), numeric as number, { code: err.code });
  }
  log?.('error', `unexpected error in an RPC handler: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  return new JSONRPCErrorException('Internal error', JSONRPCErrorCode.InternalError, { code: 'RPC_INTERNAL' });
}

/** The reverse of errorToRpc on the calling side: a RemoteError carrying the stable string `code`. */
export function rpcToError(e: unknown): Error {
  if (e instanceof SyncError) return e;
  const o = e as { code?: unknown; message?: unknown; data?: unknown } | null;
  if (o !== null && typeof o === 'object' && typeof o.code === 'number') {
    const data = o.data as { code?: unknown } | undefined;
    const message = typeof o.message === 'string' ? o.message.slice(0, 4096) : 'remote error';
    const fromData = isPlainObject(data) && typeof data.code === 'string' && STRING_CODE.test(data.code) ? data.code : null;
    const fromTable = Object.entries(RPC_ERROR_CODES).find(([, n]) => n === o.code)?.[0];
    const code = fromData ?? STANDARD_CODES[o.code] ?? fromTable ?? 'RPC_ERROR';
    return new RemoteError(code, message, o.code, o.data);
  }
  return new RemoteError('RPC_ERROR', e instanceof Error ? e.message : 'remote error', 0, undefined);
}

// ---------------------------------------------------------------------------------------------
// The peer: one stream, both directions.

/** A method implementation: params are already validated; what it returns is validated too. */
export type Handler<P, R, Ctx> = (params: P, ctx: Ctx, peer: RpcPeer) => Promise<R> | R;
/** A handler may answer a PreparedResult: validated and serialised once, sent as is (a shared page). */
export type Handlers<Ctx> = { [M in MethodName]?: Handler<ParamsOf<M>, ResultOf<M> | PreparedResult, Ctx> };

/** A result validated and serialised once, for many peers (e.g. one page of the change feed). */
export class PreparedResult {
  private constructor(readonly json: string) {}

  /** @throws SchemaError when `result` does not fit `method`'s result schema. */
  static of<M extends MethodName>(method: M, result: ResultOf<M>): PreparedResult {
    return new PreparedResult(JSON.stringify(validateResult(method, result)));
  }
}

/** A notification validated and serialised once, for `peer.sendPrepared` on many peers. */
export function prepareNotification<M extends MethodName>(method: M, params: ParamsOf<M>): string {
  return JSON.stringify({ jsonrpc: '2.0', method, params: validateParams(method, params) });
}

export interface RpcPeerOptions<Ctx> {
  handlers: Handlers<Ctx>;
  context: Ctx;
  log?: RpcLog;
  /** A longer line drops the connection (abuse). Default 8 MiB. */
  maxLineBytes?: number;
  /** Incoming requests/notifications handled at once; more wait (reading pauses). Default 32. */
  maxInFlight?: number;
  /** Default timeout of outgoing requests. Default 120 s; 0 means none. */
  requestTimeoutMs?: number;
  /** Prefix of log lines (e.g. the peer's name). */
  name?: string;
}

export interface RpcPeer {
  /**
   * Calls `method` on the other side. Params are validated before sending (a bad one rejects
   * with SchemaError), the result after receiving (a bad one rejects with RemoteError
   * 'BAD_RESPONSE'). Rejects with RemoteError for an error answer, RpcTimeoutError, or
   * RpcClosedError (at once when the stream is already closed).
   */
  request<M extends MethodName>(method: M, params: ParamsOf<M>, timeoutMs?: number): Promise<ResultOf<M>>;
  /** Sends a notification (no answer). Dropped, with a log line, when closed or invalid. */
  notify<M extends MethodName>(method: M, params: ParamsOf<M>): void;
  /** Ends the stream; pending requests reject with RpcClosedError. Idempotent. */
  close(): void;
  /** Sends a line made by prepareNotification (dropped when closed). */
  sendPrepared(line: string): void;
  readonly isClosed: boolean;
  /** Resolves once the connection is closed, for whatever reason. */
  readonly closed: Promise<void>;
}

export const DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024;
const MAX_ID_LENGTH = 256;
const ENVELOPE_KEYS = new Set(['jsonrpc', 'method', 'params', 'id', 'result', 'error']);

function isValidId(id: unknown): id is JSONRPCID {
  return id === null || (typeof id === 'number' && Number.isFinite(id)) || (typeof id === 'string' && id.length <= MAX_ID_LENGTH);
}

/**
 * Runs JSON-RPC over `stream` (newline-delimited JSON), serving `handlers` with `context` and
 * calling the other side through the returned peer. Never throws on bad input: bad messages get
 * JSON-RPC errors, an over-long line drops the connection.
 */
export function createRpcPeer<Ctx>(stream: Duplex, opts: RpcPeerOptions<Ctx>): RpcPeer {
  const maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const maxInFlight = opts.maxInFlight ?? 32;
  const defaultTimeout = opts.requestTimeoutMs ?? 120_000;
  const prefix = opts.name === undefined ? 'rpc' : `rpc ${opts.name}`;
  const log: RpcLog = (level, msg) => opts.log?.(level, `${prefix}: ${msg}`);

  let isClosed = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const waiters = new Set<(err: Error) => void>();

  const writeLine = (message: unknown): void => {
    if (stream.destroyed || !stream.writable) return;
    const prepared = (message as { result?: unknown } | null)?.result;
    if (prepared instanceof PreparedResult) {
      stream.write(`{"jsonrpc":"2.0","id":${JSON.stringify((message as { id: JSONRPCID }).id)},"result":${prepared.json}}\n`);
      return;
    }
    let text: string;
    try {
      text = JSON.stringify(message);
    } catch (err) {
      log('error', `cannot serialise an outgoing message: ${(err as Error).message}`);
      return;
    }
    stream.write(`${text}\n`);
  };

  const sac = new JSONRPCServerAndClient<Ctx, void>(
    new JSONRPCServer<Ctx>({ errorListener: (msg) => log('warn', msg) }),
    new JSONRPCClient<void>((payload) => {
      if (isClosed) throw new RpcClosedError('closed');
      writeLine(payload);
    }),
    { errorListener: (msg) => log('warn', msg) },
  );

  let peer: RpcPeer;

  for (const name of Object.keys(opts.handlers) as MethodName[]) {
    const handler = opts.handlers[name] as Handler<unknown, unknown, Ctx> | undefined;
    if (handler === undefined) continue;
    const schemas = METHOD_SCHEMAS[name] as { params: Schema<unknown>; result: Schema<unknown> };
    sac.addMethodAdvanced(name, async (request: JSONRPCRequest, ctx: Ctx): Promise<JSONRPCResponse | null> => {
      const id = request.id;
      const answer = (err: JSONRPCErrorException): JSONRPCResponse | null =>
        id === undefined ? null : createJSONRPCErrorResponse(id, err.code, err.message, err.data);
      let params: unknown;
      try {
        params = schemas.params.parse(request.params === undefined ? {} : request.params, 'params');
      } catch (err) {
        log('warn', `${name}: refused: ${(err as Error).message}`);
        return answer(errorToRpc(err, log));
      }
      let result: unknown;
      try {
        result = await handler(params, ctx, peer);
      } catch (err) {
        if (err instanceof SyncError) log('info', `${name}: ${err.code}: ${err.message}`);
        return answer(errorToRpc(err, log));
      }
      if (id === undefined) return null;
      if (result instanceof PreparedResult) return createJSONRPCSuccessResponse(id, result as unknown as null);
      try {
        result = schemas.result.parse(result, 'result');
      } catch (err) {
        log('error', `${name}: handler returned an invalid result: ${(err as Error).message}`);
        return answer(new JSONRPCErrorException('Internal error', JSONRPCErrorCode.InternalError, { code: 'RPC_INTERNAL' }));
      }
      return createJSONRPCSuccessResponse(id, result === undefined ? null : result);
    });
  }

  // --- incoming messages ---------------------------------------------------------------------

  const invalidRequest = (id: JSONRPCID, why: string): void => {
    log('warn', `invalid request: ${why}`);
    writeLine(createJSONRPCErrorResponse(id, JSONRPCErrorCode.InvalidRequest, `Invalid Request: ${why}`, { code: 'RPC_INVALID_REQUEST' }));
  };

  let inFlight = 0;
  const queue: Buffer[] = [];

  const handleRequest = (msg: Record<string, unknown>): void => {
    inFlight++;
    sac.server
      .receive(msg as unknown as JSONRPCRequest, opts.context)
      .then(
        (response) => {
          if (response !== null) writeLine(response);
        },
        (err: unknown) => {
          log('error', `dispatch failed: ${(err as Error)?.message ?? String(err)}`);
          if (msg.id !== undefined) writeLine(createJSONRPCErrorResponse(msg.id as JSONRPCID, JSONRPCErrorCode.InternalError, 'Internal error'));
        },
      )
      .then(() => {
        inFlight--;
        pump();
      });
  };

  const handleMessage = (msg: unknown): void => {
    if (Array.isArray(msg)) return invalidRequest(null, 'batch requests are not supported');
    if (!isPlainObject(msg)) return invalidRequest(null, `expected an object, got ${kindOf(msg)}`);
    const id = msg.id;
    const replyId = isValidId(id) ? id : null;
    if (msg.jsonrpc !== '2.0') return invalidRequest(replyId, 'jsonrpc must be "2.0"');
    for (const key of Object.keys(msg)) {
      if (!ENVELOPE_KEYS.has(key)) return invalidRequest(replyId, `unknown member ${fieldOf('', key).replace(/^\./, '')}`);
    }
    if ('method' in msg) {
      if ('result' in msg || 'error' in msg) return invalidRequest(replyId, 'a request has no result or error');
      if (id !== undefined && !isValidId(id)) return invalidRequest(null, 'id must be a string, a number or null');
      if (typeof msg.method !== 'string') return invalidRequest(replyId, 'method must be a string');
      if (!isMethodName(msg.method) || opts.handlers[msg.method] === undefined) {
        if (id !== undefined) {
          log('warn', `method not found: ${JSON.stringify(msg.method.slice(0, 64))}`);
          writeLine(createJSONRPCErrorResponse(id as JSONRPCID, JSONRPCErrorCode.MethodNotFound, 'Method not found', { code: 'RPC_METHOD_NOT_FOUND' }));
        }
        return;
      }
      return handleRequest(msg);
    }
    if ('result' in msg || 'error' in msg) {
      // A response to one of our requests; nothing is ever answered to a response.
      const valid =
        isValidId(id) &&
        ('result' in msg
          ? !('error' in msg)
          : isPlainObject(msg.error) && Number.isSafeInteger(msg.error.code) && typeof msg.error.message === 'string');
      if (!valid) {
        log('warn', 'ignored a malformed response');
        return;
      }
      sac.client.receive(('result' in msg && msg.result === undefined ? { ...msg, result: null } : msg) as unknown as JSONRPCResponse);
      return;
    }
    return invalidRequest(replyId, 'neither a request nor a response');
  };

  const handleLine = (line: Buffer): void => {
    let end = line.length;
    if (end > 0 && line[end - 1] === 0x0d) end--;
    const text = line.toString('utf8', 0, end);
    if (text.trim() === '') return;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      log('warn', `parse error in a ${end}-byte line`);
      writeLine(createJSONRPCErrorResponse(null, JSONRPCErrorCode.ParseError, 'Parse error', { code: 'RPC_PARSE_ERROR' }));
      return;
    }
    try {
      handleMessage(msg);
    } catch (err) {
      log('error', `failed to handle a message: ${(err as Error)?.message ?? String(err)}`);
    }
  };

  let paused = false;
  const pump = (): void => {
    while (queue.length > 0 && inFlight < maxInFlight && !stream.destroyed && !stream.writableNeedDrain) {
      handleLine(queue.shift() as Buffer);
    }
    const shouldPause = queue.length > 0;
    if (shouldPause && !paused) {
      paused = true;
      stream.pause();
    } else if (!shouldPause && paused) {
      paused = false;
      stream.resume();
    }
  };

  let partial: Buffer[] = [];
  let partialBytes = 0;

  const dropForAbuse = (why: string): void => {
    log('warn', `dropping the connection: ${why}`);
    partial = [];
    queue.length = 0;
    markClosed(why);
    stream.destroy();
  };

  stream.on('data', (chunk: Buffer | string) => {
    if (isClosed && stream.destroyed) return;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = buf.subarray(start, nl);
      if (partialBytes + piece.length > maxLineBytes) return dropForAbuse(`line longer than ${maxLineBytes} bytes`);
      queue.push(partialBytes === 0 ? piece : Buffer.concat([...partial, piece]));
      partial = [];
      partialBytes = 0;
      start = nl + 1;
    }
    if (start < buf.length) {
      const rest = buf.subarray(start);
      partialBytes += rest.length;
      if (partialBytes > maxLineBytes) return dropForAbuse(`line longer than ${maxLineBytes} bytes`);
      partial.push(rest);
    }
    pump();
  });
  stream.on('drain', pump);

  // --- closing -------------------------------------------------------------------------------

  function markClosed(reason: string): void {
    if (isClosed) return;
    isClosed = true;
    const err = new RpcClosedError(reason);
    for (const reject of [...waiters]) reject(err);
    waiters.clear();
    sac.rejectAllPendingRequests(err.message);
    resolveClosed();
  }

  stream.on('error', (err: Error) => {
    log('warn', `stream error: ${err.message}`);
    markClosed(err.message);
  });
  stream.on('end', () => {
    markClosed('the other side ended the stream');
    const finish = (): void => {
      if (inFlight === 0 && queue.length === 0) stream.end();
      else setTimeout(finish, 50).unref();
    };
    finish();
  });
  stream.on('close', () => markClosed('stream closed'));

  // --- outgoing ------------------------------------------------------------------------------

  peer = {
    get isClosed() {
      return isClosed;
    },
    closed,
    request<M extends MethodName>(method: M, params: ParamsOf<M>, timeoutMs = defaultTimeout): Promise<ResultOf<M>> {
      if (isClosed) return Promise.reject(new RpcClosedError(`cannot send ${method}`));
      let checked: ParamsOf<M>;
      try {
        checked = validateParams(method, params);
      } catch (err) {
        return Promise.reject(err);
      }
      return new Promise<ResultOf<M>>((resolve, reject) => {
        let settled = false;
        const waiter = (err: Error): void => {
          if (!settled) {
            settled = true;
            reject(err);
          }
        };
        waiters.add(waiter);
        const requester =
          timeoutMs > 0
            ? sac.client.timeout(timeoutMs, (id) =>
                createJSONRPCErrorResponse(id, RPC_ERROR_CODES.RPC_TIMEOUT as number, 'timeout', { code: 'RPC_TIMEOUT', local: true }),
              )
            : sac.client;
        requester.request(method, checked).then(
          (result: unknown) => {
            waiters.delete(waiter);
            if (settled) return;
            settled = true;
            try {
              resolve(validateResult(method, result));
            } catch (err) {
              const e = err as SchemaError;
              log('warn', `${method}: invalid result: ${e.message}`);
              reject(new RemoteError('BAD_RESPONSE', `${method}: invalid result: ${e.message}`, 0, { field: e.field }));
            }
          },
          (err: unknown) => {
            waiters.delete(waiter);
            if (settled) return;
            settled = true;
            const data = (err as { data?: { local?: unknown } }).data;
            if (err instanceof JSONRPCErrorException && err.code === RPC_ERROR_CODES.RPC_TIMEOUT && data?.local === true) {
              reject(new RpcTimeoutError(method, timeoutMs));
            } else if (isClosed) {
              reject(new RpcClosedError(`while waiting for ${method}`));
            } else {
              reject(rpcToError(err));
            }
          },
        );
      });
    },
    notify<M extends MethodName>(method: M, params: ParamsOf<M>): void {
      if (isClosed) {
        log('debug', `${method}: not sent, connection closed`);
        return;
      }
      try {
        sac.client.notify(method, validateParams(method, params));
      } catch (err) {
        log('error', `${method}: notification not sent: ${(err as Error).message}`);
      }
    },
    sendPrepared(line: string): void {
      if (isClosed || stream.destroyed || !stream.writable) return;
      stream.write(`${line}\n`);
    },
    close(): void {
      if (isClosed && stream.destroyed) return;
      markClosed('closed locally');
      stream.end();
      setTimeout(() => stream.destroy(), 2000).unref();
    },
  };
  return peer;
}

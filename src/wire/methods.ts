/**
 * The JSON-RPC methods of systemsync: each method's params and result as TypeScript types, and
 * the protocol's limits. The schemas that check them at runtime are in schemas.ts.
 */
import type { BundlePart, Change, PushOp, PushResult } from '../core/types.js';

export const MAX_PUSH_OPS = 1000;
export const MAX_CHANGES_LIMIT = 5000;
export const MAX_FOLDERS = 1000;
export const PROTOCOL_VERSION = 1;

/** A bundle holds at most this many files, of at most BUNDLE_FILE_MAX bytes each, MAX_BUNDLE_BYTES in all. */
export const MAX_BUNDLE_FILES = 1000;
export const BUNDLE_FILE_MAX = 64 * 1024;
export const MAX_BUNDLE_BYTES = 16 * 1024 * 1024;

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

/** Listings are cut well below the line limit: at most this many items. */
export const MAX_VERSIONS_LISTED = 1000;
export const MAX_CONFLICTS_LISTED = 1000;
export const MAX_RESOLVED_LISTED = 1000;

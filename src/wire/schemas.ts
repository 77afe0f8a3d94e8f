/**
 * The schema of every RPC method's params and result, checked on both sides of the wire: paths
 * arriving from the network are always checked, and an answer that does not fit is refused.
 */
import { BLOCK_HASH_BYTES, MAX_BLOCK_SIZE, MAX_BLOCKS, MIN_BLOCK_SIZE } from '../core/blocks.js';
import { permissionBits } from '../core/modes.js';
import { pathProblem } from '../core/paths.js';
import type { BundlePart, Change, Entry, MovedChild, PushOp, PushResult, Version } from '../core/types.js';
import {
  BUNDLE_FILE_MAX,
  MAX_BUNDLE_BYTES,
  MAX_BUNDLE_FILES,
  MAX_CHANGES_LIMIT,
  MAX_CONFLICTS_LISTED,
  MAX_FOLDERS,
  MAX_INLINE_CHANGES,
  MAX_PUSH_OPS,
  MAX_RESOLVED_LISTED,
  MAX_VERSIONS_LISTED,
  PROTOCOL_VERSION,
  type ConflictWire,
  type EmptyParams,
  type MethodName,
  type ParamsOf,
  type ResultOf,
  type VersionInfoWire,
} from './methods.js';
import * as v from 'valibot';
import { anyObject, arrayOf, bool, int, nothing, nullable, obj, oneOf, optional, parse, record, text, tuple, union, type Schema } from './validate.js';

// The vocabulary on the wire.

/** A folder-relative path from the network: checkRelativePath's rules (`.systemsync/` refused). */
const relPath = text({ min: 1, maxBytes: 4096, problem: (s) => pathProblem(s) });
/** Folder names: letters, digits, "._-", at most 64, no leading dot (the config rule). */
const folderName = text({ min: 1, maxBytes: 64, pattern: /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/, patternHint: 'expected letters, digits, "._-", not starting with a dot' });
/** Node names: letters, digits, "._-", at most 64, starting with a letter or digit (host names fit). */
const nodeName = text({ min: 1, maxBytes: 64, pattern: /^[A-Za-z0-9][A-Za-z0-9._-]*$/, patternHint: 'expected letters, digits, "._-", starting with a letter or digit' });
/** An absolute path on the server (SFTP reads there). */
const absPath = text({ min: 1, maxBytes: 4096, problem: (s) => (!s.startsWith('/') ? 'expected an absolute path' : s.includes('\0') ? 'NUL byte' : null) });
const seq = int(0);
const baseSeq = nullable(int(0));
const uploadName = nullable(text({ min: 1, maxBytes: 128, pattern: /^[A-Za-z0-9._-]+$/, patternHint: 'expected a temp file name (letters, digits, "._-")', problem: (s) => (s === '.' || s === '..' ? 'dot name' : null) }));

const contentHash = text({ maxBytes: 64, pattern: /^[0-9a-f]{64}$/, patternHint: 'expected 64 lowercase hex digits' });
/** A file in a bundle: at most BUNDLE_FILE_MAX bytes (bigger files travel on their own). */
const bundlePart: Schema<BundlePart> = obj({ offset: int(0, MAX_BUNDLE_BYTES), length: int(0, BUNDLE_FILE_MAX) });

/** Mode bits as sent (0..0o7777), kept to the permission bits: setuid, setgid and sticky never travel. */
const modeBits: Schema<number> = v.pipe(int(0, 0o7777), v.transform(permissionBits));

const entrySchema: Schema<Entry> = union('type', [
  { type: oneOf('file'), size: int(0), mtime: int(Number.MIN_SAFE_INTEGER), mode: modeBits, hash: contentHash },
  { type: oneOf('dir'), mode: modeBits },
  { type: oneOf('symlink'), target: text({ min: 1, maxBytes: 4096, problem: (s) => (s.includes('\0') ? 'NUL byte' : null) }) },
]);

const pushOpSchema: Schema<PushOp> = union('op', [
  { op: oneOf('put'), path: relPath, base: baseSeq, entry: entrySchema, upload: uploadName, part: optional(bundlePart), delta: optional(bool) },
  { op: oneOf('delete'), path: relPath, base: baseSeq },
  { op: oneOf('rename'), from: relPath, to: relPath, base: baseSeq, toBase: baseSeq, entry: entrySchema },
]);

const versionShape = { seq, entry: nullable(entrySchema), origin: nodeName, from: optional(relPath) };
const versionSchema: Schema<Version> = obj(versionShape);
const changeSchema: Schema<Change> = obj({ path: relPath, ...versionShape });

const MAX_MOVED = 1_000_000;
/** [new path, seq there, seq before the move]; a server older than `before` sends the first two. */
const movedChild: Schema<MovedChild> = v.union([tuple(relPath, seq, seq), tuple(relPath, seq)], 'expected [path, seq, before] or [path, seq]');
const pushResultSchema: Schema<PushResult> = union('status', [
  { status: oneOf('ok'), seq, moved: optional(arrayOf(movedChild, 0, MAX_MOVED)) },
  { status: oneOf('same'), seq, entry: nullable(entrySchema) },
  { status: oneOf('conflict'), copy: relPath, copySeq: seq, current: versionSchema },
  { status: oneOf('stale'), current: nullable(versionSchema) },
  { status: oneOf('error'), code: text({ min: 1, maxBytes: 64, pattern: /^[A-Za-z0-9_.-]+$/ }), message: text({ maxBytes: 4096 }), permanent: bool },
]);

const emptyParams: Schema<EmptyParams> = obj({}) as unknown as Schema<EmptyParams>;
const versionId = text({ min: 1, maxBytes: 40, pattern: /^\d{8}-\d{6}-\d{1,9}$/, patternHint: 'expected a version id such as 20261123-140501-3' });
const isoTime = text({ min: 1, maxBytes: 40, pattern: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/, patternHint: 'expected an ISO 8601 UTC time' });
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
const conflictSchema: Schema<ConflictWire> = obj({ folder: folderName, path: relPath, original: relPath, node: text({ min: 1, maxBytes: 255 }), time: isoTime, hasOriginal: bool });

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
    result: obj({ blocks: nullable(text({ maxBytes: Math.ceil((MAX_BLOCKS * BLOCK_HASH_BYTES) / 3) * 4, pattern: /^[A-Za-z0-9+/]*={0,2}$/, patternHint: 'expected base64' })) }),
  },
  ack: { params: obj({ folder: folderName, seq }), result: emptyParams },
  changed: {
    params: obj({ folder: folderName, head: seq, after: optional(seq), changes: optional(arrayOf(changeSchema, 0, MAX_INLINE_CHANGES)) }),
    result: nothing,
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

export function isMethodName(name: string): name is MethodName {
  return Object.prototype.hasOwnProperty.call(METHOD_SCHEMAS, name);
}

/** Validates `params` of `method` as they arrive on the wire. @throws SchemaError naming the field. */
export function validateParams<M extends MethodName>(method: M, params: unknown): ParamsOf<M> {
  return parse(METHOD_SCHEMAS[method].params, params === undefined ? {} : params, 'params');
}

/** Validates the `result` of `method`. @throws SchemaError naming the field ("result.changes[2].path"). */
export function validateResult<M extends MethodName>(method: M, result: unknown): ResultOf<M> {
  return parse(METHOD_SCHEMAS[method].result, result, 'result');
}

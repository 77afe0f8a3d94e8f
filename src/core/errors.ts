/**
 * The root of every error systemsync throws on purpose, in the style of got's `RequestError`:
 * callers branch on the stable upper-case `code`, never on the message text; the underlying
 * error, if any, travels as `cause`. Each layer has its own subclass: `SyncError` (the sync
 * itself), `TransferError` (ssh/errors.ts), `PersistenceError` (persistence.ts), `ConfigError`
 * (cli/config.ts), and a few single-purpose ones.
 *
 * Only a `SyncError` is answered to a peer with its message (rpc.ts `errorToRpc`); every other
 * error, of this root or not, reaches the peer as a bare internal error, since its message may
 * name local paths.
 */
export class SystemsyncError extends Error {
  /** Stable, upper-case identifier of the failure ('BAD_PATH', 'CONNECT_FAILED', ...). */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A failure of the sync itself (a bad path, an unknown folder, a refused op, a paused folder):
 * what a peer asked for and could not get. Its code and message are answered to the peer.
 */
export class SyncError extends SystemsyncError {}

/** Why a relative path was refused; see `checkRelativePath`. */
export type PathErrorReason =
  | 'not a string'
  | 'empty'
  | 'absolute'
  | 'dot-dot segment'
  | 'dot segment'
  | 'empty segment'
  | 'NUL byte'
  | 'backslash'
  | 'invalid unicode'
  | 'segment too long'
  | 'path too long'
  | 'reserved';

/** A path that is not a safe folder-relative POSIX path. `code` is always 'BAD_PATH'. */
export class PathError extends SyncError {
  readonly reason: PathErrorReason;
  /** The offending value, shortened for display (never the full value of a huge string). */
  readonly shown: string;

  constructor(reason: PathErrorReason, value: unknown) {
    const shown = showValue(value);
    super('BAD_PATH', `bad path ${shown}: ${reason}`);
    this.reason = reason;
    this.shown = shown;
  }
}

/** A short, printable rendering of an untrusted value for error messages. */
export function showValue(value: unknown, max = 80): string {
  if (typeof value !== 'string') return value === null ? 'null' : typeof value;
  const json = JSON.stringify(value.length > max ? value.slice(0, max) : value);
  return value.length > max ? `${json.slice(0, -1)}..."` : json;
}

/** Where one path failed: a client's push or pull of it, or the hub's commit of a pushed op. */
export type FailedStep = 'push' | 'pull' | 'commit';

const EVERY_STEP: readonly FailedStep[] = ['push', 'pull', 'commit'];

/**
 * The failure codes no retry can fix (a name the file system or the wire refuses, a
 * permission), and the steps at which they are permanent. The exceptions:
 * - UNSAFE_PATH and ENOTDIR are never permanent: they mean a parent that is not a directory,
 *   here or on the hub (a file or link one side put there, not yet synced). That is a state in
 *   flight, not a fact about the path, so it is retried: once the parent's own sync settles (the
 *   directory comes back, or one side's version is kept as a conflict copy) the op goes through
 *   or finds nothing left to do. (Were it permanent, a child's push refused that way would stay
 *   failed for ever after every tree agreed.)
 * - EROFS and EISDIR are permanent on the hub only: on a client, EISDIR is likewise a local
 *   change in flight, and a client's read-only mount is retried.
 * - PERMISSION_DENIED is SFTP's name for a permission failure (a client's transfer).
 */
const PERMANENT_AT: Readonly<Record<string, readonly FailedStep[]>> = {
  EACCES: EVERY_STEP,
  EPERM: EVERY_STEP,
  ENAMETOOLONG: EVERY_STEP,
  EILSEQ: EVERY_STEP,
  EINVAL: EVERY_STEP,
  BAD_PATH: EVERY_STEP,
  PERMISSION_DENIED: ['push', 'pull'],
  EROFS: ['commit'],
  EISDIR: ['commit'],
};

/**
 * Whether one path's failure with `code` at `step` is permanent (reported, never retried) or
 * retried with backoff. The hub's answer for a pushed op travels in its result (`permanent`).
 */
export function isPermanentFailure(code: unknown, step: FailedStep): boolean {
  return typeof code === 'string' && Object.hasOwn(PERMANENT_AT, code) && (PERMANENT_AT[code] as readonly FailedStep[]).includes(step);
}

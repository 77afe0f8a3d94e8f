/** The errors of the SSH layer: every failure is a `TransferError` with a stable string `code`; callers branch on `code`. */
import { SystemsyncError } from '../core/errors.js';

/** Base of every error this module throws. `code` is stable; the message is for people. */
export class TransferError extends SystemsyncError {}

/** TCP connect failed, timed out, or the SSH handshake broke off. */
export class ConnectError extends TransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONNECT_FAILED', message, options);
  }
}

/** The server refused every authentication method we offered (the key is not authorized). */
export class AuthFailedError extends TransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('AUTH_FAILED', message, options);
  }
}

/** The private key could not be read or parsed (missing file, wrong format, passphrase). */
export class IdentityError extends TransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('IDENTITY_INVALID', message, options);
  }
}

/** known_hosts exists but could not be read, or could not be written under accept-new. */
export class KnownHostsError extends TransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KNOWN_HOSTS_UNUSABLE', message, options);
  }
}

/** host_key_check = yes and known_hosts has no key for this host. */
export class HostKeyUnknownError extends TransferError {
  constructor(
    message: string,
    readonly fingerprint: string,
    /** The line that would trust this key, ready to append to known_hosts. */
    readonly knownHostsLine: string,
  ) {
    super('HOST_KEY_UNKNOWN', message);
  }
}

/** known_hosts lists other keys for this host: refused whatever host_key_check says. */
export class HostKeyChangedError extends TransferError {
  constructor(
    message: string,
    readonly knownFingerprints: string[],
    readonly offeredFingerprint: string,
  ) {
    super('HOST_KEY_CHANGED', message);
  }
}

/** known_hosts trusts this host only through @cert-authority, and ssh2 cannot check host certificates. */
export class HostKeyCertOnlyError extends TransferError {
  constructor(
    message: string,
    readonly fingerprint: string,
    /** The line that would trust this plain key, once checked by hand. */
    readonly knownHostsLine: string,
  ) {
    super('HOST_KEY_CERT_ONLY', message);
  }
}

/** The offered host key is marked @revoked in known_hosts. */
export class HostKeyRevokedError extends TransferError {
  constructor(message: string, readonly fingerprint: string) {
    super('HOST_KEY_REVOKED', message);
  }
}

/** A downloaded file's sha256 differs from the one the sender recorded. The file was removed. */
export class HashMismatchError extends TransferError {
  constructor(
    readonly remotePath: string,
    readonly expectedHash: string,
    readonly actualHash: string,
  ) {
    super('HASH_MISMATCH', `content of ${remotePath} has sha256 ${actualHash}, expected ${expectedHash}`);
  }
}

/** The remote file is longer than the size the caller expected (or allowed): not read past it. */
export class SizeExceededError extends HashMismatchError {
  constructor(remotePath: string, expectedHash: string, readonly limit: number) {
    super(remotePath, expectedHash, `(longer than ${limit} bytes)`);
    this.message = `content of ${remotePath} is longer than the ${limit} bytes expected: not read further`;
  }
}

/** The caller's AbortSignal fired. */
export class TransferAbortedError extends TransferError {
  constructor(what: string, options?: { cause?: unknown }) {
    super('ABORTED', `${what}: aborted`, options);
  }
}

/** A local file could not be read or written; `errno` is Node's code ("ENOENT", "EISDIR", ...). */
export class LocalFileError extends TransferError {
  readonly errno: string | null;
  constructor(message: string, options: { cause: unknown }) {
    super('LOCAL_IO', message, options);
    const cause = options.cause as { code?: unknown } | null;
    this.errno = typeof cause?.code === 'string' ? cause.code : null;
  }
}

/** A stream to a Unix socket on the server could not be opened (no daemon there, not allowed). */
export class StreamOpenError extends TransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STREAM_OPEN_FAILED', message, options);
  }
}

/** The SSH session is closed (or was lost); nothing more can be done on it. */
export class SessionClosedError extends TransferError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SESSION_CLOSED', message, options);
  }
}

export type SftpErrorCode =
  | 'EOF'
  | 'NO_SUCH_FILE'
  | 'PERMISSION_DENIED'
  | 'FAILURE'
  | 'BAD_MESSAGE'
  | 'NO_CONNECTION'
  | 'CONNECTION_LOST'
  | 'OP_UNSUPPORTED';

/**
 * An SFTP request failed. `code` names the SFTP status; `permanent` says whether retrying the same
 * request can help (false for FAILURE and lost connections, true for NO_SUCH_FILE and the like).
 */
export class SftpError extends TransferError {
  declare readonly code: SftpErrorCode;
  constructor(
    code: SftpErrorCode,
    readonly permanent: boolean,
    readonly operation: string,
    readonly remotePath: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

const SFTP_STATUS: ReadonlyArray<{ code: SftpErrorCode; permanent: boolean }> = [
  /* 0 OK */ { code: 'FAILURE', permanent: false },
  /* 1 */ { code: 'EOF', permanent: true },
  /* 2 */ { code: 'NO_SUCH_FILE', permanent: true },
  /* 3 */ { code: 'PERMISSION_DENIED', permanent: true },
  /* 4 */ { code: 'FAILURE', permanent: false },
  /* 5 */ { code: 'BAD_MESSAGE', permanent: true },
  /* 6 */ { code: 'NO_CONNECTION', permanent: false },
  /* 7 */ { code: 'CONNECTION_LOST', permanent: false },
  /* 8 */ { code: 'OP_UNSUPPORTED', permanent: true },
];

/**
 * The one mapping from whatever ssh2's SFTP layer reports (a numeric status `code`, "No response
 * from server" when the channel closed, a thrown "Not connected" or "Server does not support")
 * to an `SftpError`.
 */
export function toSftpError(err: unknown, operation: string, remotePath: string): SftpError {
  if (err instanceof SftpError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const status = (err as { code?: unknown } | null)?.code;
  let kind: { code: SftpErrorCode; permanent: boolean };
  if (typeof status === 'number' && SFTP_STATUS[status] !== undefined) kind = SFTP_STATUS[status]!;
  else if (/does not support/i.test(message)) kind = { code: 'OP_UNSUPPORTED', permanent: true };
  else if (/no response from server|not connected|channel.*clos|connection lost/i.test(message)) {
    kind = { code: 'CONNECTION_LOST', permanent: false };
  } else kind = { code: 'FAILURE', permanent: false };
  return new SftpError(kind.code, kind.permanent, operation, remotePath, `sftp ${operation} ${remotePath}: ${message}`, {
    cause: err,
  });
}

// ---------------------------------------------------------------------------------------------
// Connecting

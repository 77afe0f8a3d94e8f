/**
 * Errors on the wire: the one errorToRpc/rpcToError pair, our numeric codes, and the errors a
 * caller sees (RemoteError, RpcClosedError, RpcTimeoutError).
 */
import { JSONRPCErrorCode, JSONRPCErrorException } from 'json-rpc-2.0';
import { SyncError } from '../core/errors.js';
import { isPlainObject, SchemaError } from './validate.js';


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

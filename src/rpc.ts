/**
 * JSON-RPC 2.0 over a byte stream, newline-delimited (one message per line), both directions on
 * one stream (`JSONRPCServerAndClient`). JSON-RPC only: framing, limits and the peer; the
 * methods, their schemas and the error mapping are in wire/ (and exported from here). No sync logic.
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
import { SyncError } from './core/errors.js';
import { errorToRpc, RemoteError, RPC_ERROR_CODES, rpcToError, RpcClosedError, RpcTimeoutError, type RpcLog } from './wire/errors.js';
import type { MethodName, ParamsOf, ResultOf } from './wire/methods.js';
import { isMethodName, validateParams, validateResult } from './wire/schemas.js';
import { fieldOf, isPlainObject, kindOf, SchemaError } from './wire/validate.js';

// The vocabulary of the wire lives in wire/; callers keep importing it from here.
export * from './wire/errors.js';
export * from './wire/methods.js';
export { validateParams, validateResult } from './wire/schemas.js';
export { SchemaError } from './wire/validate.js';

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
    sac.addMethodAdvanced(name, async (request: JSONRPCRequest, ctx: Ctx): Promise<JSONRPCResponse | null> => {
      const id = request.id;
      const answer = (err: JSONRPCErrorException): JSONRPCResponse | null =>
        id === undefined ? null : createJSONRPCErrorResponse(id, err.code, err.message, err.data);
      let params: unknown;
      try {
        params = validateParams(name, request.params);
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
        result = validateResult(name, result);
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

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
  type JSONRPCErrorResponse,
  type JSONRPCID,
  type JSONRPCRequest,
  type JSONRPCResponse,
} from 'json-rpc-2.0';
import { SyncError } from './core/errors.js';
import { errorToRpc, RemoteError, RPC_ERROR_CODES, rpcToError, RpcClosedError, RpcTimeoutError, type RpcLog } from './wire/errors.js';
import type { MethodName, ParamsOf, ResultOf } from './wire/methods.js';
import { isMethodName, validateParams, validateResult } from './wire/schemas.js';
import { classifyMessage } from './wire/envelope.js';
import { LineSplitter } from './wire/lines.js';
import type { SchemaError } from './wire/validate.js';

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

/**
 * Runs JSON-RPC over `stream` (newline-delimited JSON), serving `handlers` with `context` and
 * calling the other side through the returned peer. Never throws on bad input: bad messages get
 * JSON-RPC errors, an over-long line drops the connection.
 */
export function createRpcPeer<Ctx>(stream: Duplex, opts: RpcPeerOptions<Ctx>): RpcPeer {
  return new StreamPeer(stream, opts);
}

/** Answers a request that timed out locally (told apart from a remote error by `local`). */
const localTimeout = (id: JSONRPCID): JSONRPCErrorResponse =>
  createJSONRPCErrorResponse(id, RPC_ERROR_CODES.RPC_TIMEOUT as number, 'timeout', { code: 'RPC_TIMEOUT', local: true });

class StreamPeer<Ctx> implements RpcPeer {
  readonly closed: Promise<void>;
  private closedFlag = false;
  private resolveClosed!: () => void;
  /** Rejects the outstanding requests when the connection closes. */
  private readonly waiters = new Set<(err: Error) => void>();
  private readonly sac: JSONRPCServerAndClient<Ctx, void>;
  private readonly log: RpcLog;
  private readonly lines: LineSplitter;
  /** Lines received and not handled yet: more than maxInFlight requests at once wait here. */
  private readonly queue: Buffer[] = [];
  private inFlight = 0;
  private paused = false;

  constructor(
    private readonly stream: Duplex,
    private readonly opts: RpcPeerOptions<Ctx>,
  ) {
    const prefix = opts.name === undefined ? 'rpc' : `rpc ${opts.name}`;
    this.log = (level, msg) => opts.log?.(level, `${prefix}: ${msg}`);
    this.lines = new LineSplitter(opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
    this.closed = new Promise<void>((resolve) => (this.resolveClosed = resolve));
    const warn = (msg: string): void => this.log('warn', msg);
    this.sac = new JSONRPCServerAndClient<Ctx, void>(
      new JSONRPCServer<Ctx>({ errorListener: warn }),
      new JSONRPCClient<void>((payload) => {
        if (this.closedFlag) throw new RpcClosedError('closed');
        this.writeLine(payload);
      }),
      { errorListener: warn },
    );
    for (const name of Object.keys(opts.handlers) as MethodName[]) {
      const handler = opts.handlers[name] as Handler<unknown, unknown, Ctx> | undefined;
      if (handler !== undefined) this.sac.addMethodAdvanced(name, (request, ctx) => this.serve(name, handler, request, ctx));
    }
    stream.on('data', (chunk: Buffer | string) => this.onData(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk));
    stream.on('drain', () => this.pump());
    stream.on('error', (err: Error) => {
      this.log('warn', `stream error: ${err.message}`);
      this.markClosed(err.message);
    });
    stream.on('end', () => this.onEnd());
    stream.on('close', () => this.markClosed('stream closed'));
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  // --- outgoing ------------------------------------------------------------------------------

  request<M extends MethodName>(method: M, params: ParamsOf<M>, timeoutMs = this.opts.requestTimeoutMs ?? 120_000): Promise<ResultOf<M>> {
    if (this.closedFlag) return Promise.reject(new RpcClosedError(`cannot send ${method}`));
    let checked: ParamsOf<M>;
    try {
      checked = validateParams(method, params);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<ResultOf<M>>((resolve, reject) => {
      let settled = false;
      const settle = (outcome: () => ResultOf<M>): void => {
        this.waiters.delete(waiter);
        if (settled) return;
        settled = true;
        try {
          resolve(outcome());
        } catch (err) {
          reject(err);
        }
      };
      const waiter = (err: Error): void => settle(() => {
        throw err;
      });
      this.waiters.add(waiter);
      const requester = timeoutMs > 0 ? this.sac.client.timeout(timeoutMs, localTimeout) : this.sac.client;
      requester.request(method, checked).then(
        (result: unknown) => settle(() => this.checkedResult(method, result)),
        (err: unknown) => settle(() => {
          throw this.requestFailure(method, timeoutMs, err);
        }),
      );
    });
  }

  notify<M extends MethodName>(method: M, params: ParamsOf<M>): void {
    if (this.closedFlag) {
      this.log('debug', `${method}: not sent, connection closed`);
      return;
    }
    try {
      this.sac.client.notify(method, validateParams(method, params));
    } catch (err) {
      this.log('error', `${method}: notification not sent: ${(err as Error).message}`);
    }
  }

  sendPrepared(line: string): void {
    if (this.closedFlag || this.stream.destroyed || !this.stream.writable) return;
    this.stream.write(`${line}\n`);
  }

  close(): void {
    if (this.closedFlag && this.stream.destroyed) return;
    this.markClosed('closed locally');
    this.stream.end();
    setTimeout(() => this.stream.destroy(), 2000).unref();
  }

  /** The answer to our request, checked: a bad one is the peer's fault (BAD_RESPONSE). */
  private checkedResult<M extends MethodName>(method: M, result: unknown): ResultOf<M> {
    try {
      return validateResult(method, result);
    } catch (err) {
      const e = err as SchemaError;
      this.log('warn', `${method}: invalid result: ${e.message}`);
      throw new RemoteError('BAD_RESPONSE', `${method}: invalid result: ${e.message}`, 0, { field: e.field });
    }
  }

  /** Why our request failed: our own timeout, the connection closing, or the peer's error. */
  private requestFailure(method: string, timeoutMs: number, err: unknown): Error {
    const data = (err as { data?: { local?: unknown } }).data;
    if (err instanceof JSONRPCErrorException && err.code === RPC_ERROR_CODES.RPC_TIMEOUT && data?.local === true) {
      return new RpcTimeoutError(method, timeoutMs);
    }
    if (this.closedFlag) return new RpcClosedError(`while waiting for ${method}`);
    return rpcToError(err);
  }

  private writeLine(message: unknown): void {
    if (this.stream.destroyed || !this.stream.writable) return;
    const prepared = (message as { result?: unknown } | null)?.result;
    if (prepared instanceof PreparedResult) {
      this.stream.write(`{"jsonrpc":"2.0","id":${JSON.stringify((message as { id: JSONRPCID }).id)},"result":${prepared.json}}\n`);
      return;
    }
    let text: string;
    try {
      text = JSON.stringify(message);
    } catch (err) {
      this.log('error', `cannot serialise an outgoing message: ${(err as Error).message}`);
      return;
    }
    this.stream.write(`${text}\n`);
  }

  // --- incoming ------------------------------------------------------------------------------

  /** Runs `handler` for one request: params checked before, the result after. */
  private async serve(name: MethodName, handler: Handler<unknown, unknown, Ctx>, request: JSONRPCRequest, ctx: Ctx): Promise<JSONRPCResponse | null> {
    const id = request.id;
    const answer = (err: JSONRPCErrorException): JSONRPCResponse | null =>
      id === undefined ? null : createJSONRPCErrorResponse(id, err.code, err.message, err.data);
    let params: unknown;
    try {
      params = validateParams(name, request.params);
    } catch (err) {
      this.log('warn', `${name}: refused: ${(err as Error).message}`);
      return answer(errorToRpc(err, this.log));
    }
    let result: unknown;
    try {
      result = await handler(params, ctx, this);
    } catch (err) {
      if (err instanceof SyncError) this.log('info', `${name}: ${err.code}: ${err.message}`);
      return answer(errorToRpc(err, this.log));
    }
    if (id === undefined) return null;
    if (result instanceof PreparedResult) return createJSONRPCSuccessResponse(id, result as unknown as null);
    try {
      result = validateResult(name, result);
    } catch (err) {
      this.log('error', `${name}: handler returned an invalid result: ${(err as Error).message}`);
      return answer(new JSONRPCErrorException('Internal error', JSONRPCErrorCode.InternalError, { code: 'RPC_INTERNAL' }));
    }
    return createJSONRPCSuccessResponse(id, result === undefined ? null : result);
  }

  private onData(chunk: Buffer): void {
    if (this.closedFlag && this.stream.destroyed) return;
    const lines = this.lines.push(chunk);
    if (lines === 'too long') return this.dropForAbuse(`line longer than ${this.lines.maxLineBytes} bytes`);
    this.queue.push(...lines);
    this.pump();
  }

  /** Handles queued lines while fewer than maxInFlight are running; pauses reading meanwhile. */
  private pump(): void {
    const maxInFlight = this.opts.maxInFlight ?? 32;
    while (this.queue.length > 0 && this.inFlight < maxInFlight && !this.stream.destroyed && !this.stream.writableNeedDrain) {
      this.handleLine(this.queue.shift() as Buffer);
    }
    const shouldPause = this.queue.length > 0;
    if (shouldPause && !this.paused) {
      this.paused = true;
      this.stream.pause();
    } else if (!shouldPause && this.paused) {
      this.paused = false;
      this.stream.resume();
    }
  }

  private handleLine(line: Buffer): void {
    let end = line.length;
    if (end > 0 && line[end - 1] === 0x0d) end--;
    const text = line.toString('utf8', 0, end);
    if (text.trim() === '') return;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.log('warn', `parse error in a ${end}-byte line`);
      this.writeLine(createJSONRPCErrorResponse(null, JSONRPCErrorCode.ParseError, 'Parse error', { code: 'RPC_PARSE_ERROR' }));
      return;
    }
    try {
      this.handleMessage(msg);
    } catch (err) {
      this.log('error', `failed to handle a message: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  private handleMessage(msg: unknown): void {
    const envelope = classifyMessage(msg);
    switch (envelope.kind) {
      case 'invalid':
        this.log('warn', `invalid request: ${envelope.why}`);
        this.writeLine(createJSONRPCErrorResponse(envelope.replyId, JSONRPCErrorCode.InvalidRequest, `Invalid Request: ${envelope.why}`, { code: 'RPC_INVALID_REQUEST' }));
        return;
      case 'malformed-response':
        this.log('warn', 'ignored a malformed response');
        return;
      case 'response':
        this.sac.client.receive(envelope.message);
        return;
      case 'request': {
        const { method, id } = envelope;
        if (isMethodName(method) && this.opts.handlers[method] !== undefined) return this.handleRequest(envelope.message);
        if (id === undefined) return;
        this.log('warn', `method not found: ${JSON.stringify(method.slice(0, 64))}`);
        this.writeLine(createJSONRPCErrorResponse(id, JSONRPCErrorCode.MethodNotFound, 'Method not found', { code: 'RPC_METHOD_NOT_FOUND' }));
        return;
      }
    }
  }

  private handleRequest(request: JSONRPCRequest): void {
    this.inFlight++;
    this.sac.server
      .receive(request, this.opts.context)
      .then(
        (response) => {
          if (response !== null) this.writeLine(response);
        },
        (err: unknown) => {
          this.log('error', `dispatch failed: ${(err as Error)?.message ?? String(err)}`);
          if (request.id !== undefined) this.writeLine(createJSONRPCErrorResponse(request.id, JSONRPCErrorCode.InternalError, 'Internal error'));
        },
      )
      .then(() => {
        this.inFlight--;
        this.pump();
      });
  }

  // --- closing -------------------------------------------------------------------------------

  private dropForAbuse(why: string): void {
    this.log('warn', `dropping the connection: ${why}`);
    this.lines.clear();
    this.queue.length = 0;
    this.markClosed(why);
    this.stream.destroy();
  }

  /** The other side ended: what is queued or running still gets its answers, then our end. */
  private onEnd(): void {
    this.markClosed('the other side ended the stream');
    const finish = (): void => {
      if (this.inFlight === 0 && this.queue.length === 0) this.stream.end();
      else setTimeout(finish, 50).unref();
    };
    finish();
  }

  private markClosed(reason: string): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    const err = new RpcClosedError(reason);
    for (const reject of [...this.waiters]) reject(err);
    this.waiters.clear();
    this.sac.rejectAllPendingRequests(err.message);
    this.resolveClosed();
  }
}

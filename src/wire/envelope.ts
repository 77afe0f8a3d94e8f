/**
 * The JSON-RPC 2.0 envelope of one incoming message: what it is (a request, a response to one of
 * ours, or invalid, and why), before any method is looked up. Pure: no stream, no handlers.
 */
import type { JSONRPCID, JSONRPCRequest, JSONRPCResponse } from 'json-rpc-2.0';
import { fieldOf, isPlainObject, kindOf } from './validate.js';

const MAX_ID_LENGTH = 256;
const ENVELOPE_KEYS = new Set(['jsonrpc', 'method', 'params', 'id', 'result', 'error']);

export type Envelope =
  /** Answered with an Invalid Request error to `replyId`. */
  | { kind: 'invalid'; replyId: JSONRPCID; why: string }
  /** A request (`id` present) or a notification; `method` is not looked up yet. */
  | { kind: 'request'; method: string; id: JSONRPCID | undefined; message: JSONRPCRequest }
  /** A response to one of our requests (a missing `result` made null). */
  | { kind: 'response'; message: JSONRPCResponse }
  /** A response that is not one: ignored, since nothing is ever answered to a response. */
  | { kind: 'malformed-response' };

export function isValidId(id: unknown): id is JSONRPCID {
  return id === null || (typeof id === 'number' && Number.isFinite(id)) || (typeof id === 'string' && id.length <= MAX_ID_LENGTH);
}

/** What the parsed line `msg` is, as far as the envelope says. */
export function classifyMessage(msg: unknown): Envelope {
  const invalid = (replyId: JSONRPCID, why: string): Envelope => ({ kind: 'invalid', replyId, why });
  if (Array.isArray(msg)) return invalid(null, 'batch requests are not supported');
  if (!isPlainObject(msg)) return invalid(null, `expected an object, got ${kindOf(msg)}`);
  const id = msg.id;
  const replyId = isValidId(id) ? id : null;
  if (msg.jsonrpc !== '2.0') return invalid(replyId, 'jsonrpc must be "2.0"');
  for (const key of Object.keys(msg)) {
    if (!ENVELOPE_KEYS.has(key)) return invalid(replyId, `unknown member ${fieldOf('', key).replace(/^\./, '')}`);
  }
  if ('method' in msg) {
    if ('result' in msg || 'error' in msg) return invalid(replyId, 'a request has no result or error');
    if (id !== undefined && !isValidId(id)) return invalid(null, 'id must be a string, a number or null');
    if (typeof msg.method !== 'string') return invalid(replyId, 'method must be a string');
    return { kind: 'request', method: msg.method, id: id as JSONRPCID | undefined, message: msg as unknown as JSONRPCRequest };
  }
  if ('result' in msg || 'error' in msg) {
    const valid =
      isValidId(id) &&
      ('result' in msg
        ? !('error' in msg)
        : isPlainObject(msg.error) && Number.isSafeInteger(msg.error.code) && typeof msg.error.message === 'string');
    if (!valid) return { kind: 'malformed-response' };
    const message = 'result' in msg && msg.result === undefined ? { ...msg, result: null } : msg;
    return { kind: 'response', message: message as unknown as JSONRPCResponse };
  }
  return invalid(replyId, 'neither a request nor a response');
}

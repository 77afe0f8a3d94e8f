import { describe, expect, it } from 'vitest';
import { classifyMessage } from '../src/wire/envelope.js';
import { LineSplitter } from '../src/wire/lines.js';

describe('LineSplitter', () => {
  it('joins a line split across chunks and returns every line a chunk completes', () => {
    const lines = new LineSplitter(16);
    expect(lines.push(Buffer.from('{"a":'))).toEqual([]);
    const out = lines.push(Buffer.from('1}\n{"b":2}\n{"c"'));
    expect(out).not.toBe('too long');
    expect((out as Buffer[]).map((b) => b.toString())).toEqual(['{"a":1}', '{"b":2}']);
    expect((lines.push(Buffer.from(':3}\n')) as Buffer[]).map((b) => b.toString())).toEqual(['{"c":3}']);
  });

  it('a line over the limit is too long, whole or still arriving; exactly the limit is not', () => {
    expect(new LineSplitter(4).push(Buffer.from('abcd\n'))).toHaveLength(1);
    expect(new LineSplitter(4).push(Buffer.from('abcde\n'))).toBe('too long');
    const arriving = new LineSplitter(4);
    expect(arriving.push(Buffer.from('abc'))).toEqual([]);
    expect(arriving.push(Buffer.from('de'))).toBe('too long');
  });
});

describe('classifyMessage', () => {
  it('tells requests, notifications and responses apart', () => {
    expect(classifyMessage({ jsonrpc: '2.0', id: 1, method: 'ack', params: {} })).toMatchObject({ kind: 'request', method: 'ack', id: 1 });
    expect(classifyMessage({ jsonrpc: '2.0', method: 'changed' })).toMatchObject({ kind: 'request', method: 'changed', id: undefined });
    expect(classifyMessage({ jsonrpc: '2.0', id: 'x', result: undefined })).toEqual({ kind: 'response', message: { jsonrpc: '2.0', id: 'x', result: null } });
    expect(classifyMessage({ jsonrpc: '2.0', id: 2, error: { code: 1.5, message: 'm' } })).toEqual({ kind: 'malformed-response' });
  });

  it('names what is wrong with an invalid envelope, and answers to the id only when it is usable', () => {
    expect(classifyMessage([])).toEqual({ kind: 'invalid', replyId: null, why: 'batch requests are not supported' });
    expect(classifyMessage({ jsonrpc: '2.0', id: 9, method: 'ack', 'odd key': 1 })).toEqual({ kind: 'invalid', replyId: 9, why: 'unknown member ["odd key"]' });
    expect(classifyMessage({ jsonrpc: '2.0', id: 'x'.repeat(300), method: 'ack' })).toEqual({ kind: 'invalid', replyId: null, why: 'id must be a string, a number or null' });
    expect(classifyMessage({ jsonrpc: '2.0', id: 3 })).toEqual({ kind: 'invalid', replyId: 3, why: 'neither a request nor a response' });
  });
});

import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { SyncError } from '../src/core/errors.js';
import type { Entry, PushOp } from '../src/core/types.js';
import {
  RemoteError,
  RpcClosedError,
  RpcTimeoutError,
  SchemaError,
  createRpcPeer,
  errorToRpc,
  rpcToError,
  validateParams,
  type Handlers,
  type RpcPeer,
} from '../src/rpc.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';
import { rejection } from './helpers/wait.js';

const HASH = 'a'.repeat(64);
const fileEntry: Entry = { type: 'file', size: 3, mtime: 1_700_000_000_000, mode: 0o644, hash: HASH };

interface Ctx {
  name: string;
  acks: Array<{ folder: string; seq: number }>;
}

/** Server-side handlers that echo enough to show what they received. */
function serverHandlers(): Handlers<Ctx> {
  return {
    hello: (p, ctx) => ({
      server: ctx.name,
      folders: Object.fromEntries(p.folders.map((f) => [f, { root: `/srv/${f}`, tmp: `/srv/${f}/.systemsync/tmp`, head: 5, cursor: 0, floor: 0 }])),
      missing: [],
    }),
    push: (p) => ({ results: p.ops.map((_op, i) => ({ status: 'ok' as const, seq: i + 1 })) }),
    changes: (p) => ({
      changes: [{ path: 'a/b.txt', seq: p.after + 1, entry: fileEntry, origin: 'laptop' }],
      head: p.after + 1,
      reset: false,
    }),
    ack: (p, ctx) => {
      ctx.acks.push(p);
      return {};
    },
    status: () => {
      throw new SyncError('FOLDER_PAUSED', 'docs: folder root vanished');
    },
    tasks: () => {
      throw new Error('secret detail /root/.ssh/id_ed25519');
    },
  };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await cleanupTempDirs();
});

interface Served {
  socketPath: string;
  logs: string[];
  serverPeers: RpcPeer[];
  uncaught: unknown[];
}

async function serve(handlers: Handlers<Ctx> = serverHandlers(), maxLineBytes?: number): Promise<Served> {
  const dir = await tempDir('systemsync-rpc-');
  const socketPath = path.join(dir, 'rpc.sock');
  const served: Served = { socketPath, logs: [], serverPeers: [], uncaught: [] };
  const server = net.createServer((socket) => {
    served.serverPeers.push(
      createRpcPeer(socket, {
        handlers,
        context: { name: 'hub', acks: [] },
        log: (level, msg) => served.logs.push(`${level}: ${msg}`),
        ...(maxLineBytes === undefined ? {} : { maxLineBytes }),
      }),
    );
  });
  const onUncaught = (err: unknown): void => {
    served.uncaught.push(err);
  };
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  cleanups.push(async () => {
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
    for (const p of served.serverPeers) p.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return served;
}

async function connect(socketPath: string, handlers: Handlers<Ctx> = {}, opts: { requestTimeoutMs?: number } = {}): Promise<RpcPeer> {
  const socket = net.connect(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const peer = createRpcPeer(socket, { handlers, context: { name: 'client', acks: [] }, ...opts });
  cleanups.push(() => peer.close());
  return peer;
}

/** A raw socket that collects the lines it receives. */
async function rawClient(socketPath: string): Promise<{ socket: net.Socket; lines: unknown[]; nextLine: () => Promise<any>; ended: Promise<void> }> {
  const socket = net.connect(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => undefined);
  const lines: unknown[] = [];
  let buffer = '';
  let waiting: Array<() => void> = [];
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buffer += d;
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffer.slice(0, nl)));
      buffer = buffer.slice(nl + 1);
    }
    const w = waiting;
    waiting = [];
    w.forEach((f) => f());
  });
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  let read = 0;
  const nextLine = async (): Promise<any> => {
    while (lines.length <= read) {
      await Promise.race([new Promise<void>((r) => waiting.push(r)), ended.then(() => { throw new Error('socket closed before a line arrived'); })]);
    }
    return lines[read++];
  };
  cleanups.push(() => void socket.destroy());
  return { socket, lines, nextLine, ended };
}

describe('round trips over a real Unix socket', () => {
  it('client → server requests with typed results', async () => {
    const served = await serve();
    const client = await connect(served.socketPath);
    const hello = await client.request('hello', { node: 'laptop', folders: ['docs', 'photos'], protocol: 1 });
    expect(hello.server).toBe('hub');
    expect(Object.keys(hello.folders)).toEqual(['docs', 'photos']);
    expect(hello.folders.docs?.tmp).toBe('/srv/docs/.systemsync/tmp');

    const ops: PushOp[] = [
      { op: 'put', path: 'a/b.txt', base: null, entry: fileEntry, upload: 'lq2x-abc.part' },
      { op: 'delete', path: 'old', base: 3 },
      { op: 'rename', from: 'x', to: 'y/z', base: 1, toBase: null, entry: { type: 'dir', mode: 0o755 } },
      { op: 'put', path: 'ln', base: null, entry: { type: 'symlink', target: '../../outside' }, upload: null },
    ];
    expect((await client.request('push', { folder: 'docs', ops })).results.map((r) => r.status)).toEqual(['ok', 'ok', 'ok', 'ok']);

    const changes = await client.request('changes', { folder: 'docs', after: 7, limit: 100 });
    expect(changes).toEqual({ changes: [{ path: 'a/b.txt', seq: 8, entry: fileEntry, origin: 'laptop' }], head: 8, reset: false });

    expect(await client.request('ack', { folder: 'docs', seq: 8 })).toEqual({});
  });

  it('server → client notification and server → client request on the same stream', async () => {
    const received: unknown[] = [];
    const served = await serve();
    const client = await connect(served.socketPath, {
      changed: (p) => void received.push(p),
      status: () => ({ node: 'laptop', role: 'client' }),
    });
    await client.request('ack', { folder: 'docs', seq: 1 });
    const serverSide = served.serverPeers[0] as RpcPeer;
    serverSide.notify('changed', { folder: 'docs', head: 42 });
    expect(await serverSide.request('status', {})).toEqual({ node: 'laptop', role: 'client' });
    expect(received).toEqual([{ folder: 'docs', head: 42 }]);
  });

  it('typed handler errors keep their code; unexpected errors leak nothing', async () => {
    const served = await serve();
    const client = await connect(served.socketPath);
    const paused = await rejection(client.request('status', {}));
    expect(paused).toBeInstanceOf(RemoteError);
    expect(paused.code).toBe('FOLDER_PAUSED');
    expect(paused.message).toContain('folder root vanished');

    const internal = await rejection(client.request('tasks', {}));
    expect(internal.code).toBe('RPC_INTERNAL');
    expect(internal.message).not.toContain('secret');
    expect(served.logs.some((l) => l.includes('secret detail'))).toBe(true);
  });

  it('a method the other side does not serve → RPC_METHOD_NOT_FOUND', async () => {
    const served = await serve();
    const client = await connect(served.socketPath);
    const err = await rejection(client.request('stop', {}));
    expect((err as RemoteError).rpcCode).toBe(-32601);
    expect(err.code).toBe('RPC_METHOD_NOT_FOUND');
  });

  it('an invalid result from the server is refused by the client (paths checked both ways)', async () => {
    const served = await serve({
      ...serverHandlers(),
      // The server-side check is bypassed by answering through a raw socket below; here the
      // server's own validation turns the bad result into an internal error.
      changes: () => ({ changes: [{ path: '../escape', seq: 1, entry: null, origin: 'x' }], head: 1, reset: false }),
    });
    const client = await connect(served.socketPath);
    expect((await rejection(client.request('changes', { folder: 'docs', after: 0, limit: 1 }))).code).toBe('RPC_INTERNAL');
    expect(served.logs.some((l) => l.includes('result.changes[0].path: dot-dot segment'))).toBe(true);
  });

  it('a client validates results itself: a hostile server answering ../ is refused', async () => {
    const dir = await tempDir('systemsync-rpc-');
    const socketPath = path.join(dir, 'hostile.sock');
    const server = net.createServer((socket) => {
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => {
        const req = JSON.parse(d.trim());
        socket.write(JSON.stringify({ jsonrpc: '2.0', id: req.id, result: { changes: [{ path: 'a/../../etc/passwd', seq: 1, entry: null, origin: 'evil' }], head: 1, reset: false } }) + '\n');
      });
    });
    await new Promise<void>((r) => server.listen(socketPath, r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const client = await connect(socketPath);
    const err = await rejection(client.request('changes', { folder: 'docs', after: 0, limit: 1 }));
    expect(err.code).toBe('BAD_RESPONSE');
    expect(err.message).toContain('result.changes[0].path: dot-dot segment');
  });
});

describe('schema rejections name the field', () => {
  const cases: Array<{ description: string; method: string; params: unknown; field: string }> = [
    { description: 'dot-dot in an op path', method: 'push', params: { folder: 'docs', ops: [0, 1, 2, 3].map((i) => ({ op: 'delete', path: i === 3 ? 'a/../..' : `f${i}`, base: null })) }, field: 'params.ops[3].path: dot-dot segment' },
    { description: 'absolute path', method: 'push', params: { folder: 'docs', ops: [{ op: 'delete', path: '/etc/passwd', base: null }] }, field: 'params.ops[0].path: absolute' },
    { description: 'reserved path', method: 'push', params: { folder: 'docs', ops: [{ op: 'delete', path: '.systemsync/trash', base: null }] }, field: 'params.ops[0].path: reserved' },
    { description: 'rename target', method: 'push', params: { folder: 'docs', ops: [{ op: 'rename', from: 'a', to: 'b\\c', base: 1, toBase: null, entry: { type: 'dir', mode: 0o755 } }] }, field: 'params.ops[0].to: backslash' },
    { description: 'unknown key', method: 'push', params: { folder: 'docs', ops: [{ op: 'delete', path: 'a', base: null, evil: 1 }] }, field: 'params.ops[0].evil: unknown key' },
    { description: 'missing key', method: 'changes', params: { folder: 'docs', after: 0 }, field: 'params.limit: missing' },
    { description: 'limit out of range', method: 'changes', params: { folder: 'docs', after: 0, limit: 5001 }, field: 'params.limit: expected an integer 1..5000, got 5001' },
    { description: 'negative after', method: 'changes', params: { folder: 'docs', after: -1, limit: 5 }, field: 'params.after' },
    { description: 'float seq', method: 'ack', params: { folder: 'docs', seq: 1.5 }, field: 'params.seq: expected an integer' },
    { description: 'bad folder name', method: 'ack', params: { folder: '.hidden', seq: 1 }, field: 'params.folder' },
    { description: 'folder name too long', method: 'ack', params: { folder: 'x'.repeat(65), seq: 1 }, field: 'params.folder: longer than 64 bytes' },
    { description: 'empty ops', method: 'push', params: { folder: 'docs', ops: [] }, field: 'params.ops: expected at least 1 item' },
    { description: 'too many ops', method: 'push', params: { folder: 'docs', ops: Array.from({ length: 1001 }, () => ({ op: 'delete', path: 'a', base: null })) }, field: 'params.ops: expected at most 1000 items' },
    { description: 'bad op tag', method: 'push', params: { folder: 'docs', ops: [{ op: 'chmod', path: 'a' }] }, field: 'params.ops[0].op: expected "put" | "delete" | "rename"' },
    { description: 'bad hash', method: 'push', params: { folder: 'docs', ops: [{ op: 'put', path: 'a', base: null, entry: { ...fileEntry, hash: 'ABC' }, upload: null }] }, field: 'params.ops[0].entry.hash' },
    { description: 'mode too large', method: 'push', params: { folder: 'docs', ops: [{ op: 'put', path: 'a', base: null, entry: { type: 'dir', mode: 0o10000 }, upload: null }] }, field: 'params.ops[0].entry.mode' },
    { description: 'upload with a slash', method: 'push', params: { folder: 'docs', ops: [{ op: 'put', path: 'a', base: null, entry: fileEntry, upload: '../x' }] }, field: 'params.ops[0].upload' },
    { description: 'symlink target with NUL', method: 'push', params: { folder: 'docs', ops: [{ op: 'put', path: 'a', base: null, entry: { type: 'symlink', target: 'a\0b' }, upload: null }] }, field: 'params.ops[0].entry.target: NUL byte' },
    { description: 'wrong protocol', method: 'hello', params: { node: 'laptop', folders: [], protocol: 2 }, field: 'params.protocol' },
    { description: 'positional params', method: 'ack', params: ['docs', 1], field: 'params: expected an object, got an array' },
    { description: 'params on a control method', method: 'status', params: { verbose: true }, field: 'params.verbose: unknown key' },
    { description: 'weird key is quoted', method: 'ack', params: { folder: 'docs', seq: 1, 'a b': 1 }, field: 'params["a b"]: unknown key' },
  ];

  it.each(cases)('$description → $field', async ({ method, params, field }) => {
    const served = await serve({ ...serverHandlers(), status: () => ({}) });
    const raw = await rawClient(served.socketPath);
    raw.socket.write(JSON.stringify({ jsonrpc: '2.0', id: 7, method, params }) + '\n');
    const answer = await raw.nextLine();
    expect(answer.id).toBe(7);
    expect(answer.error.code).toBe(-32602);
    expect(answer.error.message).toContain(field);
    expect(served.logs.some((l) => l.includes(field))).toBe(true);
    // The connection stays healthy after a refusal.
    raw.socket.write(JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'ack', params: { folder: 'docs', seq: 2 } }) + '\n');
    expect(await raw.nextLine()).toEqual({ jsonrpc: '2.0', id: 8, result: {} });
  });

  it('validateParams is the same check, usable without a socket', () => {
    expect(() => validateParams('ack', { folder: 'docs', seq: -5 })).toThrow(SchemaError);
    expect(validateParams('status', undefined)).toEqual({});
  });

  it('refuses to send invalid params of its own', async () => {
    const served = await serve();
    const client = await connect(served.socketPath);
    const err = await rejection(client.request('push', { folder: 'docs', ops: [{ op: 'delete', path: '../x', base: null }] }));
    expect(err).toBeInstanceOf(SchemaError);
    expect(served.logs).toEqual([]);
  });
});

describe('envelope errors', () => {
  it.each([
    { description: 'unparseable line', line: '{"jsonrpc": "2.0", "id": 1, "method": ', code: -32700, id: null },
    { description: 'unknown method', line: '{"jsonrpc":"2.0","id":3,"method":"format_disk","params":{}}', code: -32601, id: 3 },
    { description: 'prototype name as method', line: '{"jsonrpc":"2.0","id":4,"method":"__proto__","params":{}}', code: -32601, id: 4 },
    { description: 'wrong jsonrpc version', line: '{"jsonrpc":"1.0","id":5,"method":"ack","params":{}}', code: -32600, id: 5 },
    { description: 'non-string method', line: '{"jsonrpc":"2.0","id":6,"method":12}', code: -32600, id: 6 },
    { description: 'object id', line: '{"jsonrpc":"2.0","id":{"x":1},"method":"ack"}', code: -32600, id: null },
    { description: 'batch', line: '[{"jsonrpc":"2.0","id":1,"method":"ack"}]', code: -32600, id: null },
    { description: 'bare number', line: '42', code: -32600, id: null },
    { description: 'null', line: 'null', code: -32600, id: null },
    { description: 'extra envelope member', line: '{"jsonrpc":"2.0","id":9,"method":"ack","params":{"folder":"d","seq":1},"extra":1}', code: -32600, id: 9 },
  ])('$description → $code', async ({ line, code, id }) => {
    const served = await serve();
    const raw = await rawClient(served.socketPath);
    raw.socket.write(line + '\n');
    const answer = await raw.nextLine();
    expect(answer.error.code).toBe(code);
    expect(answer.id).toBe(id);
    expect(served.logs.length).toBeGreaterThan(0);
  });

  it('a notification with bad params gets no answer, and a CRLF line works', async () => {
    const served = await serve();
    const raw = await rawClient(served.socketPath);
    raw.socket.write('{"jsonrpc":"2.0","method":"ack","params":{"folder":"../x","seq":1}}\n');
    raw.socket.write('\n   \n{"jsonrpc":"2.0","id":"s1","method":"ack","params":{"folder":"docs","seq":1}}\r\n');
    expect(await raw.nextLine()).toEqual({ jsonrpc: '2.0', id: 's1', result: {} });
    expect(raw.lines).toHaveLength(1);
  });

  it('a message split across many writes is reassembled', async () => {
    const served = await serve();
    const raw = await rawClient(served.socketPath);
    const text = JSON.stringify({ jsonrpc: '2.0', id: 11, method: 'ack', params: { folder: 'docs', seq: 3 } }) + '\n';
    for (const ch of text) {
      raw.socket.write(ch);
      await new Promise((r) => setImmediate(r));
    }
    expect(await raw.nextLine()).toEqual({ jsonrpc: '2.0', id: 11, result: {} });
  });
});

describe('limits and lifecycle', () => {
  it('an over-long line drops that connection; the server keeps serving new ones', async () => {
    const served = await serve(serverHandlers(), 64 * 1024);
    const raw = await rawClient(served.socketPath);
    raw.socket.write('{"jsonrpc":"2.0","id":1,"method":"ack","params":{"folder":"' + 'x'.repeat(100 * 1024));
    await raw.ended;
    expect(served.logs.some((l) => l.includes('dropping the connection: line longer than 65536 bytes'))).toBe(true);
    const client = await connect(served.socketPath);
    expect(await client.request('ack', { folder: 'docs', seq: 1 })).toEqual({});
  });

  it('requests after close reject at once; pending ones reject when the stream closes', async () => {
    const served = await serve({ ...serverHandlers(), ack: () => new Promise<Record<string, never>>(() => undefined) });
    const client = await connect(served.socketPath);
    await client.request('hello', { node: 'laptop', folders: [], protocol: 1 }); // the server side exists now
    const pending = client.request('ack', { folder: 'docs', seq: 1 });
    (served.serverPeers[0] as RpcPeer).close();
    const err = await rejection(pending);
    expect(err).toBeInstanceOf(RpcClosedError);
    expect(err.code).toBe('RPC_CLOSED');
    await client.closed;
    expect(client.isClosed).toBe(true);
    expect((await rejection(client.request('ack', { folder: 'docs', seq: 1 }))).code).toBe('RPC_CLOSED');
  });

  it('a request without an answer times out', async () => {
    const served = await serve({ ...serverHandlers(), ack: () => new Promise<Record<string, never>>(() => undefined) });
    const client = await connect(served.socketPath);
    const err = await rejection(client.request('ack', { folder: 'docs', seq: 1 }, 200));
    expect(err).toBeInstanceOf(RpcTimeoutError);
    expect(err.code).toBe('RPC_TIMEOUT');
    // The connection is still usable.
    expect((await client.request('hello', { node: 'n1', folders: [], protocol: 1 })).server).toBe('hub');
  });

  it('many concurrent requests all get answers (in-flight limit queues, does not drop)', async () => {
    const served = await serve({ ...serverHandlers(), ack: async () => { await new Promise((r) => setTimeout(r, 5)); return {}; } });
    const client = await connect(served.socketPath);
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => client.request('ack', { folder: 'docs', seq: i })));
    expect(answers).toHaveLength(200);
  });
});

describe('errorToRpc / rpcToError', () => {
  it('round-trips a typed error code', () => {
    const wire = errorToRpc(new SyncError('UNKNOWN_FOLDER', 'no folder "x"'));
    expect(wire.code).toBeLessThan(-32768);
    expect(wire.data).toEqual({ code: 'UNKNOWN_FOLDER' });
    const back = rpcToError(wire.toObject());
    expect(back).toBeInstanceOf(RemoteError);
    expect((back as RemoteError).code).toBe('UNKNOWN_FOLDER');
    expect(back.message).toBe('no folder "x"');
  });

  it('an unknown typed code uses the generic app code and keeps its string', () => {
    const wire = errorToRpc(new SyncError('SOMETHING_NEW', 'm'));
    expect(wire.code).toBe(-33000);
    expect((rpcToError(wire) as RemoteError).code).toBe('SOMETHING_NEW');
  });

  it('plain errors become -32603 without their message', () => {
    const logged: string[] = [];
    const wire = errorToRpc(new TypeError('x is undefined at /secret/path'), (_l, m) => logged.push(m));
    expect(wire.code).toBe(-32603);
    expect(wire.message).toBe('Internal error');
    expect(logged[0]).toContain('/secret/path');
  });

  it('garbage error data gives a generic code', () => {
    expect((rpcToError({ code: -1, message: 'x', data: { code: 'lower case; rm -rf' } }) as RemoteError).code).toBe('RPC_ERROR');
    expect((rpcToError({ code: -32602, message: 'x' }) as RemoteError).code).toBe('INVALID_PARAMS');
  });
});

// ---------------------------------------------------------------------------------------------

const validMessages: object[] = [
  { jsonrpc: '2.0', id: 1, method: 'hello', params: { node: 'laptop', folders: ['docs'], protocol: 1 } },
  { jsonrpc: '2.0', id: 2, method: 'push', params: { folder: 'docs', ops: [{ op: 'put', path: 'a/b', base: null, entry: fileEntry, upload: 'u.part' }, { op: 'rename', from: 'x', to: 'y', base: 1, toBase: 2, entry: { type: 'symlink', target: 't' } }] } },
  { jsonrpc: '2.0', id: 'c', method: 'changes', params: { folder: 'docs', after: 0, limit: 10 } },
  { jsonrpc: '2.0', id: 4, method: 'ack', params: { folder: 'docs', seq: 4 } },
  { jsonrpc: '2.0', method: 'changed', params: { folder: 'docs', head: 4 } },
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Replaces or deletes one randomly chosen node of a JSON value. */
function mutate(value: Json, choice: number, replacement: Json | undefined): Json {
  const nodes: Array<{ parent: Json[] | { [k: string]: Json }; key: string | number }> = [];
  const walk = (v: Json): void => {
    if (Array.isArray(v)) v.forEach((x, i) => (nodes.push({ parent: v, key: i }), walk(x)));
    else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) (nodes.push({ parent: v, key: k }), walk(v[k] as Json));
  };
  const copy = JSON.parse(JSON.stringify(value)) as Json;
  walk(copy);
  if (nodes.length === 0) return copy;
  const { parent, key } = nodes[choice % nodes.length] as (typeof nodes)[number];
  if (replacement === undefined) {
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key as string];
  } else {
    (parent as Record<string | number, Json>)[key] = replacement;
  }
  return copy;
}

const jsonValue = fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<Json>;
const hugeString = fc.integer({ min: 10_000, max: 300_000 }).map((n) => 'x'.repeat(n));
const deepNesting = fc.integer({ min: 100, max: 50_000 }).map((n) => '['.repeat(n) + ']'.repeat(n));

const fuzzLine = fc.oneof(
  fc.tuple(fc.constantFrom(...validMessages), fc.nat(), fc.option(fc.oneof(jsonValue, hugeString, fc.integer({ min: 10, max: 1000 }).map((n) => JSON.parse('['.repeat(n) + ']'.repeat(n)) as Json)), { nil: undefined })).map(([m, c, r]) =>
    JSON.stringify(mutate(m as Json, c, r)),
  ),
  jsonValue.map((v) => JSON.stringify(v)),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1').replace(/\n/g, ' ')),
  fc.string({ maxLength: 200 }).map((s) => s.replace(/\n/g, ' ')),
  deepNesting,
  deepNesting.map((s) => `{"jsonrpc":"2.0","id":1,"method":"push","params":${s}}`),
  hugeString.map((s) => `{"jsonrpc":"2.0","id":1,"method":"ack","params":{"folder":"${s}","seq":1}}`),
);

function idsOf(line: string): unknown {
  try {
    const v = JSON.parse(line) as { id?: unknown; method?: unknown };
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && typeof v.method === 'string' && 'id' in v) return v.id;
  } catch {
    // not JSON
  }
  return undefined;
}

describe('fuzz', () => {
  it('random and mutated messages: never a crash; requests answered or the connection dropped; fresh connections still served', async () => {
    const served = await serve(serverHandlers(), 256 * 1024);
    let dropped = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fuzzLine, { minLength: 1, maxLength: 6 }), async (lines) => {
        const raw = await rawClient(served.socketPath);
        const expectAnswers = lines.map(idsOf).filter((id) => id !== undefined && (typeof id === 'number' || typeof id === 'string' || id === null)).length;
        raw.socket.write(lines.join('\n') + '\n');
        // A sentinel request: when it is answered, everything before it has been handled.
        raw.socket.write(JSON.stringify({ jsonrpc: '2.0', id: 'sentinel', method: 'ack', params: { folder: 'docs', seq: 1 } }) + '\n');
        const sentinel = await Promise.race([
          (async () => {
            for (;;) {
              const line = await raw.nextLine();
              if (line?.id === 'sentinel') return line;
            }
          })(),
          raw.ended.then(() => null),
        ]).catch(() => null);
        if (sentinel === null) {
          dropped++;
          expect(served.logs.some((l) => l.includes('dropping the connection'))).toBe(true);
        } else {
          expect(sentinel).toEqual({ jsonrpc: '2.0', id: 'sentinel', result: {} });
          // Every request with a usable id got exactly one answer (plus envelope errors for the rest).
          expect(raw.lines.length - 1).toBeGreaterThanOrEqual(expectAnswers);
          for (const answer of raw.lines) expect((answer as { jsonrpc?: string }).jsonrpc).toBe('2.0');
        }
        raw.socket.destroy();
      }),
      { numRuns: 150 },
    );
    expect(served.uncaught).toEqual([]);
    const client = await connect(served.socketPath);
    expect((await client.request('hello', { node: 'after-fuzz', folders: ['docs'], protocol: 1 })).server).toBe('hub');
    expect(dropped).toBeLessThan(150);
  }, 60_000);
});

/**
 * A rogue client, end to end: a raw SSH connection to the real test sshd, a raw stream to the
 * real server daemon's rpc.sock, and hand-written NDJSON lines calling every server method with
 * hostile input. Every request must get a JSON-RPC error (or a per-op error result), an over-long
 * line drops only that connection, the server stays up, nothing appears outside the served
 * folders, and a normal client still syncs afterwards.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { connectSsh, type SshSession } from '../src/ssh/transfer.js';
import { RPC_ERROR_CODES } from '../src/rpc.js';
import { startCluster, waitIdle, type Cluster } from './helpers/daemons.js';
import { cleanupTempDirs, makeTree, snapshotTree, type TreeItem } from './helpers/tree.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';

/** Every hostile name carries this token, so that a write anywhere can be searched for. */
const TOKEN = `pwned${crypto.randomBytes(4).toString('hex')}`;
const FAKE_HASH = 'a'.repeat(64);

interface RpcMessage {
  jsonrpc?: string;
  id?: unknown;
  method?: string;
  result?: unknown;
  error?: { code: number; message: string; data?: { code?: string; field?: string } };
}

/** A raw NDJSON line writer/reader over one stream: no schema, no library, just bytes. */
class RawRpc {
  private buffer = '';
  private readonly inbox: RpcMessage[] = [];
  private wake: (() => void) | null = null;
  private nextId = 1;
  isClosed = false;

  constructor(readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('utf8');
      for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        if (line.trim() !== '') this.inbox.push(JSON.parse(line) as RpcMessage);
      }
      this.wake?.();
    });
    stream.on('error', () => undefined);
    stream.on('close', () => {
      this.isClosed = true;
      this.wake?.();
    });
  }

  sendLine(text: string): void {
    this.stream.write(`${text}\n`);
  }

  /** Sends one request with a fresh id and resolves with the response carrying that id. */
  async call(method: string, params: unknown): Promise<RpcMessage> {
    const id = this.nextId++;
    this.sendLine(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    return this.response(id);
  }

  /** The next response with this id (null: the error answers to unparseable lines). */
  async response(id: unknown, timeoutMs = 30_000): Promise<RpcMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => m.id === id && ('result' in m || 'error' in m));
      if (i >= 0) return this.inbox.splice(i, 1)[0]!;
      if (this.isClosed) throw new Error(`connection closed while waiting for the response to id ${JSON.stringify(id)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no response to id ${JSON.stringify(id)} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
      });
    }
  }

  async waitClosed(timeoutMs = 30_000): Promise<void> {
    await waitFor(() => this.isClosed, { timeoutMs, what: 'the server to drop the connection' });
  }

  close(): void {
    this.stream.destroy();
  }
}

let cluster: Cluster;
let ssh: SshSession;
let rpcSocket: string;
let hub: string, alpha: string, beta: string;
let outside: string;
let outsideBefore: Map<string, TreeItem>;
let passwdBefore: { hash: string; mode: number; size: number; mtimeMs: number; ino: number };
let tmpListingBefore: string[];

async function passwdFacts(): Promise<typeof passwdBefore> {
  const st = await fs.stat('/etc/passwd');
  const hash = crypto.createHash('sha256').update(await fs.readFile('/etc/passwd')).digest('hex');
  return { hash, mode: st.mode, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
}

async function openRogue(): Promise<RawRpc> {
  return new RawRpc(await ssh.openUnixStream(rpcSocket));
}

/** Every path under `root` (recursively, symlinks not followed) whose name contains the token. */
async function findToken(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    for (const name of names) {
      const abs = path.join(dir, name);
      if (name.includes(TOKEN)) found.push(abs);
      const st = await fs.lstat(abs).catch(() => null);
      if (st?.isDirectory()) await walk(abs);
    }
  };
  await walk(root);
  return found;
}

function expectRpcError(reply: RpcMessage, code?: number | RegExp): void {
  expect(reply.result, `expected an error, got result ${JSON.stringify(reply.result)}`).toBeUndefined();
  expect(reply.error).toBeDefined();
  expect(typeof reply.error!.code).toBe('number');
  expect(reply.error!.message.length).toBeGreaterThan(0);
  if (typeof code === 'number') expect(reply.error!.code).toBe(code);
  if (code instanceof RegExp) expect(`${reply.error!.data?.code ?? ''} ${reply.error!.message}`).toMatch(code);
}

async function expectServerAlive(): Promise<void> {
  expect(cluster.server.isRunning).toBe(true);
  const status = await cluster.server.status();
  expect(status.role).toBe('server');
}

function fileEntry(content: Buffer | string, extra: Partial<{ mode: number; mtime: number }> = {}) {
  const buf = Buffer.isBuffer(content) ? content : Buffer.from(content);
  return {
    type: 'file',
    size: buf.length,
    mtime: extra.mtime ?? Date.now(),
    mode: extra.mode ?? 0o644,
    hash: crypto.createHash('sha256').update(buf).digest('hex'),
  };
}

/** Paths that must never be accepted, each containing the token. */
const BAD_PATHS: Array<[string, string]> = [
  ['dot-dot', `../${TOKEN}`],
  ['dot-dot inside', `a/../../${TOKEN}`],
  ['deep dot-dot', `${'../'.repeat(30)}tmp/${TOKEN}`],
  ['absolute', `/tmp/${TOKEN}`],
  ['absolute etc', `/etc/${TOKEN}`],
  ['NUL byte', `${TOKEN}\0.txt`],
  ['NUL then dot-dot', `ok\0/../../${TOKEN}`],
  ['backslash', `..\\${TOKEN}`],
  ['backslash inside', `a\\..\\..\\${TOKEN}`],
  ['reserved dir', `.systemsync/tmp/${TOKEN}`],
  ['reserved dir, other case', `.SystemSync/${TOKEN}`],
  ['reserved trash', `.systemsync/trash/${TOKEN}`],
  ['dot segment', `./${TOKEN}`],
  ['empty segment', `a//${TOKEN}`],
  ['trailing slash', `${TOKEN}/`],
  ['empty', ''],
  ['lone surrogate', `${TOKEN}\ud800`],
  ['segment over 255 bytes', `${TOKEN}${'x'.repeat(300)}`],
  ['path over 4096 bytes', `${`${TOKEN}/`.repeat(400)}x`],
];

beforeAll(async () => {
  cluster = await startCluster({ clients: 2 });
  [hub, alpha, beta] = [cluster.server.folder(), cluster.clients[0]!.folder(), cluster.clients[1]!.folder()];
  rpcSocket = path.join(cluster.server.stateDir, 'rpc.sock');
  outside = await makeTree(
    { 'victim.txt': 'do not touch', 'sub/inner.txt': 'inner', 'sub/deeper/x.txt': 'x' },
    path.join(cluster.dir, 'outside'),
  );
  outsideBefore = await snapshotTree(outside);
  passwdBefore = await passwdFacts();
  tmpListingBefore = (await fs.readdir(os.tmpdir())).filter((n) => n.includes(TOKEN));
  ssh = await connectSsh({
    host: cluster.sshd.host,
    port: cluster.sshd.port,
    username: cluster.sshd.user,
    privateKey: cluster.sshd.clientKeyPath,
    knownHostsPath: cluster.sshd.knownHostsPath,
    hostKeyCheck: 'yes',
  });
  // Something legitimate first, so renames and deletes have real sources.
  await fs.writeFile(path.join(alpha, 'legit.txt'), 'legit');
  await waitForTreesEqual([hub, alpha, beta]);
});

/**
 * What every test must leave true, whatever ran before it: the server is up, nothing outside the
 * served folders changed, and no hostile name exists anywhere we can look. Checked after each test.
 */
async function expectNothingEscaped(): Promise<void> {
  await expectServerAlive();
  expect(await snapshotTree(outside)).toEqual(outsideBefore);
  expect(await passwdFacts()).toEqual(passwdBefore);
  expect((await fs.readdir(os.tmpdir())).filter((n) => n.includes(TOKEN))).toEqual(tmpListingBefore);
  for (const dir of ['/', '/etc', '/root', path.dirname(cluster.dir)]) {
    expect((await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.includes(TOKEN))).toEqual([]);
  }
  const found = await findToken(cluster.dir);
  // Only what the rogue planted itself over SFTP: the escape link in the hub folder (and its
  // copies on the clients) and files in the hub's tmp dir, which the server may clean up.
  const allowed = (p: string): boolean => path.basename(p) === `${TOKEN}-escape` || p.startsWith(path.join(hub, '.systemsync', 'tmp') + path.sep);
  expect(found.filter((p) => !allowed(p))).toEqual([]);
  // The parent of the hub folder holds the folder and nothing else.
  expect(await fs.readdir(path.dirname(hub))).toEqual(['docs']);
}

afterEach(expectNothingEscaped);

afterAll(async () => {
  await ssh?.close().catch(() => undefined);
  await cluster?.stop();
  await cleanupTempDirs();
});

describe('a rogue client on the real rpc.sock', () => {
  it('gets an error for every call before hello, unknown methods and control methods', async () => {
    const rpc = await openRogue();
    expectRpcError(await rpc.call('push', { folder: 'docs', ops: [{ op: 'delete', path: 'legit.txt', base: null }] }), RPC_ERROR_CODES.NO_HELLO!);
    expectRpcError(await rpc.call('changes', { folder: 'docs', after: 0, limit: 10 }), RPC_ERROR_CODES.NO_HELLO!);
    expectRpcError(await rpc.call('ack', { folder: 'docs', seq: 1_000_000 }), RPC_ERROR_CODES.NO_HELLO!);
    for (const method of ['rm', 'exec', '__proto__', 'constructor', 'hasOwnProperty', 'status', 'tasks', 'retry', 'stop', 'changed', '']) {
      expectRpcError(await rpc.call(method, {}), -32601);
    }
    // A notification of an unknown method gets no answer, and the stream still works.
    rpc.sendLine(JSON.stringify({ jsonrpc: '2.0', method: 'stop', params: {} }));
    expectRpcError(await rpc.call('nope', {}), -32601);
    rpc.close();
    expect(await fs.readFile(path.join(hub, 'legit.txt'), 'utf8')).toBe('legit');
    await expectServerAlive();
  });

  it('gets an error for malformed JSON and malformed envelopes', async () => {
    const rpc = await openRogue();
    for (const line of ['{"jsonrpc":"2.0","id":1,', 'not json', '{"a":1}}', '\u0000\u0001\u0002', '{"jsonrpc":"2.0","id":1,"method":"hello","params":{"node":"x","folders":["docs"],"protocol":1}']) {
      rpc.sendLine(line);
      expectRpcError(await rpc.response(null), -32700);
    }
    const invalid: unknown[] = [
      [],
      [{ jsonrpc: '2.0', id: 1, method: 'hello' }],
      'a string',
      42,
      null,
      { jsonrpc: '1.0', id: 7, method: 'hello', params: {} },
      { jsonrpc: '2.0', id: 8, method: 7, params: {} },
      { jsonrpc: '2.0', id: 9, method: 'hello', params: {}, result: 1 },
      { jsonrpc: '2.0', id: 10, method: 'hello', params: {}, extra: true },
      { jsonrpc: '2.0', id: 11 },
    ];
    for (const message of invalid) {
      rpc.sendLine(JSON.stringify(message));
      const id = typeof message === 'object' && message !== null && !Array.isArray(message) && 'id' in message ? (message as { id: unknown }).id : null;
      expectRpcError(await rpc.response(id), -32600);
    }
    // An id that is an object cannot be echoed: the answer has id null.
    rpc.sendLine(JSON.stringify({ jsonrpc: '2.0', id: { evil: true }, method: 'hello', params: {} }));
    expectRpcError(await rpc.response(null), -32600);
    // Deeply nested JSON: parsed or refused, never a crash.
    rpc.sendLine(`${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`);
    expect((await rpc.response(null)).error).toBeDefined();
    // Params of the wrong shape.
    for (const params of [null, [], 'x', 1, [{ node: 'x' }]]) expectRpcError(await rpc.call('hello', params), -32602);
    rpc.close();
    await expectServerAlive();
  });

  it('refuses bad hellos: bad node names, bad folder names, the server\'s own name, wrong protocol', async () => {
    const rpc = await openRogue();
    const bad: unknown[] = [
      { node: `../${TOKEN}`, folders: ['docs'], protocol: 1 },
      { node: `a/${TOKEN}`, folders: ['docs'], protocol: 1 },
      { node: `${TOKEN}\0`, folders: ['docs'], protocol: 1 },
      { node: '', folders: ['docs'], protocol: 1 },
      { node: 'x'.repeat(5 * 1024 * 1024), folders: ['docs'], protocol: 1 },
      { node: 'rogue', folders: [`../${TOKEN}`], protocol: 1 },
      { node: 'rogue', folders: ['.systemsync'], protocol: 1 },
      { node: 'rogue', folders: ['/etc'], protocol: 1 },
      { node: 'rogue', folders: Array.from({ length: 1001 }, (_, i) => `f${i}`), protocol: 1 },
      { node: 'rogue', folders: ['docs'], protocol: 2 },
      { node: 'rogue', folders: ['docs'] },
      { node: 'rogue', folders: ['docs'], protocol: 1, __proto__x: 1 },
      JSON.parse('{"node":"rogue","folders":["docs"],"protocol":1,"__proto__":{"isAdmin":true}}'),
    ];
    for (const params of bad) expectRpcError(await rpc.call('hello', params), -32602);
    expectRpcError(await rpc.call('hello', { node: 'hub', folders: ['docs'], protocol: 1 }), /NAME_TAKEN/);
    // Still no session: push is refused.
    expectRpcError(await rpc.call('push', { folder: 'docs', ops: [{ op: 'delete', path: 'legit.txt', base: null }] }), RPC_ERROR_CODES.NO_HELLO!);
    rpc.close();
    await expectServerAlive();
  });

  it('refuses every bad path in put, delete and rename, and folders it does not serve', async () => {
    const logMark = cluster.server.log().length;
    const rpc = await openRogue();
    const hello = await rpc.call('hello', { node: 'rogue', folders: ['docs', 'nope'], protocol: 1 });
    expect(hello.error).toBeUndefined();
    const info = hello.result as { folders: Record<string, { root: string; tmp: string }>; missing: string[] };
    expect(info.missing).toEqual(['nope']);
    expect(Object.keys(info.folders)).toEqual(['docs']);

    const legit = fileEntry('legit');
    for (const [what, bad] of BAD_PATHS) {
      const calls: Array<[string, unknown]> = [
        ['put file', { op: 'put', path: bad, base: null, entry: fileEntry(TOKEN), upload: null }],
        ['put dir', { op: 'put', path: bad, base: null, entry: { type: 'dir', mode: 0o755 }, upload: null }],
        ['put symlink', { op: 'put', path: bad, base: null, entry: { type: 'symlink', target: '/etc/passwd' }, upload: null }],
        ['delete', { op: 'delete', path: bad, base: null }],
        ['rename from', { op: 'rename', from: bad, to: `${TOKEN}.txt`, base: null, toBase: null, entry: legit }],
        ['rename to', { op: 'rename', from: 'legit.txt', to: bad, base: 1, toBase: null, entry: legit }],
      ];
      for (const [kind, op] of calls) {
        const reply = await rpc.call('push', { folder: 'docs', ops: [op] });
        expect(reply.error, `${what} (${JSON.stringify(bad).slice(0, 80)}) in ${kind} was accepted: ${JSON.stringify(reply.result)}`).toBeDefined();
        expect(reply.error!.code).toBe(-32602);
      }
    }
    // Hostile upload names: slashes, dots, traversal, absolute.
    for (const upload of [`../${TOKEN}`, `a/${TOKEN}`, '..', '.', `/etc/${TOKEN}`, `..\\${TOKEN}`, `${TOKEN}\0`, '', 'x'.repeat(200)]) {
      const reply = await rpc.call('push', { folder: 'docs', ops: [{ op: 'put', path: `${TOKEN}.txt`, base: null, entry: fileEntry('x'), upload }] });
      expectRpcError(reply, -32602);
    }
    // Other malformed ops and params.
    const malformed: unknown[] = [
      { folder: 'docs', ops: [] },
      { folder: 'docs', ops: [{ op: 'chmod', path: 'legit.txt' }] },
      { folder: 'docs', ops: [{ op: 'put', path: `${TOKEN}.txt`, base: -1, entry: fileEntry('x'), upload: null }] },
      { folder: 'docs', ops: [{ op: 'put', path: `${TOKEN}.txt`, base: null, entry: { ...fileEntry('x'), mode: 0o17777 }, upload: null }] },
      { folder: 'docs', ops: [{ op: 'put', path: `${TOKEN}.txt`, base: null, entry: { ...fileEntry('x'), hash: 'zz' }, upload: null }] },
      { folder: 'docs', ops: [{ op: 'put', path: `${TOKEN}.txt`, base: null, entry: { type: 'fifo' }, upload: null }] },
      { folder: 'docs', ops: [{ op: 'put', path: `${TOKEN}.txt`, base: null, entry: { type: 'symlink', target: `a\0b` }, upload: null }] },
      { folder: 'docs', ops: [{ op: 'delete', path: `${TOKEN}.txt`, base: null, extra: 1 }] },
      { folder: `../${TOKEN}`, ops: [{ op: 'delete', path: 'legit.txt', base: null }] },
      { folder: 'docs', ops: Array.from({ length: 1001 }, (_, i) => ({ op: 'delete', path: `${TOKEN}-${i}`, base: null })) },
      { folder: 'docs', ops: [{ op: 'delete', path: 'y'.repeat(5 * 1024 * 1024), base: null }] },
    ];
    for (const params of malformed) expectRpcError(await rpc.call('push', params), -32602);
    for (const params of [
      { folder: 'docs', after: -1, limit: 10 },
      { folder: 'docs', after: 0, limit: 0 },
      { folder: 'docs', after: 0, limit: 1e9 },
      { folder: 'docs', after: 1.5, limit: 10 },
      { folder: 'docs', after: '0', limit: 10 },
    ]) {
      expectRpcError(await rpc.call('changes', params), -32602);
    }
    expectRpcError(await rpc.call('ack', { folder: 'docs', seq: -5 }), -32602);
    expectRpcError(await rpc.call('ack', { folder: 'docs', seq: 2 ** 60 }), -32602);

    // A folder the server does not serve (or that this session did not ask for), in every method.
    for (const folder of ['nope', 'photos']) {
      expectRpcError(await rpc.call('push', { folder, ops: [{ op: 'delete', path: 'legit.txt', base: null }] }), /UNKNOWN_FOLDER/);
      expectRpcError(await rpc.call('changes', { folder, after: 0, limit: 10 }), /UNKNOWN_FOLDER/);
      expectRpcError(await rpc.call('ack', { folder, seq: 0 }), /UNKNOWN_FOLDER/);
    }
    rpc.close();
    expect(await fs.readFile(path.join(hub, 'legit.txt'), 'utf8')).toBe('legit');
    await expectServerAlive();
    // The server logged its refusals.
    expect(cluster.server.log().slice(logMark)).toMatch(/refused: params/);
  });

  it('refuses an upload that is a symlink planted in .systemsync/tmp pointing at /etc/passwd', async () => {
    const rpc = await openRogue();
    const info = (await rpc.call('hello', { node: 'rogue', folders: ['docs'], protocol: 1 })).result as { folders: Record<string, { root: string; tmp: string }> };
    const { tmp } = info.folders.docs!;
    const linkName = `${TOKEN}-link.up`;
    await new Promise<void>((resolve, reject) => ssh.sftp.symlink('/etc/passwd', `${tmp}/${linkName}`, (err) => (err ? reject(err) : resolve())));
    expect(await fs.readlink(path.join(tmp, linkName))).toBe('/etc/passwd');

    const passwd = await fs.readFile('/etc/passwd');
    const reply = await rpc.call('push', {
      folder: 'docs',
      ops: [{ op: 'put', path: `${TOKEN}-passwd.txt`, base: null, entry: fileEntry(passwd), upload: linkName }],
    });
    expect(reply.error).toBeUndefined();
    const [result] = (reply.result as { results: Array<{ status: string; code?: string; message?: string }> }).results;
    expect(result!.status).toBe('error');
    expect(result!.code).toMatch(/UPLOAD_MISSING|BAD_UPLOAD/);
    expect(result!.message).toMatch(/ELOOP|symbolic link|not a regular file/i);
    await expect(fs.lstat(path.join(hub, `${TOKEN}-passwd.txt`))).rejects.toThrow(/ENOENT/);
    expect(await passwdFacts()).toEqual(passwdBefore);
    rpc.close();
    await expectServerAlive();
  });

  it('never writes, moves or deletes through a parent directory that is a symlink to outside', async () => {
    const logMark = cluster.server.log().length;
    const rpc = await openRogue();
    const info = (await rpc.call('hello', { node: 'rogue', folders: ['docs'], protocol: 1 })).result as { folders: Record<string, { root: string; tmp: string }> };
    const { root, tmp } = info.folders.docs!;
    expect(root).toBe(hub);
    const linkName = `${TOKEN}-escape`;
    await new Promise<void>((resolve, reject) => ssh.sftp.symlink(outside, `${root}/${linkName}`, (err) => (err ? reject(err) : resolve())));
    expect(await fs.readlink(path.join(hub, linkName))).toBe(outside);

    // A genuine upload in tmp, with the right hash: only the destination is hostile.
    const content = Buffer.from(`written through a symlink ${TOKEN}`);
    const upload = `${TOKEN}-good.up`;
    await new Promise<void>((resolve, reject) => ssh.sftp.writeFile(`${tmp}/${upload}`, content, (err) => (err ? reject(err) : resolve())));
    const results = async (ops: unknown[]): Promise<Array<{ status: string; code?: string; message?: string; current?: unknown }>> => {
      const reply = await rpc.call('push', { folder: 'docs', ops });
      expect(reply.error, JSON.stringify(reply.error)).toBeUndefined();
      return (reply.result as { results: Array<{ status: string; code?: string; message?: string }> }).results;
    };

    const [put] = await results([{ op: 'put', path: `${linkName}/${TOKEN}.txt`, base: null, entry: fileEntry(content), upload }]);
    expect(put!.status).toBe('error');
    expect(put!.code).toBe('UNSAFE_PATH');
    // Overwriting a file that exists outside, a directory, a symlink, a nested directory.
    await new Promise<void>((resolve, reject) => ssh.sftp.writeFile(`${tmp}/${upload}`, content, (err) => (err ? reject(err) : resolve())));
    const more = await results([
      { op: 'put', path: `${linkName}/victim.txt`, base: null, entry: fileEntry(content), upload },
      { op: 'put', path: `${linkName}/${TOKEN}-dir`, base: null, entry: { type: 'dir', mode: 0o777 }, upload: null },
      { op: 'put', path: `${linkName}/${TOKEN}-link`, base: null, entry: { type: 'symlink', target: '/etc/passwd' }, upload: null },
      { op: 'put', path: `${linkName}/sub/${TOKEN}/deep`, base: null, entry: { type: 'dir', mode: 0o777 }, upload: null },
      { op: 'put', path: `${linkName}/victim.txt`, base: null, entry: { ...fileEntry('do not touch'), mode: 0o777 }, upload: null },
    ]);
    for (const r of more) expect(['error', 'stale']).toContain(r.status);
    for (const r of more.filter((x) => x.status === 'error')) expect(r.code).toMatch(/UNSAFE_PATH|UPLOAD_MISSING/);

    // Deletes and renames through the link, with every base a rogue might guess.
    for (const base of [null, 0, 1, 2, 3, 1000]) {
      const rs = await results([
        { op: 'delete', path: `${linkName}/victim.txt`, base },
        { op: 'delete', path: `${linkName}/sub`, base },
        { op: 'rename', from: `${linkName}/victim.txt`, to: `${TOKEN}-stolen.txt`, base, toBase: null, entry: fileEntry('do not touch') },
        { op: 'rename', from: 'legit.txt', to: `${linkName}/${TOKEN}-moved.txt`, base, toBase: null, entry: fileEntry('legit') },
      ]);
      for (const r of rs) expect(r.status).not.toBe('ok');
    }
    // Nothing outside was read into the change log either: the feed never lists a path under the link.
    const feed = await rpc.call('changes', { folder: 'docs', after: 0, limit: 5000 });
    const paths = (feed.result as { changes: Array<{ path: string }> }).changes.map((c) => c.path);
    expect(paths).toContain('legit.txt');
    expect(paths.filter((p) => p.startsWith(`${linkName}/`))).toEqual([]);

    expect(await snapshotTree(outside)).toEqual(outsideBefore);
    expect(await fs.readFile(path.join(hub, 'legit.txt'), 'utf8')).toBe('legit');
    rpc.close();
    await expectServerAlive();
    expect(cluster.server.log().slice(logMark)).toMatch(/UNSAFE_PATH|symlink/);
  });

  it('bundles: refuses bad requests, never reads through a symlink, and refuses pushed parts that lie or overrun', async () => {
    const rpc = await openRogue();
    const info = (await rpc.call('hello', { node: 'rogue', folders: ['docs'], protocol: 1 })).result as { folders: Record<string, { root: string; tmp: string }> };
    const { tmp } = info.folders.docs!;
    const legitHash = fileEntry('legit').hash;
    for (const [, bad] of BAD_PATHS) expectRpcError(await rpc.call('bundle', { folder: 'docs', files: [{ path: bad, hash: legitHash }] }));
    expectRpcError(await rpc.call('bundle', { folder: 'docs', files: [] }));
    expectRpcError(await rpc.call('bundle', { folder: 'docs', files: Array.from({ length: 1001 }, () => ({ path: 'legit.txt', hash: legitHash })) }));
    expectRpcError(await rpc.call('bundle', { folder: 'docs', files: [{ path: 'legit.txt', hash: 'A'.repeat(64) }] }));
    expectRpcError(await rpc.call('bundle', { folder: 'nope', files: [{ path: 'legit.txt', hash: legitHash }] }));

    // A genuine request: the bundle holds legit.txt's bytes; unknown or mismatched files get null.
    const made = (await rpc.call('bundle', {
      folder: 'docs',
      files: [
        { path: 'legit.txt', hash: legitHash },
        { path: `${TOKEN}-never-synced.txt`, hash: legitHash },
      ],
    })).result as { bundle: string; parts: Array<{ offset: number; length: number } | null> };
    expect(made.parts).toEqual([{ offset: 0, length: 5 }, null]);
    expect((await rpc.call('bundle', { folder: 'docs', files: [{ path: 'legit.txt', hash: FAKE_HASH }] })).result).toEqual({ bundle: null, parts: [null] });
    expect(await fs.readFile(path.join(tmp, made.bundle), 'utf8')).toBe('legit');
    await fs.rm(path.join(tmp, made.bundle));

    // A synced file swapped for a symlink to /etc/passwd: never read through it.
    const swapped = 'bundle-swapped.txt'; // synced for real: no token in its name
    await fs.writeFile(path.join(alpha, swapped), 'swap me');
    await waitFor(async () => (await fs.readFile(path.join(hub, swapped), 'utf8').catch(() => null)) === 'swap me', { what: `${swapped} on the hub` });
    await new Promise<void>((resolve, reject) => ssh.sftp.unlink(`${info.folders.docs!.root}/${swapped}`, (err) => (err ? reject(err) : resolve())));
    await new Promise<void>((resolve, reject) => ssh.sftp.symlink('/etc/passwd', `${info.folders.docs!.root}/${swapped}`, (err) => (err ? reject(err) : resolve())));
    const throughLink = (await rpc.call('bundle', { folder: 'docs', files: [{ path: swapped, hash: fileEntry('swap me').hash }] })).result as { bundle: string | null; parts: unknown[] };
    expect(throughLink).toEqual({ bundle: null, parts: [null] });

    // Pushed parts: past the end of their bundle, a hash that lies, a bundle that is a symlink.
    const content = Buffer.from(`bundled ${TOKEN}`);
    const bundle = `${TOKEN}-bundle.up`;
    const pushParts = async (ops: unknown[]): Promise<Array<{ status: string; code?: string }>> => {
      await new Promise<void>((resolve, reject) => ssh.sftp.writeFile(`${tmp}/${bundle}`, content, (err) => (err ? reject(err) : resolve())));
      const reply = await rpc.call('push', { folder: 'docs', ops });
      expect(reply.error, JSON.stringify(reply.error)).toBeUndefined();
      return (reply.result as { results: Array<{ status: string; code?: string }> }).results;
    };
    const [overrun] = await pushParts([{ op: 'put', path: `${TOKEN}-overrun.txt`, base: null, entry: fileEntry(content), upload: bundle, part: { offset: 4, length: content.length } }]);
    expect(overrun).toMatchObject({ status: 'error', code: 'BAD_UPLOAD' });
    const [liar] = await pushParts([{ op: 'put', path: `${TOKEN}-liar.txt`, base: null, entry: fileEntry('something else entirely'), upload: bundle, part: { offset: 0, length: content.length } }]);
    expect(liar).toMatchObject({ status: 'error', code: 'HASH_MISMATCH' });
    expectRpcError(await rpc.call('push', { folder: 'docs', ops: [{ op: 'put', path: `${TOKEN}-neg.txt`, base: null, entry: fileEntry(content), upload: bundle, part: { offset: -1, length: 3 } }] }));
    const linkBundle = `${TOKEN}-passwd.bundle`;
    await new Promise<void>((resolve, reject) => ssh.sftp.symlink('/etc/passwd', `${tmp}/${linkBundle}`, (err) => (err ? reject(err) : resolve())));
    const passwd = await fs.readFile('/etc/passwd');
    const reply = await rpc.call('push', { folder: 'docs', ops: [{ op: 'put', path: `${TOKEN}-passwd2.txt`, base: null, entry: fileEntry(passwd), upload: linkBundle, part: { offset: 0, length: passwd.length } }] });
    const [viaLink] = (reply.result as { results: Array<{ status: string; code?: string }> }).results;
    expect(viaLink!.status).toBe('error');
    expect(viaLink!.code).toMatch(/UPLOAD_MISSING|BAD_UPLOAD/);
    for (const name of [`${TOKEN}-overrun.txt`, `${TOKEN}-liar.txt`, `${TOKEN}-neg.txt`, `${TOKEN}-passwd2.txt`]) {
      await expect(fs.lstat(path.join(hub, name))).rejects.toThrow(/ENOENT/);
    }
    expect(await passwdFacts()).toEqual(passwdBefore);
    // The tmp dir swapped for a symlink to outside: the server writes no bundle or part through it
    // (it replaces the link by a real directory, see e2e-reserved, or refuses the call).
    const outsideTmp = path.join(cluster.dir, `${TOKEN}-outside-tmp`);
    await fs.mkdir(outsideTmp);
    await fs.rename(tmp, `${tmp}.moved`);
    for (let attempt = 1; ; attempt++) {
      try {
        await fs.symlink(outsideTmp, tmp);
        break;
      } catch (err) {
        // The server's presence check may have made tmp again in between.
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 20) throw err;
        await fs.rm(tmp, { recursive: true, force: true });
      }
    }
    try {
      const viaLinkReply = await rpc.call('bundle', { folder: 'docs', files: [{ path: 'legit.txt', hash: legitHash }] });
      if (viaLinkReply.error !== undefined) expectRpcError(viaLinkReply, /UNSAFE_PATH|symlink/);
      else expect((await fs.lstat(tmp)).isDirectory()).toBe(true);
      expect(await fs.readdir(outsideTmp)).toEqual([]);
      await fs.writeFile(path.join(outsideTmp, bundle), content);
      const swappedReply = await rpc.call('push', { folder: 'docs', ops: [{ op: 'put', path: 'bundle-via-link.txt', base: null, entry: fileEntry(content), upload: bundle, part: { offset: 0, length: content.length } }] });
      const [viaSwapped] = (swappedReply.result as { results: Array<{ status: string }> }).results;
      expect(viaSwapped!.status).toBe('error');
      expect(await fs.readdir(outsideTmp)).toEqual([bundle]); // not read, not removed, nothing added
    } finally {
      await fs.rm(tmp, { recursive: true, force: true });
      await fs.rename(`${tmp}.moved`, tmp);
      await fs.rm(outsideTmp, { recursive: true });
    }
    await expect(fs.lstat(path.join(hub, 'bundle-via-link.txt'))).rejects.toThrow(/ENOENT/);
    // A genuine bundled push commits, and the bundle is gone afterwards.
    const [good] = await pushParts([{ op: 'put', path: 'bundle-ok.txt', base: null, entry: fileEntry(content), upload: bundle, part: { offset: 0, length: content.length } }]);
    expect(good!.status).toBe('ok');
    expect(await fs.readFile(path.join(hub, 'bundle-ok.txt'))).toEqual(content);
    await expect(fs.lstat(path.join(tmp, bundle))).rejects.toThrow(/ENOENT/);
    rpc.close();
    await expectServerAlive();
  });

  it('bundles and parts cannot amplify: duplicates and overlaps refused, temp space capped per session and in total, freed when read or when the session ends', async () => {
    const MiB = 1024 * 1024;
    // 256 files of 64 KiB made on the hub: one bundle of all of them is 16 MiB, the largest there is.
    await fs.mkdir(path.join(hub, 'quota'));
    const files: Array<{ path: string; hash: string }> = [];
    for (let i = 0; i < 256; i++) {
      const data = crypto.randomBytes(64 * 1024);
      await fs.writeFile(path.join(hub, 'quota', `f${i}`), data);
      files.push({ path: `quota/f${i}`, hash: crypto.createHash('sha256').update(data).digest('hex') });
    }
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs: 120_000 });
    await waitIdle(cluster.all);
    const tmpDir = path.join(hub, '.systemsync', 'tmp');
    let peak = 0;
    const tmpBytes = async (): Promise<number> => {
      let n = 0;
      for (const name of await fs.readdir(tmpDir)) n += (await fs.lstat(path.join(tmpDir, name)).catch(() => null))?.size ?? 0;
      peak = Math.max(peak, n);
      return n;
    };
    const baseline = await tmpBytes();
    const session = async (node: string): Promise<RawRpc> => {
      const rpc = await openRogue();
      expect((await rpc.call('hello', { node, folders: ['docs'], protocol: 1 })).error).toBeUndefined();
      return rpc;
    };
    const bundleOf = async (rpc: RawRpc): Promise<RpcMessage> => rpc.call('bundle', { folder: 'docs', files });
    const nameOf = (reply: RpcMessage): string => {
      expect(reply.error, JSON.stringify(reply.error)).toBeUndefined();
      const { bundle, parts } = reply.result as { bundle: string; parts: unknown[] };
      expect(parts.every((p) => p !== null)).toBe(true);
      return bundle;
    };

    // The same path twice (the old limit was 1000 copies of one file, 16 MiB each call).
    const a = await session('rogue-a');
    expectRpcError(await a.call('bundle', { folder: 'docs', files: [files[0], files[1], files[0]] }), /listed twice/);
    // Per session: four 16 MiB bundles, then TEMP_FULL until one is read and removed.
    const aBundles: string[] = [];
    for (let i = 0; i < 4; i++) aBundles.push(nameOf(await bundleOf(a)));
    expectRpcError(await bundleOf(a), /TEMP_FULL|holds/);
    expect(await tmpBytes()).toBeLessThanOrEqual(baseline + 64 * MiB);
    await new Promise<void>((resolve, reject) => ssh.sftp.unlink(`${tmpDir}/${aBundles.shift()!}`, (err) => (err ? reject(err) : resolve())));
    aBundles.push(nameOf(await bundleOf(a)));
    // In total: three more sessions at their cap make 256 MiB; a fifth session gets TEMP_FULL.
    const others = [await session('rogue-b'), await session('rogue-c'), await session('rogue-d')];
    const otherBundles: string[][] = [];
    for (const rpc of others) {
      const mine: string[] = [];
      for (let i = 0; i < 4; i++) mine.push(nameOf(await bundleOf(rpc)));
      otherBundles.push(mine);
    }
    const e = await session('rogue-e');
    expectRpcError(await bundleOf(e), /TEMP_FULL|full/);
    expect(await tmpBytes()).toBeLessThanOrEqual(baseline + 256 * MiB);
    // A session that ends takes its bundles with it, and its room is free again.
    others[0]!.close();
    await waitFor(async () => {
      const names = await fs.readdir(tmpDir);
      return otherBundles[0]!.every((n) => !names.includes(n));
    }, { what: 'the bundles of the closed session to be removed' });
    const eBundle = nameOf(await bundleOf(e));
    for (const rpc of [a, ...others.slice(1), e]) rpc.close();
    await waitFor(async () => {
      const names = await fs.readdir(tmpDir);
      return [...aBundles, ...otherBundles.flat(), eBundle].every((n) => !names.includes(n));
    }, { what: 'every bundle of the closed sessions to be removed' });
    expect(peak).toBeLessThanOrEqual(baseline + 256 * MiB);

    // Pushed parts: overlapping parts of one upload (one 64 KiB upload committed 1000 times over
    // was 64 MB), and a part longer than a bundled file may be.
    const p = await session('rogue-p');
    const data = await fs.readFile(path.join(hub, 'quota', 'f0'));
    const upload = `${TOKEN}-overlap.up`;
    await new Promise<void>((resolve, reject) => ssh.sftp.writeFile(`${tmpDir}/${upload}`, data, (err) => (err ? reject(err) : resolve())));
    const entry = { type: 'file', size: data.length, mtime: Date.now(), mode: 0o644, hash: files[0]!.hash };
    const ops = Array.from({ length: 1000 }, (_, i) => ({ op: 'put', path: `${TOKEN}-copy${i}`, base: null, entry, upload, part: { offset: 0, length: data.length } }));
    const reply = await p.call('push', { folder: 'docs', ops });
    expect(reply.error, JSON.stringify(reply.error)).toBeUndefined();
    const results = (reply.result as { results: Array<{ status: string; code?: string; message?: string }> }).results;
    expect(results.every((r) => r.status === 'error' && r.code === 'BAD_UPLOAD' && /overlap/.test(r.message ?? ''))).toBe(true);
    expect((await fs.readdir(hub)).filter((n) => n.startsWith(`${TOKEN}-copy`))).toEqual([]);
    await expect(fs.lstat(path.join(tmpDir, upload))).rejects.toThrow(/ENOENT/); // read once, removed
    const big = crypto.randomBytes(65 * 1024);
    const bigEntry = { type: 'file', size: big.length, mtime: Date.now(), mode: 0o644, hash: crypto.createHash('sha256').update(big).digest('hex') };
    expectRpcError(await p.call('push', { folder: 'docs', ops: [{ op: 'put', path: `${TOKEN}-big`, base: null, entry: bigEntry, upload, part: { offset: 0, length: big.length } }] }), /length/);
    p.close();
    await expectServerAlive();
  }, 300_000);

  it('drops a connection that sends a 10 MB line, and only that one', async () => {
    const bystander = await openRogue();
    expect((await bystander.call('hello', { node: 'bystander', folders: ['docs'], protocol: 1 })).error).toBeUndefined();

    const rpc = await openRogue();
    const huge = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'push', params: { folder: 'docs', ops: [{ op: 'delete', path: `${TOKEN}${'z'.repeat(10 * 1024 * 1024)}`, base: null }] } });
    rpc.sendLine(huge);
    await rpc.waitClosed();

    const noNewline = await openRogue();
    noNewline.stream.write('{'.repeat(10 * 1024 * 1024));
    await noNewline.waitClosed();

    const manyOps = await openRogue();
    const ops = Array.from({ length: 200_000 }, (_, i) => ({ op: 'delete', path: `${TOKEN}/${i}`, base: null }));
    manyOps.sendLine(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'push', params: { folder: 'docs', ops } }));
    await manyOps.waitClosed();

    // The other session was not disturbed.
    const feed = await bystander.call('changes', { folder: 'docs', after: 0, limit: 10 });
    expect(feed.error).toBeUndefined();
    bystander.close();
    await expectServerAlive();
    expect(cluster.server.log()).toMatch(/dropping the connection: line longer than \d+ bytes/);
  });

  it('a client whose synced directory is replaced by a symlink to outside syncs the link, never what is behind it', async () => {
    await fs.mkdir(path.join(alpha, 'swapped'));
    await fs.writeFile(path.join(alpha, 'swapped', 'file.txt'), 'original');
    await waitForTreesEqual([hub, alpha, beta]);
    const secretDir = await makeTree({ 'file.txt': `SECRET ${TOKEN}` }, path.join(cluster.dir, 'outside-secret'));
    await fs.rm(path.join(alpha, 'swapped'), { recursive: true });
    await fs.symlink(secretDir, path.join(alpha, 'swapped'));
    await waitForTreesEqual([hub, alpha, beta]);
    for (const root of [hub, beta]) {
      expect((await fs.lstat(path.join(root, 'swapped'))).isSymbolicLink()).toBe(true);
      expect(await fs.readlink(path.join(root, 'swapped'))).toBe(secretDir);
    }
    // The secret was never read into a folder: no file inside any folder (trash included) holds it.
    const holders: string[] = [];
    const grep = async (dir: string): Promise<void> => {
      for (const name of await fs.readdir(dir)) {
        const abs = path.join(dir, name);
        const st = await fs.lstat(abs);
        if (st.isDirectory()) await grep(abs);
        else if (st.isFile() && (await fs.readFile(abs, 'utf8')).includes('SECRET')) holders.push(abs);
      }
    };
    for (const root of [hub, alpha, beta]) await grep(root);
    expect(holders).toEqual([]);
    expect(await fs.readFile(path.join(secretDir, 'file.txt'), 'utf8')).toBe(`SECRET ${TOKEN}`);
  });

  it('keeps the server up and normal sync working beside the rogue sessions', async () => {
    await expectServerAlive();
    // A normal client still syncs a new file to another client.
    await fs.writeFile(path.join(alpha, 'after-the-attack.txt'), 'still syncing');
    await waitFor(async () => (await fs.readFile(path.join(beta, 'after-the-attack.txt'), 'utf8').catch(() => null)) === 'still syncing', {
      timeoutMs: 30_000,
      what: 'after-the-attack.txt on beta',
    });
    await waitIdle(cluster.all);
    await waitForTreesEqual([hub, alpha, beta]);
  });
});

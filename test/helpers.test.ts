import { promises as fsp } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startProxy } from './helpers/proxy.js';
import { cleanupTempDirs, diffTrees, expectSameTree, makeTree, snapshotTree, tempDir, type TreeSpec } from './helpers/tree.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';

afterAll(cleanupTempDirs);

const MTIME = Date.UTC(2024, 0, 2, 3, 4, 5, 678);

const base: TreeSpec = {
  'a.txt': { content: 'hello', mtime: MTIME },
  'sub/deep/b.bin': { content: Buffer.from([0, 1, 2, 255]), mtime: MTIME },
  'sub/exec.sh': { content: '#!/bin/sh\n', mode: 0o755, mtime: MTIME },
  'empty': { dir: true },
  'link': { symlink: 'sub/deep/b.bin' },
  'dangling': { symlink: '../outside/nowhere' },
};

describe('makeTree / snapshotTree', () => {
  it('builds the spec and snapshots it with lstat, skipping .systemsync', async () => {
    const root = await makeTree({ ...base, '.systemsync/tmp/x': 'internal' });
    const snap = await snapshotTree(root);
    expect([...snap.keys()]).toEqual(['a.txt', 'dangling', 'empty', 'link', 'sub', 'sub/deep', 'sub/deep/b.bin', 'sub/exec.sh']);
    expect(snap.get('a.txt')).toMatchObject({
      type: 'file',
      size: 5,
      hash: '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
    });
    expect(snap.get('sub/exec.sh')).toMatchObject({ type: 'file', mode: 0o755, mtime: MTIME });
    expect(snap.get('empty')).toMatchObject({ type: 'dir' });
    expect(snap.get('link')).toEqual({ type: 'symlink', target: 'sub/deep/b.bin' });
    expect(snap.get('dangling')).toEqual({ type: 'symlink', target: '../outside/nowhere' });
    expect(await fsp.readFile(path.join(root, 'sub/deep/b.bin'))).toEqual(Buffer.from([0, 1, 2, 255]));
  });

  it('honours exclude (a directory excludes its contents)', async () => {
    const root = await makeTree(base);
    const snap = await snapshotTree(root, { exclude: ['sub', 'a.txt'] });
    expect([...snap.keys()]).toEqual(['dangling', 'empty', 'link']);
  });

  it('builds under a given root', async () => {
    const parent = await tempDir();
    const root = await makeTree({ 'x/y.txt': 'y' }, path.join(parent, 'nested'));
    expect(root).toBe(path.join(parent, 'nested'));
    expect(await fsp.readFile(path.join(root, 'x/y.txt'), 'utf8')).toBe('y');
  });

  it('rejects paths that would escape the root', async () => {
    await expect(makeTree({ '../escape': 'x' })).rejects.toThrow(/bad path "..\/escape"/);
    await expect(makeTree({ '/abs': 'x' })).rejects.toThrow(/bad path/);
  });
});

describe('diffTrees', () => {
  it('is empty for identical trees built twice', async () => {
    const a = await snapshotTree(await makeTree(base));
    const b = await snapshotTree(await makeTree(base));
    expect(diffTrees(a, b)).toEqual([]);
    await expectSameTree(a, b);
  });

  it.each<{ description: string; change: TreeSpec; pattern: RegExp }>([
    { description: 'content', change: { 'a.txt': { content: 'HELLO', mtime: MTIME } }, pattern: /^a\.txt: content differs/ },
    { description: 'mode', change: { 'sub/exec.sh': { content: '#!/bin/sh\n', mode: 0o700, mtime: MTIME } }, pattern: /^sub\/exec\.sh: mode differs: a 755, b 700/ },
    { description: 'mtime', change: { 'sub/exec.sh': { content: '#!/bin/sh\n', mode: 0o755, mtime: MTIME + 1 } }, pattern: /^sub\/exec\.sh: mtime differs/ },
    { description: 'symlink target', change: { link: { symlink: 'a.txt' } }, pattern: /^link: symlink target differs: a -> sub\/deep\/b\.bin, b -> a\.txt/ },
    { description: 'type', change: { link: 'now a file' }, pattern: /^link: type differs: a has symlink/ },
    { description: 'extra path', change: { 'new.txt': { content: 'x', mtime: MTIME } }, pattern: /^new\.txt: only in b/ },
  ])('reports a $description difference', async ({ change, pattern }) => {
    const a = await snapshotTree(await makeTree(base));
    const b = await snapshotTree(await makeTree({ ...base, ...change }));
    const diff = diffTrees(a, b);
    expect(diff).toHaveLength(1);
    expect(diff[0]).toMatch(pattern);
    await expect(expectSameTree(a, b)).rejects.toThrow(/trees differ \(1 difference\)/);
  });

  it('reports a missing path and a dir mode', async () => {
    const rootA = await makeTree(base);
    const rootB = await makeTree(base);
    await fsp.rm(path.join(rootB, 'a.txt'));
    await fsp.chmod(path.join(rootB, 'empty'), 0o700);
    const diff = diffTrees(await snapshotTree(rootA), await snapshotTree(rootB));
    expect(diff).toEqual([expect.stringMatching(/^a\.txt: only in a: file/), expect.stringMatching(/^empty: mode differs/)]);
  });

  it('ignores directory mtimes', async () => {
    const rootA = await makeTree(base);
    const rootB = await makeTree(base);
    await fsp.utimes(path.join(rootB, 'sub'), new Date(0), new Date(0));
    await expectSameTree(rootA, rootB);
  });
});

describe('waitFor / waitForTreesEqual', () => {
  it('resolves with the first truthy value', async () => {
    let n = 0;
    const value = await waitFor(() => (++n >= 3 ? { n } : null), { intervalMs: 1, timeoutMs: 5000, what: 'n to reach 3' });
    expect(value).toEqual({ n: 3 });
  });

  it('times out naming what it waited for and the last value or error', async () => {
    await expect(waitFor(() => 0, { timeoutMs: 50, intervalMs: 5, what: 'the thing' })).rejects.toThrow(
      /waiting for the thing; last value: 0/,
    );
    await expect(
      waitFor(
        () => {
          throw new Error('boom');
        },
        { timeoutMs: 50, intervalMs: 5, what: 'x' },
      ),
    ).rejects.toThrow(/last error: Error: boom/);
  });

  it('waits until trees converge, and fails with the diff otherwise', async () => {
    const a = await makeTree({ 'f.txt': { content: 'v2', mtime: MTIME } });
    const b = await makeTree({ 'f.txt': { content: 'v1', mtime: MTIME } });
    const fix = setTimeout(() => {
      void makeTree({ 'f.txt': { content: 'v2', mtime: MTIME } }, b);
    }, 100);
    try {
      const snap = await waitForTreesEqual([a, b], { timeoutMs: 10_000 });
      expect(snap.get('f.txt')).toMatchObject({ type: 'file', size: 2 });
    } finally {
      clearTimeout(fix);
    }
    const c = await makeTree({ 'f.txt': 'other' });
    await expect(waitForTreesEqual([a, c], { timeoutMs: 200 })).rejects.toThrow(/f\.txt: content differs/);
  });
});

describe('startProxy', () => {
  async function startEchoServer(): Promise<{ port: number; close: () => Promise<void> }> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    return {
      port,
      close: () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    };
  }

  function connect(port: number): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
      s.once('error', reject);
    });
  }

  /** Sends `text` and resolves with what comes back once `text.length` bytes have arrived. */
  function roundTrip(socket: net.Socket, text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      let got = '';
      const onData = (d: Buffer): void => {
        got += d.toString();
        if (got.length >= text.length) {
          socket.off('data', onData);
          resolve(got);
        }
      };
      socket.on('data', onData);
      socket.once('error', reject);
      socket.write(text);
    });
  }

  function closed(socket: net.Socket): Promise<void> {
    return new Promise((resolve) => {
      if (socket.destroyed) resolve();
      else socket.once('close', () => resolve());
    });
  }

  /** Resolves true if a new connection through the port is closed by the other side without data. */
  async function isRefused(port: number): Promise<boolean> {
    const s = await connect(port).catch(() => null);
    if (s === null) return true;
    s.on('error', () => undefined);
    await closed(s);
    return true;
  }

  it('forwards, counts bytes, cuts live links, refuses until restored, adds latency', async () => {
    const echo = await startEchoServer();
    const proxy = await startProxy({ targetPort: echo.port });
    try {
      const s1 = await connect(proxy.port);
      s1.on('error', () => undefined);
      expect(await roundTrip(s1, 'ping')).toBe('ping');
      expect(proxy.bytesForwarded()).toEqual({ up: 4, down: 4 });
      expect(proxy.connections()).toBe(1);

      const big = 'x'.repeat(1 << 20);
      expect((await roundTrip(s1, big)).length).toBe(big.length);
      expect(proxy.bytesForwarded()).toEqual({ up: 4 + big.length, down: 4 + big.length });

      proxy.cut();
      await closed(s1);
      expect(proxy.connections()).toBe(0);
      expect(await isRefused(proxy.port)).toBe(true);
      expect(proxy.bytesForwarded().up).toBe(4 + big.length);

      proxy.restore();
      proxy.setLatency(30);
      const s2 = await connect(proxy.port);
      s2.on('error', () => undefined);
      const parts = await Promise.all([roundTrip(s2, 'abc')]);
      expect(parts[0]).toBe('abc');
      proxy.setLatency(0);
      expect(await roundTrip(s2, 'after')).toBe('after');
      s2.destroy();
      expect(() => proxy.setLatency(-1)).toThrow(/non-negative/);
    } finally {
      await proxy.close();
      await echo.close();
    }
  });
});

/**
 * The whole sync path, end to end: one server daemon and two client daemons as separate
 * processes, real folders, once through a real sshd and once through the server's embedded
 * endpoint (no sshd). Every step ends when all three trees are identical by path, type, content
 * hash, mode and mtime.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { CLUSTER_MODES, startAll, startCluster, waitIdle, type Cluster } from './helpers/daemons.js';
import { startProxy, type TestProxy } from './helpers/proxy.js';
import { snapshotTree, cleanupTempDirs } from './helpers/tree.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';

async function writeRandomFile(file: string, bytes: number): Promise<string> {
  const hash = crypto.createHash('sha256');
  const out = createWriteStream(file);
  const chunk = 1 << 20;
  for (let done = 0; done < bytes; done += chunk) {
    const block = crypto.randomBytes(Math.min(chunk, bytes - done));
    hash.update(block);
    if (!out.write(block)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  return hash.digest('hex');
}

async function sha256(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  const handle = await fs.open(file);
  for await (const chunk of handle.createReadStream({ highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

describe.each(CLUSTER_MODES)('sync between a server and two clients (%s)', (mode) => {
  let cluster: Cluster;
  let proxy: TestProxy;
  let hub: string, alpha: string, beta: string;

  async function converge(timeoutMs = 60_000): Promise<void> {
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs });
  }

  beforeAll(async () => {
    // alpha reaches sshd through a counting proxy, to see how many bytes it sends.
    cluster = await startCluster({ clients: 2, noStart: true, mode });
    proxy = await startProxy({ targetPort: cluster.sshd.port });
    cluster.trustPort(proxy.port);
    cluster.writeClientConfig(cluster.clients[0]!, proxy.port);
    await startAll(cluster);
    [hub, alpha, beta] = [cluster.server.folder(), cluster.clients[0]!.folder(), cluster.clients[1]!.folder()];
  });

  afterAll(async () => {
    await cluster?.stop();
    await proxy?.close();
    await cleanupTempDirs();
  });

  async function serverHead(): Promise<number> {
    const status = (await cluster.server.control<{ folders: Array<{ head: number }> }>('status'));
    return status.folders[0]!.head;
  }

  // Each test works in a directory of its own, makes what it needs there, and ends with every tree
  // equal: no test relies on what another left, so they pass in any order.
  it('creates a file', async () => {
    await fs.mkdir(path.join(alpha, 'create'));
    await fs.writeFile(path.join(alpha, 'create/hello.txt'), 'hello world\n');
    await converge();
    expect(await fs.readFile(path.join(beta, 'create/hello.txt'), 'utf8')).toBe('hello world\n');
  });

  it('creates nested mkdir -p trees with files deep inside', async () => {
    await fs.mkdir(path.join(alpha, 'nested/a/b/c/d'), { recursive: true });
    await fs.writeFile(path.join(alpha, 'nested/a/b/c/d/deep.txt'), 'deep');
    await fs.writeFile(path.join(alpha, 'nested/a/b/mid.txt'), 'mid');
    await converge();
    expect(await fs.readFile(path.join(beta, 'nested/a/b/c/d/deep.txt'), 'utf8')).toBe('deep');
    expect(await fs.readFile(path.join(hub, 'nested/a/b/mid.txt'), 'utf8')).toBe('mid');
  });

  it('modifies a file and its mode', async () => {
    await fs.mkdir(path.join(alpha, 'modify/sub'), { recursive: true });
    await fs.writeFile(path.join(alpha, 'modify/hello.txt'), 'hello world\n');
    await fs.writeFile(path.join(alpha, 'modify/sub/mid.txt'), 'mid');
    await converge();
    await fs.writeFile(path.join(alpha, 'modify/hello.txt'), 'hello again\n');
    await fs.chmod(path.join(alpha, 'modify/sub/mid.txt'), 0o640);
    await converge();
    expect(await fs.readFile(path.join(beta, 'modify/hello.txt'), 'utf8')).toBe('hello again\n');
    expect((await fs.stat(path.join(beta, 'modify/sub/mid.txt'))).mode & 0o777).toBe(0o640);
  });

  it('never carries setuid, setgid or sticky bits: a 04755 and a 02755 file arrive as 0755', async () => {
    const modeOf = async (file: string): Promise<number | null> => {
      const st = await fs.lstat(file).catch(() => null);
      return st === null ? null : st.mode & 0o7777;
    };
    await fs.mkdir(path.join(alpha, 'modes'));
    await fs.mkdir(path.join(hub, 'modes-hub'));
    await fs.writeFile(path.join(alpha, 'modes/setuid.sh'), '#!/bin/sh\nid\n');
    await fs.writeFile(path.join(alpha, 'modes/setgid.sh'), '#!/bin/sh\nid -g\n');
    await fs.writeFile(path.join(hub, 'modes-hub/server-setuid.sh'), '#!/bin/sh\nid -u\n');
    await fs.mkdir(path.join(alpha, 'modes/sticky-dir'));
    await fs.chmod(path.join(alpha, 'modes/setuid.sh'), 0o4755);
    await fs.chmod(path.join(alpha, 'modes/setgid.sh'), 0o2755);
    await fs.chmod(path.join(hub, 'modes-hub/server-setuid.sh'), 0o4755);
    await fs.chmod(path.join(alpha, 'modes/sticky-dir'), 0o1777);
    expect(await modeOf(path.join(alpha, 'modes/setuid.sh'))).toBe(0o4755);
    expect(await modeOf(path.join(alpha, 'modes/setgid.sh'))).toBe(0o2755);
    const arrived = async (): Promise<boolean> => {
      for (const node of [hub, beta]) {
        if ((await modeOf(path.join(node, 'modes/setuid.sh'))) === null || (await modeOf(path.join(node, 'modes/setgid.sh'))) === null) return false;
        if ((await modeOf(path.join(node, 'modes/sticky-dir'))) === null) return false;
      }
      return (await modeOf(path.join(alpha, 'modes-hub/server-setuid.sh'))) !== null && (await modeOf(path.join(beta, 'modes-hub/server-setuid.sh'))) !== null;
    };
    await waitFor(arrived, { timeoutMs: 60_000, what: 'the setuid/setgid files on every node' });
    await waitIdle(cluster.all);
    for (const node of [hub, beta]) {
      expect(await modeOf(path.join(node, 'modes/setuid.sh'))).toBe(0o755);
      expect(await modeOf(path.join(node, 'modes/setgid.sh'))).toBe(0o755);
      expect(await modeOf(path.join(node, 'modes/sticky-dir'))).toBe(0o777);
    }
    expect(await modeOf(path.join(alpha, 'modes-hub/server-setuid.sh'))).toBe(0o755);
    expect(await modeOf(path.join(beta, 'modes-hub/server-setuid.sh'))).toBe(0o755);
    // The sources keep their own bits (nothing is written back to them).
    expect(await modeOf(path.join(alpha, 'modes/setuid.sh'))).toBe(0o4755);
    expect(await modeOf(path.join(hub, 'modes-hub/server-setuid.sh'))).toBe(0o4755);
    // Back to plain modes (no change to sync: the bits were never part of the entry), for the trees compared below.
    await fs.chmod(path.join(alpha, 'modes/setuid.sh'), 0o755);
    await fs.chmod(path.join(alpha, 'modes/setgid.sh'), 0o755);
    await fs.chmod(path.join(alpha, 'modes/sticky-dir'), 0o777);
    await fs.chmod(path.join(hub, 'modes-hub/server-setuid.sh'), 0o755);
    await converge();
  });

  it('syncs an empty directory and a symlink (as a link, never followed)', async () => {
    await fs.mkdir(path.join(alpha, 'links/empty'), { recursive: true });
    await fs.writeFile(path.join(alpha, 'links/hello.txt'), 'hello world\n');
    await fs.symlink('hello.txt', path.join(alpha, 'links/link-to-hello'));
    await fs.symlink('/etc/passwd', path.join(alpha, 'links/link-outside'));
    await converge();
    expect((await fs.lstat(path.join(beta, 'links/empty'))).isDirectory()).toBe(true);
    expect(await fs.readlink(path.join(beta, 'links/link-to-hello'))).toBe('hello.txt');
    expect(await fs.readlink(path.join(hub, 'links/link-outside'))).toBe('/etc/passwd');
  });

  it('skips a FIFO with a warning and syncs what is beside it', async () => {
    await fs.mkdir(path.join(alpha, 'fifo'));
    execFileSync('mkfifo', [path.join(alpha, 'fifo/a-fifo')]);
    await fs.writeFile(path.join(alpha, 'fifo/beside-fifo.txt'), 'still synced');
    await waitFor(async () => (await fs.readFile(path.join(beta, 'fifo/beside-fifo.txt'), 'utf8').catch(() => null)) === 'still synced', {
      timeoutMs: 30_000,
      what: 'beside-fifo.txt on beta',
    });
    await waitFor(() => /skipped fifo\/a-fifo: sockets, FIFOs and devices are not synced/.test(cluster.clients[0]!.log()), {
      timeoutMs: 30_000,
      what: 'the warning about the FIFO',
    });
    await expect(fs.lstat(path.join(hub, 'fifo/a-fifo'))).rejects.toThrow(/ENOENT/);
    await expect(fs.lstat(path.join(beta, 'fifo/a-fifo'))).rejects.toThrow(/ENOENT/);
    await fs.rm(path.join(alpha, 'fifo/a-fifo'));
    await converge();
  });

  it('deletes a file and a whole tree', async () => {
    await fs.mkdir(path.join(alpha, 'delete/a/b/c'), { recursive: true });
    await fs.writeFile(path.join(alpha, 'delete/hello.txt'), 'hello world\n');
    await fs.writeFile(path.join(alpha, 'delete/a/b/mid.txt'), 'mid');
    await fs.writeFile(path.join(alpha, 'delete/a/b/c/deep.txt'), 'deep');
    await converge();
    expect(await fs.readFile(path.join(beta, 'delete/a/b/c/deep.txt'), 'utf8')).toBe('deep');
    await fs.rm(path.join(alpha, 'delete/hello.txt'));
    await fs.rm(path.join(alpha, 'delete/a'), { recursive: true });
    await converge();
    await expect(fs.lstat(path.join(beta, 'delete/a'))).rejects.toThrow(/ENOENT/);
    await expect(fs.lstat(path.join(beta, 'delete/hello.txt'))).rejects.toThrow(/ENOENT/);
  });

  it('renames a large file and a directory without sending the bytes again', async () => {
    const size = 32 * 1024 * 1024;
    await fs.mkdir(path.join(alpha, 'rename/dir1/sub'), { recursive: true });
    const digest = await writeRandomFile(path.join(alpha, 'rename/big.bin'), size);
    await fs.writeFile(path.join(alpha, 'rename/dir1/sub/x.txt'), 'x');
    await converge(120_000);
    await waitIdle(cluster.all);
    const before = proxy.bytesForwarded().up;
    await fs.rename(path.join(alpha, 'rename/big.bin'), path.join(alpha, 'rename/renamed.bin'));
    await fs.rename(path.join(alpha, 'rename/dir1'), path.join(alpha, 'rename/dir2'));
    await converge();
    const sent = proxy.bytesForwarded().up - before;
    expect(sent).toBeLessThan(size / 8);
    expect(await sha256(path.join(beta, 'rename/renamed.bin'))).toBe(digest);
    expect(await fs.readFile(path.join(beta, 'rename/dir2/sub/x.txt'), 'utf8')).toBe('x');
    expect(cluster.clients[0]!.log()).toMatch(/pushed rename rename\/big\.bin -> rename\/renamed\.bin/);
    expect(cluster.clients[0]!.log()).toMatch(/pushed rename rename\/dir1 -> rename\/dir2/);
    expect(cluster.clients[1]!.log()).toMatch(/pulled rename rename\/big\.bin -> rename\/renamed\.bin/);
  });

  it('propagates an edit made directly on the server', async () => {
    await fs.writeFile(path.join(hub, 'from-server.txt'), 'made on the hub');
    await converge();
    expect(await fs.readFile(path.join(alpha, 'from-server.txt'), 'utf8')).toBe('made on the hub');
  });

  it('syncs 2,000 small files written at once', async () => {
    await Promise.all(
      Array.from({ length: 2000 }, async (_, i) => {
        const dir = path.join(alpha, 'many', `d${i % 20}`);
        await fs.mkdir(dir, { recursive: true });
        await fs.writeFile(path.join(dir, `f${i}.txt`), `file ${i}\n`.repeat(1 + (i % 7)));
      }),
    );
    await converge(180_000);
    expect((await snapshotTree(beta)).size).toBeGreaterThan(2000);
  });

  it('syncs a 200 MiB file, checked by sha256', async () => {
    const digest = await writeRandomFile(path.join(alpha, 'huge.bin'), 200 * 1024 * 1024);
    await converge(300_000);
    expect(await sha256(path.join(beta, 'huge.bin'))).toBe(digest);
    expect(await sha256(path.join(hub, 'huge.bin'))).toBe(digest);
  });

  it('sends nothing back once all nodes are idle (no echo)', async () => {
    await waitIdle(cluster.all);
    const headBefore = await serverHead();
    const bytesBefore = proxy.bytesForwarded();
    await new Promise((r) => setTimeout(r, 5000));
    expect(await serverHead()).toBe(headBefore);
    const bytesAfter = proxy.bytesForwarded();
    // SSH keepalives and status polls are tiny; any re-sent file or commit would not be.
    expect(bytesAfter.up - bytesBefore.up).toBeLessThan(4096);
  });
});


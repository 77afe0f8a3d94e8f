/**
 * Operating the daemons through the real CLI: `status` (both formats) during a large transfer,
 * `tasks` and `retry` around a permanently failed push, and `stop`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { startCluster, waitIdle, type Cluster, type StatusJson } from './helpers/daemons.js';
import { cleanupTempDirs } from './helpers/tree.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';

let cluster: Cluster;
let hub: string, alpha: string, beta: string;
const locked: string[] = [];

async function writeRandomFile(file: string, bytes: number): Promise<void> {
  const out = createWriteStream(file);
  for (let done = 0; done < bytes; done += 1 << 20) {
    if (!out.write(crypto.randomBytes(Math.min(1 << 20, bytes - done)))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

beforeAll(async () => {
  cluster = await startCluster({ clients: 2 });
  [hub, alpha, beta] = [cluster.server.folder(), cluster.clients[0]!.folder(), cluster.clients[1]!.folder()];
});

afterAll(async () => {
  for (const dir of locked) execFileSync('chattr', ['-i', dir]);
  await cluster?.stop();
  await cleanupTempDirs();
});

describe('status, tasks, retry and stop through the CLI', () => {
  // The 768 MiB transfer and its convergence take well over the default limit on a loaded machine.
  it('shows a large transfer in progress, as a table and as JSON', { timeout: 300_000 }, async () => {
    const [alphaNode] = cluster.clients;
    await writeRandomFile(path.join(alpha, 'large.bin'), 768 * 1024 * 1024);
    // The CLI is a separate process: poll it (table and JSON at once) until both catch the upload
    // in flight with bytes already sent.
    const { json, table } = (await waitFor(
      async () => {
        const [asJson, asTable] = await Promise.all([alphaNode!.cli(['status', '--json']), alphaNode!.cli(['status'])]);
        if (asJson.code !== 0 || asTable.code !== 0) return null;
        const report = JSON.parse(asJson.stdout) as StatusJson;
        // While the file is still being written a first upload may start and be abandoned (the
        // file is busy); the one that counts carries the whole size.
        const inFlight = report.transfers.some((t) => t.path === 'large.bin' && t.total === 768 * 1024 * 1024 && t.done > 0);
        return inFlight && /push\s+docs\s+large\.bin/.test(asTable.stdout) ? { json: report, table: asTable.stdout } : null;
      },
      { timeoutMs: 60_000, intervalMs: 20, what: 'status and status --json to show the push of large.bin in flight' },
    ))!;
    expect(json).toMatchObject({ node: 'alpha', role: 'client', connected: true });
    // The daemon's own memory, in bytes: a live V8 heap is always well over 1 MiB.
    const memory = (json as unknown as { memory: { rss: number; heapUsed: number; heapTotal: number; external: number } }).memory;
    expect(memory.rss).toBeGreaterThan(memory.heapUsed);
    expect(memory.heapTotal).toBeGreaterThanOrEqual(memory.heapUsed);
    expect(memory.heapUsed).toBeGreaterThan(1 << 20);
    expect(json.folders[0]).toMatchObject({ name: 'docs', path: alpha, paused: null });
    for (const key of ['files', 'bytes', 'pendingPush', 'pendingPull', 'conflicts', 'failed', 'lastSync']) {
      expect(json.folders[0]).toHaveProperty(key);
    }
    const transfer = json.transfers.find((t) => t.path === 'large.bin')!;
    expect(transfer).toMatchObject({ folder: 'docs', direction: 'push', total: 768 * 1024 * 1024 });
    expect(transfer.done).toBeGreaterThan(0);
    expect(transfer.done).toBeLessThanOrEqual(transfer.total);

    expect(table).toMatch(/^FOLDER\s+FILES\s+SIZE\s+PUSH\s+PULL\s+CONFLICTS\s+FAILED\s+LAST SYNC\s+STATE/m);
    expect(table).toMatch(/^TRANSFER\s+FOLDER\s+PATH\s+PROGRESS/m);

    await waitForTreesEqual([hub, alpha, beta], { timeoutMs: 180_000 });
    await waitIdle(cluster.all);
    // A transfer longer than 2 s logs its progress (not a TTY here: plain log lines).
    const logs = cluster.clients.map((c) => c.log()).join('\n');
    expect(logs).toMatch(/(push|pull) large\.bin: \d+% \(\d+\/805306368 bytes/);
    await fs.rm(path.join(alpha, 'large.bin'));
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs: 60_000 });
  });

  it('shows every client on the server with how far behind it is', async () => {
    await waitIdle(cluster.all);
    const { stdout } = await cluster.server.cli(['status', '--json']);
    const report = JSON.parse(stdout) as StatusJson;
    expect(report.role).toBe('server');
    expect(report.clients?.map((c) => c.name).sort()).toEqual(['alpha', 'beta']);
    for (const client of report.clients!) {
      expect(client.connected).toBe(true);
      expect(client.behind).toBe(0);
      expect(Date.parse(client.lastSeen!)).not.toBeNaN();
    }
  });

  it('lists a permanently failed push, keeps syncing the rest, and retries it on request', async () => {
    const [alphaNode] = cluster.clients;
    await fs.mkdir(path.join(hub, 'locked'));
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs: 30_000 });
    execFileSync('chattr', ['+i', path.join(hub, 'locked')]);
    locked.push(path.join(hub, 'locked'));

    await fs.writeFile(path.join(alpha, 'locked', 'file.txt'), 'cannot land yet');
    const task = (await waitFor(
      async () => {
        const { tasks } = await alphaNode!.control<{ tasks: Array<{ path: string; state: string; permanent: boolean; lastError: string | null; attempts: number }> }>('tasks');
        return tasks.find((t) => t.path === 'locked/file.txt' && t.state === 'failed') ?? null;
      },
      { timeoutMs: 30_000, what: 'the failed task to be listed' },
    ))!;
    expect(task.permanent).toBe(true);
    expect(task.lastError).toMatch(/EPERM|not permitted/i);

    const cli = await alphaNode!.cli(['tasks']);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/failed \(permanent\)\s+push\s+docs\s+locked\/file\.txt/);
    const status = await alphaNode!.status();
    expect(status.folders[0]!.failed).toBe(1);

    // Other work is not blocked by it.
    await fs.writeFile(path.join(alpha, 'free.txt'), 'lands');
    await waitFor(async () => (await fs.readFile(path.join(beta, 'free.txt'), 'utf8').catch(() => null)) === 'lands', {
      timeoutMs: 30_000,
      what: 'free.txt on beta',
    });
    // A permanent failure is not retried by itself.
    expect((await fs.readdir(path.join(hub, 'locked'))).length).toBe(0);

    execFileSync('chattr', ['-i', path.join(hub, 'locked')]);
    locked.pop();
    const retry = await alphaNode!.cli(['retry']);
    expect(retry.code).toBe(0);
    expect(retry.stdout).toMatch(/^1 failed task\(s\) sent back to the queue/);
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs: 30_000 });
    expect(await fs.readFile(path.join(beta, 'locked', 'file.txt'), 'utf8')).toBe('cannot land yet');
    const after = await alphaNode!.control<{ tasks: unknown[] }>('tasks');
    expect(after.tasks).toEqual([]);
  });

  it('stops a client with `systemsync stop` and the server with SIGTERM, both exiting 0', async () => {
    // Stopping is for good: a cluster of its own, so the other tests find theirs running.
    const own = await startCluster({ clients: 1 });
    try {
      const [alphaNode] = own.clients;
      const stopped = alphaNode!.waitExit();
      const cli = await alphaNode!.cli(['stop']);
      expect(cli.code).toBe(0);
      expect(await stopped).toBe(0);
      expect(alphaNode!.log()).toMatch(/INFO\s+stopped/);
      await expect(fs.access(path.join(alphaNode!.stateDir, 'control.sock'))).rejects.toThrow(/ENOENT/);
      // Asking a stopped daemon is a clear runtime error, exit 1.
      const again = await alphaNode!.cli(['status']);
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/no daemon answers on .*control\.sock/);

      expect(await own.server.stop('SIGTERM')).toBe(0);
    } finally {
      await own.stop();
    }
  });
});

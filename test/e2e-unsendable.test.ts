/**
 * Issue 12 findings 7 and 9, end to end with real daemons over a real sshd.
 *
 * 7: local names the wire rejects (a backslash; see core/paths) become one visible, permanent
 * failed task each and never block the rest of the batch: on a client (its push batch), and on
 * the server (a `changes` page that would fail validation for every client).
 * 9: those names carry ESC, CR and a C1 CSI: no log line, `tasks` table or `status` prints them raw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startAll, startCluster, waitIdle, type Cluster } from './helpers/daemons.js';
import { cleanupTempDirs } from './helpers/tree.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';
import { RAW_CONTROL } from './helpers/controls.js';
import type { TaskInfo } from '../src/node.js';

type Task = TaskInfo;

/** Names valid on Linux that the wire refuses; two also try to drive the terminal. */
const ALPHA_BAD = ['back\\slash.txt', 'esc\x1b]0;owned\x07\r\\x.txt', 'dir\\name'];
const HUB_BAD = ['hub\\side.txt', 'hub\x9b2J\\y.txt'];
const GOOD_COUNT = 60;

let cluster: Cluster;
let hub: string, alpha: string, beta: string;

beforeAll(async () => {
  cluster = await startCluster({ clients: 2, noStart: true });
  [hub, alpha, beta] = [cluster.server.folder(), cluster.clients[0]!.folder(), cluster.clients[1]!.folder()];
  // Everything is there before the daemons start, so the first scan puts the good and the bad
  // names into the same push batch (alpha) and the same changes page (hub).
  for (let i = 0; i < GOOD_COUNT; i++) await fs.writeFile(path.join(alpha, `good-${i}.txt`), `alpha ${i}`);
  for (const name of ALPHA_BAD) await fs.writeFile(path.join(alpha, name), 'cannot travel');
  await fs.rm(path.join(alpha, 'dir\\name'));
  await fs.mkdir(path.join(alpha, 'dir\\name'));
  await fs.writeFile(path.join(alpha, 'dir\\name', 'inside.txt'), 'also cannot travel');
  for (let i = 0; i < 5; i++) await fs.writeFile(path.join(hub, `hub-good-${i}.txt`), `hub ${i}`);
  for (const name of HUB_BAD) await fs.writeFile(path.join(hub, name), 'cannot travel');
  await startAll(cluster);
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  await cleanupTempDirs();
});

const bad = (name: string): boolean => name.includes('\\');

describe('names the wire rejects', () => {
  it('everything else syncs both ways; the bad names stay where they are', async () => {
    await waitForTreesEqual([alpha, hub, beta], { timeoutMs: 120_000, exclude: [...ALPHA_BAD, ...HUB_BAD] });
    const betaNames = await fs.readdir(beta);
    expect(betaNames.filter((n) => n.startsWith('good-'))).toHaveLength(GOOD_COUNT);
    expect(betaNames.filter((n) => n.startsWith('hub-good-'))).toHaveLength(5);
    expect(betaNames.filter(bad)).toEqual([]);
    expect((await fs.readdir(hub)).filter(bad).sort()).toEqual([...HUB_BAD].sort());
    expect((await fs.readdir(alpha)).filter(bad).sort()).toEqual([...ALPHA_BAD, ...HUB_BAD.filter(() => false)].sort());
    // Later edits still go through (nothing is stuck retrying).
    await fs.writeFile(path.join(alpha, 'later.txt'), 'later');
    await fs.writeFile(path.join(hub, 'hub-later.txt'), 'hub later');
    await waitFor(async () => (await fs.readFile(path.join(beta, 'later.txt'), 'utf8').catch(() => null)) === 'later', { timeoutMs: 60_000, what: 'later.txt on beta' });
    await waitFor(async () => (await fs.readFile(path.join(alpha, 'hub-later.txt'), 'utf8').catch(() => null)) === 'hub later', { timeoutMs: 60_000, what: 'hub-later.txt on alpha' });
    await waitIdle(cluster.all);
  });

  it('client: one permanent failed task per bad name, with the reason, in tasks and status', async () => {
    const alphaNode = cluster.clients[0]!;
    const expected = ['back\\slash.txt', 'esc\x1b]0;owned\x07\r\\x.txt', 'dir\\name', 'dir\\name/inside.txt'];
    const tasks = await waitFor(
      async () => {
        const t = (await alphaNode.control<{ tasks: Task[] }>('tasks')).tasks.filter((x) => x.state === 'failed');
        return t.length >= expected.length ? t : null;
      },
      { timeoutMs: 60_000, what: 'the failed tasks of the bad names on alpha' },
    );
    expect(tasks!.map((t) => t.path).sort()).toEqual([...expected].sort());
    for (const t of tasks!) {
      expect(t).toMatchObject({ op: 'push', permanent: true });
      expect(t.lastError).toMatch(/BAD_PATH.*backslash/);
    }
    expect((await alphaNode.status()).folders[0]!.failed).toBe(expected.length);
    // Not retried forever: the outbox empties (what the last pushes recorded gets its second look
    // 1.5 s later, and is in the outbox for that moment).
    await waitFor(async () => (await alphaNode.status()).folders[0]!.pendingPush === 0, { timeoutMs: 10_000, what: 'an empty outbox on alpha' });

    const cli = await alphaNode.cli(['tasks']);
    expect(cli.code).toBe(0);
    expect(cli.stdout.replace(/\n/g, '')).not.toMatch(RAW_CONTROL);
    expect(cli.stdout).toContain('esc\\x1b]0;owned\\x07\\r\\x.txt');
    expect(cli.stdout).toMatch(/failed \(permanent\)\s+push\s+docs\s+back\\slash\.txt/);
    // Removing a name clears its task (no stale failure left behind): a bad name of this test's
    // own, so the names above stay for the other tests.
    const own = 'removed\\later.txt';
    const hasTask = async (): Promise<boolean> => (await alphaNode.control<{ tasks: Task[] }>('tasks')).tasks.some((t) => t.path === own);
    await fs.writeFile(path.join(alpha, own), 'cannot travel');
    await waitFor(hasTask, { timeoutMs: 60_000, what: 'the failed task of a new bad name on alpha' });
    await fs.rm(path.join(alpha, own));
    await waitFor(async () => !(await hasTask()), { timeoutMs: 60_000, what: 'the task of the removed name to go on alpha' });
  });

  it('server: one failed task per bad name in its own folder, and no client pull stalls', async () => {
    const tasks = (await cluster.server.control<{ tasks: Task[] }>('tasks')).tasks;
    expect(tasks.map((t) => t.path).sort()).toEqual([...HUB_BAD].sort());
    for (const t of tasks) expect(t).toMatchObject({ state: 'failed', permanent: true, lastError: expect.stringMatching(/BAD_PATH/) });
    expect((await cluster.server.status()).folders[0]!.failed).toBe(HUB_BAD.length);
    const cli = await cluster.server.cli(['tasks']);
    expect(cli.stdout.replace(/\n/g, '')).not.toMatch(RAW_CONTROL);
    expect(cli.stdout).toContain('hub\\x9b2J\\y.txt');
    // Removing a name clears its task (a bad name of this test's own: the others stay).
    const own = 'hub\\removed.txt';
    const taskCount = async (): Promise<number> => (await cluster.server.control<{ tasks: Task[] }>('tasks')).tasks.length;
    await fs.writeFile(path.join(hub, own), 'cannot travel');
    await waitFor(async () => (await taskCount()) === HUB_BAD.length + 1, { timeoutMs: 60_000, what: 'the failed task of a new bad name on the hub' });
    await fs.rm(path.join(hub, own));
    await waitFor(async () => (await taskCount()) === HUB_BAD.length, { timeoutMs: 60_000, what: 'the task of the removed name to go' });
  });

  it('logs show the names escaped, never raw control characters', () => {
    for (const daemon of cluster.all) {
      const log = daemon.log();
      expect(log.length).toBeGreaterThan(0);
      const lines = log.split('\n');
      const raw = lines.filter((l) => RAW_CONTROL.test(l));
      expect(raw, `${daemon.name}: lines with raw control characters`).toEqual([]);
    }
    expect(cluster.clients[0]!.log()).toMatch(/push "esc\\u001b\]0;owned\\u0007\\r\\\\x\.txt" not sent/);
    expect(cluster.server.log()).toMatch(/not synced: .*hub.*\\x9b2J/);
  });
});

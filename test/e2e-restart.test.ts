/**
 * Nothing is lost across restarts (SPEC promise 6), with real daemons against a real sshd:
 * kill -9 of a client mid-push, of a client mid-pull and of the server mid-commit, at random
 * points chosen by a seed; a link cut mid-transfer; a client that was offline while the other
 * made many changes; edits made while a client's daemon was down.
 *
 * The seed is printed; `SYSTEMSYNC_SEED=<n>` replays a run, `SYSTEMSYNC_KILL_ROUNDS=<n>` changes
 * the number of kill rounds (default 20).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startAll, startCluster, startDaemon, waitConnected, waitIdle, type Cluster, type Daemon } from './helpers/daemons.js';
import { startProxy, type TestProxy } from './helpers/proxy.js';
import { cleanupTempDirs, snapshotTree, type TreeItem } from './helpers/tree.js';
import { makeRandom } from './helpers/random.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';

const sha = (data: Buffer | string): string => crypto.createHash('sha256').update(data).digest('hex');
const CONFLICT = /\.sync-conflict-\d{8}-\d{6}-/;

/**
 * Checks one converged tree against the model (path → sha256 of the last content written):
 * every modelled file holds its last content at its path or, failing that, in a conflict copy of
 * it; every other file is a conflict copy (never a temp file or a resurrected delete).
 * Returns the number of conflict copies found.
 */
function checkAgainstModel(root: string, tree: Map<string, TreeItem>, model: Map<string, string>): number {
  const problems: string[] = [];
  const files = new Map([...tree].filter(([, item]) => item.type === 'file') as Array<[string, Extract<TreeItem, { type: 'file' }>]>);
  let copies = 0;
  for (const [p, hash] of model) {
    if (files.get(p)?.hash === hash) continue;
    const dot = p.lastIndexOf('.');
    const stem = dot > p.lastIndexOf('/') ? p.slice(0, dot) : p;
    const inCopy = [...files].some(([q, item]) => q.startsWith(`${stem}.sync-conflict-`) && item.hash === hash);
    if (!inCopy) problems.push(`${p}: last content ${hash.slice(0, 12)} is nowhere (found ${files.get(p)?.hash.slice(0, 12) ?? 'nothing'})`);
  }
  for (const p of files.keys()) {
    if (model.has(p)) continue;
    if (CONFLICT.test(p)) copies++;
    else problems.push(`${p}: not written by the test (a temp file or a resurrected delete)`);
  }
  if (problems.length > 0) throw new Error(`${root}:\n  ${problems.join('\n  ')}`);
  return copies;
}

async function tmpLeftovers(root: string): Promise<string[]> {
  return fs.readdir(path.join(root, '.systemsync', 'tmp')).catch(() => []);
}

describe('kill -9 at random points', () => {
  let cluster: Cluster;
  let hub: string, alpha: string, beta: string;
  const seed = process.env.SYSTEMSYNC_SEED !== undefined ? Number(process.env.SYSTEMSYNC_SEED) : crypto.randomInt(2 ** 31);
  const rounds = Number(process.env.SYSTEMSYNC_KILL_ROUNDS ?? 20);

  beforeAll(async () => {
    cluster = await startCluster({ clients: 2 });
    [hub, alpha, beta] = [cluster.server.folder(), cluster.clients[0]!.folder(), cluster.clients[1]!.folder()];
  });

  afterAll(async () => {
    await cluster?.stop();
    await cleanupTempDirs();
  });

  it(`converges with nothing lost after each kill (${rounds} rounds)`, { timeout: 600_000 }, async () => {
    console.log(`e2e-restart: SYSTEMSYNC_SEED=${seed}`);
    const random = makeRandom(seed);
    const [alphaNode, betaNode] = cluster.clients as [Daemon, Daemon];
    const model = new Map<string, string>();
    const dirs = ['', 'd1/', 'd1/d2/', 'd3/'];
    let counter = 0;
    let conflicts = 0;

    /** One burst of writes in `root`: creates, edits, a delete, a rename and one medium file. */
    const burst = async (root: string): Promise<string[]> => {
      const done: string[] = [];
      const write = async (p: string, data: Buffer): Promise<void> => {
        await fs.mkdir(path.dirname(path.join(root, p)), { recursive: true });
        await fs.writeFile(path.join(root, p), data);
        model.set(p, sha(data));
      };
      for (let i = 0, n = 3 + random.int(6); i < n; i++) {
        const p = `${random.pick(dirs)}f${counter++}.txt`;
        await write(p, crypto.randomBytes(random.int(4096)));
        done.push(`create ${p}`);
      }
      const existing = () => [...model.keys()].filter((p) => !done.some((d) => d.endsWith(` ${p}`)));
      for (let i = 0, n = random.int(3); i < n && existing().length > 0; i++) {
        const p = random.pick(existing());
        await write(p, crypto.randomBytes(1 + random.int(8192)));
        done.push(`edit ${p}`);
      }
      if (random.next() < 0.5 && existing().length > 4) {
        const p = random.pick(existing().filter((q) => !q.startsWith('medium')));
        if (p !== undefined) {
          await fs.rm(path.join(root, p));
          model.delete(p);
          done.push(`delete ${p}`);
        }
      }
      if (random.next() < 0.5 && existing().length > 4) {
        const from = random.pick(existing());
        const to = `${random.pick(dirs)}r${counter++}.txt`;
        await fs.mkdir(path.dirname(path.join(root, to)), { recursive: true });
        await fs.rename(path.join(root, from), path.join(root, to));
        model.set(to, model.get(from)!);
        model.delete(from);
        done.push(`rename ${from} -> ${to}`);
      }
      const medium = `medium${random.int(2)}.bin`;
      await write(medium, crypto.randomBytes((1 + random.int(4)) * 1024 * 1024));
      done.push(`write ${medium}`);
      return done;
    };

    for (let round = 0; round < rounds; round++) {
      const kind = random.pick(['client mid-push', 'client mid-pull', 'server mid-commit'] as const);
      const writerNode = kind === 'client mid-pull' ? alphaNode : random.pick([alphaNode, betaNode]);
      const victim = kind === 'server mid-commit' ? cluster.server : kind === 'client mid-push' ? writerNode : writerNode === alphaNode ? betaNode : alphaNode;
      const delayMs = random.int(600);
      const did = await burst(writerNode.folder());
      await new Promise((r) => setTimeout(r, delayMs));
      await victim.stop('SIGKILL');
      console.log(`round ${round}: ${kind}: wrote on ${writerNode.name} [${did.join(', ')}], killed ${victim.name} after ${delayMs} ms`);
      if (kind === 'client mid-pull') {
        // The server moves on while the victim is down: versions it may have placed but not
        // recorded are older than the server's now, and must not come back as conflicts.
        const edited = did.filter((d) => d.startsWith('create ') || d.startsWith('write ')).map((d) => d.slice(d.indexOf(' ') + 1));
        for (const p of edited.filter((q) => model.has(q))) {
          const data = crypto.randomBytes(1 + random.int(p.startsWith('medium') ? 1 << 20 : 4096));
          await fs.writeFile(path.join(writerNode.folder(), p), data);
          model.set(p, sha(data));
        }
        await waitForTreesEqual([hub, writerNode.folder()], { timeoutMs: 60_000 });
        await waitIdle([cluster.server, writerNode]);
      }
      if (victim === cluster.server) {
        await startDaemon(cluster.server);
        await Promise.all([waitConnected(alphaNode), waitConnected(betaNode)]);
      } else {
        victim.start();
        await waitConnected(victim);
      }
      try {
        await waitForTreesEqual([hub, alpha, beta], { timeoutMs: 60_000 });
        await waitIdle(cluster.all);
        const trees = await Promise.all([hub, alpha, beta].map((root) => waitForTreesEqual([hub, root, root === hub ? alpha : hub])));
        for (const [i, root] of [hub, alpha, beta].entries()) conflicts = Math.max(conflicts, checkAgainstModel(root, trees[i]!, model));
      } catch (err) {
        const tails = cluster.all.map((d) => `--- ${d.name}${d === victim ? ' (killed)' : ''} log tail ---\n${d.log().slice(-4000)}`).join('\n');
        throw new Error(`round ${round} (seed ${seed}): ${(err as Error).message}\n${tails}`);
      }
    }
    console.log(`e2e-restart: ${rounds} rounds, seed ${seed}, ${conflicts} conflict copies`);
    // Every kill was of a single writer's own changes: nothing here is a real conflict.
    expect(conflicts).toBe(0);
    // Temp files of interrupted transfers are gone once everything is idle.
    await waitIdle(cluster.all);
    for (const root of [alpha, beta]) expect(await tmpLeftovers(root), `${root}/.systemsync/tmp`).toEqual([]);
    // On the server, uploads of a killed client are never claimed: once old, they are removed.
    const orphan = path.join(hub, '.systemsync', 'tmp', 'orphan-from-a-killed-client.up');
    await fs.writeFile(orphan, 'never committed');
    const longAgo = new Date(Date.now() - 2 * 3600_000);
    for (const name of await tmpLeftovers(hub)) await fs.utimes(path.join(hub, '.systemsync', 'tmp', name), longAgo, longAgo).catch(() => undefined);
    await waitFor(async () => (await tmpLeftovers(hub)).length === 0, { what: 'the hub to drop abandoned uploads' });
  });
});

describe('offline clients and cut links', () => {
  let cluster: Cluster;
  let proxy: TestProxy;
  let hub: string, alpha: string, beta: string;
  let alphaNode: Daemon, betaNode: Daemon;

  const converge = async (timeoutMs = 60_000): Promise<Map<string, TreeItem>> => {
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs });
    await waitIdle(cluster.all);
    return waitForTreesEqual([hub, alpha, beta], { timeoutMs });
  };

  beforeAll(async () => {
    cluster = await startCluster({ clients: 2, noStart: true });
    proxy = await startProxy({ targetPort: cluster.sshd.port });
    cluster.trustPort(proxy.port);
    cluster.writeClientConfig(cluster.clients[0]!, proxy.port); // alpha goes through the proxy
    await startAll(cluster);
    [alphaNode, betaNode] = cluster.clients as [Daemon, Daemon];
    [hub, alpha, beta] = [cluster.server.folder(), alphaNode.folder(), betaNode.folder()];
  });

  afterAll(async () => {
    await cluster?.stop();
    await proxy?.close();
    await cleanupTempDirs();
  });

  it('converges after the link is cut mid-transfer and restored', async () => {
    const big = crypto.randomBytes(24 * 1024 * 1024);
    proxy.setLatency(20);
    await fs.writeFile(path.join(alpha, 'big.bin'), big);
    await fs.writeFile(path.join(alpha, 'small.txt'), 'small');
    await waitFor(async () => (await alphaNode.status()).transfers.some((t) => t.path === 'big.bin' && t.done > 0), {
      intervalMs: 10,
      what: 'the upload of big.bin to start',
    });
    proxy.cut();
    await waitFor(async () => (await alphaNode.status()).connected === false, { what: 'alpha to see the cut' });
    proxy.setLatency(0);
    proxy.restore();
    await waitConnected(alphaNode);
    await converge();
    expect(sha(await fs.readFile(path.join(beta, 'big.bin')))).toBe(sha(big));

    // And the other way: cut while alpha pulls.
    const big2 = crypto.randomBytes(24 * 1024 * 1024);
    proxy.setLatency(20);
    await fs.writeFile(path.join(beta, 'big2.bin'), big2);
    await waitFor(async () => (await alphaNode.status()).transfers.some((t) => t.path === 'big2.bin' && t.direction === 'pull' && t.done > 0), {
      intervalMs: 10,
      what: 'alpha to start pulling big2.bin',
    });
    proxy.cut();
    await waitFor(async () => (await alphaNode.status()).connected === false, { what: 'alpha to see the cut' });
    proxy.setLatency(0);
    proxy.restore();
    await converge();
    expect(sha(await fs.readFile(path.join(alpha, 'big2.bin')))).toBe(sha(big2));
    expect([...(await snapshotTree(hub)).keys()].filter((p) => CONFLICT.test(p))).toEqual([]);
    expect(await tmpLeftovers(alpha)).toEqual([]);
  });

  it('a client stopped while the other makes 50 mixed changes catches up on start', async () => {
    const seedTree: Record<string, string> = {};
    for (let i = 0; i < 30; i++) seedTree[`m/d${i % 4}/f${i}.txt`] = `v0 of ${i}`;
    for (const [p, content] of Object.entries(seedTree)) {
      await fs.mkdir(path.dirname(path.join(alpha, p)), { recursive: true });
      await fs.writeFile(path.join(alpha, p), content);
    }
    await converge();
    await betaNode.stop('SIGTERM');
    const live = Object.keys(seedTree);
    let changes = 0;
    // 15 creates, 15 edits, 10 deletes, 8 file renames, 1 directory rename, 1 new empty directory.
    for (let i = 0; i < 15; i++, changes++) {
      await fs.mkdir(path.join(alpha, `m/new${i % 3}`), { recursive: true });
      await fs.writeFile(path.join(alpha, `m/new${i % 3}/n${i}.txt`), `new ${i}`);
    }
    for (let i = 0; i < 15; i++, changes++) await fs.writeFile(path.join(alpha, live[i]!), `v1 of ${i}`);
    for (let i = 15; i < 25; i++, changes++) await fs.rm(path.join(alpha, live[i]!));
    for (let i = 0; i < 8; i++, changes++) await fs.rename(path.join(alpha, live[i]!), path.join(alpha, `m/renamed${i}.txt`));
    await fs.rename(path.join(alpha, 'm/d3'), path.join(alpha, 'm/d3-moved'));
    changes++;
    await fs.mkdir(path.join(alpha, 'm/empty-new'));
    changes++;
    expect(changes).toBe(50);
    await waitForTreesEqual([hub, alpha], { timeoutMs: 60_000 });
    await waitIdle([cluster.server, alphaNode]);
    betaNode.start();
    await waitConnected(betaNode);
    const tree = await converge();
    expect(tree.get('m/empty-new')?.type).toBe('dir');
    expect(tree.has('m/d3')).toBe(false);
    expect(await fs.readFile(path.join(beta, 'm/renamed0.txt'), 'utf8')).toBe('v1 of 0');
    expect(await fs.readFile(path.join(beta, 'm/new2/n14.txt'), 'utf8')).toBe('new 14');
    for (let i = 15; i < 25; i++) expect(tree.has(live[i]!)).toBe(false);
    // One writer: nothing here is a conflict (a directory renamed with an edited file inside
    // once made one).
    expect([...tree.keys()].filter((p) => CONFLICT.test(p))).toEqual([]);
  });

  it('pushes edits, creates and deletes made while the client daemon was down', async () => {
    await fs.mkdir(path.join(beta, 'offline'), { recursive: true });
    await fs.writeFile(path.join(beta, 'offline/edit-me.txt'), 'before');
    await fs.writeFile(path.join(beta, 'offline/delete-me.txt'), 'doomed');
    await fs.writeFile(path.join(beta, 'offline/rename-me.txt'), 'moving');
    await converge();
    // SIGTERM for one client (snapshot written), SIGKILL for the other (no snapshot: full scan).
    for (const [node, signal] of [[betaNode, 'SIGTERM'], [alphaNode, 'SIGKILL']] as const) {
      const root = node.folder();
      await node.stop(signal);
      await fs.writeFile(path.join(root, 'offline/edit-me.txt'), `edited on ${node.name} while down`);
      await fs.writeFile(path.join(root, `offline/created-${node.name}.txt`), 'created while down');
      await fs.mkdir(path.join(root, `offline/dir-${node.name}/deep`), { recursive: true });
      await fs.writeFile(path.join(root, `offline/dir-${node.name}/deep/x.txt`), 'deep');
      if (node === betaNode) {
        await fs.rm(path.join(root, 'offline/delete-me.txt'));
        await fs.rename(path.join(root, 'offline/rename-me.txt'), path.join(root, 'offline/renamed.txt'));
      }
      node.start();
      await waitConnected(node);
      await waitFor(async () => (await fs.readFile(path.join(hub, 'offline/edit-me.txt'), 'utf8')) === `edited on ${node.name} while down`, {
        what: `the hub to get ${node.name}'s offline edit`,
      });
      await converge();
    }
    const tree = await converge();
    expect(tree.has('offline/delete-me.txt')).toBe(false);
    expect(tree.has('offline/rename-me.txt')).toBe(false);
    expect(await fs.readFile(path.join(alpha, 'offline/renamed.txt'), 'utf8')).toBe('moving');
    expect(await fs.readFile(path.join(beta, 'offline/created-alpha.txt'), 'utf8')).toBe('created while down');
    expect(await fs.readFile(path.join(alpha, 'offline/dir-beta/deep/x.txt'), 'utf8')).toBe('deep');
    expect(await fs.readFile(path.join(alpha, 'offline/edit-me.txt'), 'utf8')).toBe('edited on alpha while down');
    expect([...tree.keys()].filter((p) => CONFLICT.test(p))).toEqual([]);
    expect(betaNode.log()).toMatch(/changed while the daemon was stopped/);
  });

  it('prunes pulled tombstones, and a client below the floor re-syncs fully', async () => {
    await fs.writeFile(path.join(alpha, 'floor-a.txt'), 'a');
    await fs.writeFile(path.join(alpha, 'floor-b.txt'), 'b');
    await converge();
    await betaNode.stop('SIGTERM');
    await fs.rm(path.join(alpha, 'floor-a.txt'));
    await fs.writeFile(path.join(alpha, 'floor-c.txt'), 'c');
    await waitForTreesEqual([hub, alpha]);
    await waitIdle([cluster.server, alphaNode]);
    // beta has not pulled the delete: the server keeps it for beta.
    const behind = (await cluster.server.status()).clients?.find((c) => c.name === 'beta')?.behind;
    expect(behind).toBeGreaterThan(0);
    // Make the server forget beta (as a server whose state lost a client would): then every
    // tombstone is pulled by every known client and pruned, and beta comes back below the floor.
    await cluster.server.stop('SIGTERM');
    const metaFile = path.join(cluster.server.stateDir, 'server', 'docs', 'meta.json');
    const meta = JSON.parse(await fs.readFile(metaFile, 'utf8')) as { floor: number; clients: Record<string, unknown> };
    delete meta.clients.beta;
    await fs.writeFile(metaFile, JSON.stringify(meta));
    await startDaemon(cluster.server);
    await waitConnected(alphaNode);
    await waitIdle([cluster.server, alphaNode]);
    const floor: number = await waitFor(
      async () => {
        const m = JSON.parse(await fs.readFile(metaFile, 'utf8')) as { floor: number };
        return m.floor > meta.floor ? m.floor : 0;
      },
      { what: 'the server to prune tombstones (floor to rise)' },
    );
    // The version map as the server would load it: its shard files, then its journal.
    const versionsDir = path.join(cluster.server.stateDir, 'server', 'docs', 'versions');
    const versions = new Map<string, { entry: unknown; seq: number }>();
    for (const f of (await fs.readdir(versionsDir)).filter((n) => n.startsWith('shard'))) {
      const shard = JSON.parse(await fs.readFile(path.join(versionsDir, f), 'utf8')) as { entries: Array<[string, { entry: unknown; seq: number }]> };
      for (const [k, v] of shard.entries) versions.set(k, v);
    }
    for (const line of (await fs.readFile(path.join(versionsDir, 'journal.jsonl'), 'utf8')).split('\n').filter(Boolean)) {
      const [k, ...v] = JSON.parse(line) as [string, { entry: unknown; seq: number }?];
      if (v.length === 1) versions.set(k, v[0]!);
      else versions.delete(k);
    }
    expect(versions.size).toBeGreaterThan(0);
    const tombstones = [...versions.values()].filter((v) => v.entry === null && v.seq <= floor).length;
    expect(tombstones).toBe(0);
    betaNode.start();
    await waitConnected(betaNode);
    const tree = await converge();
    // Below the floor, base versions mean nothing: beta merges with the server's full listing as
    // on a first sync, which never deletes (floor-a.txt, deleted while beta was away, may come
    // back from beta: nothing is lost either way).
    expect(betaNode.log()).toMatch(/merging with its full listing/);
    expect(await fs.readFile(path.join(beta, 'floor-c.txt'), 'utf8')).toBe('c');
    expect(await fs.readFile(path.join(hub, 'floor-b.txt'), 'utf8')).toBe('b');
    expect([...tree.keys()].filter((p) => CONFLICT.test(p))).toEqual([]);
  });
});

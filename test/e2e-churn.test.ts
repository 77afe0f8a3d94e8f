/**
 * Every change converges, even under churn (issue 10), with real daemons against a real sshd:
 * two clients and the server's own folder each make hundreds of seeded random operations at the
 * same time (create, overwrite, append, delete, mkdir, rm -r, file rename, directory rename,
 * chmod), each in its own area, with the clients' periodic rescan turned off so that it cannot
 * hide a missed change. Within 30 s of the last operation every node must hold the same tree,
 * and each area must be exactly what its writer left.
 *
 * `npm test` (and so CI) runs 10 random seeds, one after the other in one cluster. Each seed is
 * printed; a failure names the seed, the differences, and where the operations and daemon logs
 * were kept. `SYSTEMSYNC_SEED=<n>` replays one, `SYSTEMSYNC_CHURN_SEEDS=<n>` runs more
 * (`npm run test:churn` runs this file alone), `SYSTEMSYNC_CHURN_OPS=<n>` changes the operations
 * per node (default 300).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startCluster, waitForIndexesToMatch, type Cluster } from './helpers/daemons.js';
import { cleanupTempDirs, type TreeItem } from './helpers/tree.js';
import { makeRandom } from './helpers/random.js';
import { waitForTreesEqual } from './helpers/wait.js';

const sha = (data: Buffer | string): string => crypto.createHash('sha256').update(data).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

type ModelItem = { type: 'dir' } | { type: 'file'; hash: string; mode: number };

/**
 * One writer making random operations inside `area` (a folder-relative directory) of the folder
 * at `root`, keeping a model of what it left: path -> type, content hash and mode.
 */
class Writer {
  readonly model = new Map<string, ModelItem>();
  readonly trace: string[] = [];
  private counter = 0;

  constructor(
    readonly root: string,
    readonly area: string,
    private readonly random: ReturnType<typeof makeRandom>,
  ) {}

  private abs(rel: string): string {
    return path.join(this.root, ...rel.split('/'));
  }

  private dirs(): string[] {
    return [this.area, ...[...this.model].filter(([, item]) => item.type === 'dir').map(([p]) => p)];
  }

  private files(): string[] {
    return [...this.model].filter(([, item]) => item.type === 'file').map(([p]) => p);
  }

  private content(): Buffer {
    const size = this.random.next() < 0.1 ? 64 * 1024 + this.random.int(256 * 1024) : 1 + this.random.int(300);
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i++) data[i] = 32 + this.random.int(95);
    return data;
  }

  /** A short random pause between operations (a writer is not a tight loop). */
  pauseMs(): number {
    return this.random.int(16);
  }

  private newName(prefix: string): string {
    return `${prefix}${++this.counter}`;
  }

  private setFile(rel: string): void {
    const st = fs.lstatSync(this.abs(rel));
    this.model.set(rel, { type: 'file', hash: sha(fs.readFileSync(this.abs(rel))), mode: st.mode & 0o7777 });
  }

  /** Move everything at or under `from` in the model to `to`. */
  private moveModel(from: string, to: string): void {
    for (const [p, item] of [...this.model]) {
      if (p === from || p.startsWith(`${from}/`)) {
        this.model.delete(p);
        this.model.set(to + p.slice(from.length), item);
      }
    }
  }

  private removeModel(at: string): void {
    for (const p of [...this.model.keys()]) if (p === at || p.startsWith(`${at}/`)) this.model.delete(p);
  }

  /** One random operation. */
  step(): void {
    const r = this.random;
    const files = this.files();
    const subdirs = this.dirs().filter((d) => d !== this.area);
    const kind = r.pick(['create', 'create', 'overwrite', 'append', 'delete', 'mkdir', 'rmr', 'frename', 'drename', 'chmod'] as const);
    const parent = (): string => r.pick(this.dirs());
    switch (kind) {
      case 'create': {
        const p = `${parent()}/${this.newName('f')}.txt`;
        fs.writeFileSync(this.abs(p), this.content());
        this.setFile(p);
        this.trace.push(`create ${p}`);
        return;
      }
      case 'overwrite':
      case 'append': {
        if (files.length === 0) return this.stepCreateDir();
        const p = r.pick(files);
        if (kind === 'overwrite') fs.writeFileSync(this.abs(p), this.content());
        else fs.appendFileSync(this.abs(p), this.content().subarray(0, 1 + r.int(200)));
        this.setFile(p);
        this.trace.push(`${kind} ${p}`);
        return;
      }
      case 'delete': {
        if (files.length === 0) return this.stepCreateDir();
        const p = r.pick(files);
        fs.unlinkSync(this.abs(p));
        this.model.delete(p);
        this.trace.push(`delete ${p}`);
        return;
      }
      case 'mkdir':
        return this.stepCreateDir();
      case 'rmr': {
        if (subdirs.length === 0 || r.next() < 0.5) return this.stepCreateDir();
        const d = r.pick(subdirs);
        fs.rmSync(this.abs(d), { recursive: true, force: true });
        this.removeModel(d);
        this.trace.push(`rm -r ${d}`);
        return;
      }
      case 'frename': {
        if (files.length === 0) return this.stepCreateDir();
        const from = r.pick(files);
        const to = `${parent()}/${this.newName('r')}.txt`;
        fs.renameSync(this.abs(from), this.abs(to));
        this.moveModel(from, to);
        this.trace.push(`rename ${from} -> ${to}`);
        return;
      }
      case 'drename': {
        if (subdirs.length === 0) return this.stepCreateDir();
        const from = r.pick(subdirs);
        const targets = this.dirs().filter((d) => d !== from && !d.startsWith(`${from}/`));
        const to = `${r.pick(targets)}/${this.newName('m')}`;
        fs.renameSync(this.abs(from), this.abs(to));
        this.moveModel(from, to);
        this.trace.push(`rename dir ${from} -> ${to}`);
        return;
      }
      case 'chmod': {
        if (files.length === 0) return this.stepCreateDir();
        const p = r.pick(files);
        const mode = r.pick([0o644, 0o755, 0o600, 0o664]);
        fs.chmodSync(this.abs(p), mode);
        this.setFile(p);
        this.trace.push(`chmod ${p} ${mode.toString(8)}`);
        return;
      }
    }
  }

  private stepCreateDir(): void {
    const d = `${this.random.pick(this.dirs())}/${this.newName('d')}`;
    fs.mkdirSync(this.abs(d));
    this.model.set(d, { type: 'dir' });
    this.trace.push(`mkdir ${d}`);
  }

  /** Differences between the model and a converged tree, inside this writer's area. */
  check(tree: Map<string, TreeItem>): string[] {
    const problems: string[] = [];
    for (const [p, item] of this.model) {
      const found = tree.get(p);
      if (found === undefined) problems.push(`${p}: missing`);
      else if (found.type !== item.type) problems.push(`${p}: a ${found.type}, expected a ${item.type}`);
      else if (item.type === 'file' && found.type === 'file' && (found.hash !== item.hash || found.mode !== item.mode)) {
        problems.push(`${p}: content ${found.hash.slice(0, 8)} mode ${found.mode.toString(8)}, expected ${item.hash.slice(0, 8)} mode ${item.mode.toString(8)}`);
      }
    }
    for (const p of tree.keys()) if (p.startsWith(`${this.area}/`) && !this.model.has(p)) problems.push(`${p}: should not exist`);
    return problems;
  }
}

describe('churn: every change converges without the periodic rescan', () => {
  let cluster: Cluster;
  const previousRescan = process.env.SYSTEMSYNC_RESCAN_INTERVAL_MS;
  const replay = process.env.SYSTEMSYNC_SEED;
  const seeds =
    replay !== undefined
      ? [Number(replay)]
      : Array.from({ length: Number(process.env.SYSTEMSYNC_CHURN_SEEDS ?? 10) }, () => crypto.randomInt(2 ** 31));
  const opsPerNode = Number(process.env.SYSTEMSYNC_CHURN_OPS ?? 300);

  beforeAll(async () => {
    process.env.SYSTEMSYNC_RESCAN_INTERVAL_MS = '0'; // inherited by the daemons
    cluster = await startCluster({ clients: 2 });
  });

  afterAll(async () => {
    await cluster?.stop();
    await cleanupTempDirs();
    if (previousRescan === undefined) delete process.env.SYSTEMSYNC_RESCAN_INTERVAL_MS;
    else process.env.SYSTEMSYNC_RESCAN_INTERVAL_MS = previousRescan;
  });

  it(`${seeds.length} seed(s) of ${opsPerNode} random operations per node, on three nodes at once`, async () => {
    const roots = cluster.all.map((d) => d.folder());
    for (const [round, seed] of seeds.entries()) {
      console.log(`churn round ${round + 1}/${seeds.length}: seed ${seed} (replay: SYSTEMSYNC_SEED=${seed})`);
      const random = makeRandom(seed);
      const writers = cluster.all.map((d, i) => {
        const area = `s${seed}-${d.name}`;
        fs.mkdirSync(path.join(roots[i]!, area));
        return new Writer(roots[i]!, area, makeRandom(Math.floor(random.next() * 2 ** 31)));
      });
      await Promise.all(
        writers.map(async (w) => {
          for (let i = 0; i < opsPerNode; i++) {
            w.step();
            const pause = w.pauseMs();
            await (pause > 0 ? sleep(pause) : Promise.resolve());
          }
        }),
      );
      const lastOp = Date.now();
      const keep = (): string => {
        const kept = path.join(os.tmpdir(), `systemsync-churn-${seed}`);
        fs.mkdirSync(kept, { recursive: true });
        for (const [i, w] of writers.entries()) fs.writeFileSync(path.join(kept, `${cluster.all[i]!.name}.trace`), w.trace.join('\n'));
        for (const d of cluster.all) fs.writeFileSync(path.join(kept, `${d.name}.log`), d.log());
        return kept;
      };
      let tree: Map<string, TreeItem>;
      try {
        tree = await waitForTreesEqual(roots, { timeoutMs: 30_000, intervalMs: 250 });
        // Disks alike is not enough: a path recorded and gone from every disk (its removal never
        // seen) differs from the indexes only.
        await waitForIndexesToMatch(cluster.all, tree, Math.max(1000, lastOp + 30_000 - Date.now()));
      } catch (err) {
        throw new Error(`seed ${seed}: not converged 30 s after the last operation (operations and daemon logs kept in ${keep()}): ${(err as Error).message}`);
      }
      console.log(`seed ${seed}: converged ${Date.now() - lastOp} ms after the last operation`);
      const problems = writers.flatMap((w) => w.check(tree));
      if (problems.length > 0) throw new Error(`seed ${seed}: areas differ from what their writers left (operations and daemon logs kept in ${keep()}):\n  ${problems.join('\n  ')}`);
      // The next seed starts from a small tree: each writer removes its area (not timed).
      for (const w of writers) fs.rmSync(path.join(w.root, w.area), { recursive: true, force: true });
      await waitForTreesEqual(roots, { timeoutMs: 60_000, intervalMs: 250 });
      expect(fs.readdirSync(roots[0]!).filter((n) => n !== '.systemsync')).toEqual([]);
    }
  }, 60_000 + seeds.length * 120_000);
});

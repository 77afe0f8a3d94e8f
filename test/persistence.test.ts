import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AtomicJsonFile,
  Coalescer,
  ensurePrivateDir,
  hashKey,
  JsonStore,
  ShardedMap,
  StateCorruptError,
  StoreClosedError,
} from '../src/persistence.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';
import { waitFor } from './helpers/wait.js';

afterAll(cleanupTempDirs);

const mode = async (p: string): Promise<number> => (await fsp.stat(p)).mode & 0o7777;
const readJson = async (p: string): Promise<unknown> => JSON.parse(await fsp.readFile(p, 'utf8'));

describe('AtomicJsonFile', () => {
  it('reads null when missing, round-trips, writes mode 0600 and leaves no temp file', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'x.json');
    const adapter = new AtomicJsonFile<{ a: number[] }>(file);
    expect(await adapter.read()).toBeNull();
    await adapter.write({ a: [1, 2] });
    expect(await adapter.read()).toEqual({ a: [1, 2] });
    expect(await mode(file)).toBe(0o600);
    expect(await fsp.readdir(dir)).toEqual(['x.json']);
  });

  it('throws StateCorruptError naming the file for bad JSON and for a rejected shape', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'bad.json');
    await fsp.writeFile(file, '{"a": 1,');
    const err = await new AtomicJsonFile(file).read().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateCorruptError);
    expect(err).toMatchObject({ code: 'STATE_CORRUPT', file });
    expect((err as Error).message).toContain(file);
    await fsp.writeFile(file, '[]');
    const validating = new AtomicJsonFile<{ v: number }>(file, (raw) => {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('expected an object');
      return raw as { v: number };
    });
    await expect(validating.read()).rejects.toThrow(/bad\.json is corrupt: expected an object/);
  });
});

describe('ensurePrivateDir', () => {
  it('creates nested dirs 0700 and fixes the mode of an existing one', async () => {
    const dir = await tempDir();
    const nested = path.join(dir, 'a/b/c');
    await ensurePrivateDir(nested);
    expect(await mode(nested)).toBe(0o700);
    const loose = path.join(dir, 'loose');
    await fsp.mkdir(loose, { mode: 0o755 });
    await fsp.chmod(loose, 0o755);
    await ensurePrivateDir(loose);
    expect(await mode(loose)).toBe(0o700);
  });

  it('fails with a clear error when the path is a file', async () => {
    const dir = await tempDir();
    await fsp.writeFile(path.join(dir, 'f'), '');
    await expect(ensurePrivateDir(path.join(dir, 'f'))).rejects.toMatchObject({ code: 'STATE_DIR', message: expect.stringContaining('/f') });
  });
});

describe('Coalescer', () => {
  it('runs once for many marks in a tick, never overlaps, and flush waits for changes before it', async () => {
    let runs = 0;
    let active = 0;
    let maxActive = 0;
    let saved = 0;
    let value = 0;
    const c = new Coalescer(async () => {
      const snapshot = value;
      runs++;
      active++;
      maxActive = Math.max(maxActive, active);
      await new Promise((r) => setTimeout(r, 10));
      saved = snapshot;
      active--;
    });
    for (let i = 1; i <= 100; i++) {
      value = i;
      c.markDirty();
    }
    await c.flush();
    expect(saved).toBe(100);
    expect(runs).toBe(1);
    value = 101;
    c.markDirty();
    await new Promise((r) => setImmediate(r)); // the save of 101 starts
    value = 102;
    c.markDirty(); // marked during the run
    await c.flush();
    expect(saved).toBe(102);
    expect(maxActive).toBe(1);
  });

  it('rejects flush with the save error, keeps the change dirty and retries on the next flush', async () => {
    let fail = true;
    let saves = 0;
    const background: unknown[] = [];
    const c = new Coalescer(
      async () => {
        saves++;
        if (fail) throw new Error('disk full');
      },
      (e) => background.push(e),
    );
    c.markDirty();
    await expect(c.flush()).rejects.toThrow('disk full');
    expect(c.isDirty).toBe(true);
    fail = false;
    await c.flush();
    expect(c.isDirty).toBe(false);
    expect(saves).toBe(2);
    fail = true;
    c.markDirty();
    await waitFor(() => background.length >= 1, { timeoutMs: 5000, what: 'background error report' });
    expect(c.isDirty).toBe(true);
  });
});

describe('JsonStore', () => {
  it('starts from a copy of the defaults, round-trips through flush and reopen', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'state', 'client.json');
    const defaults = { cursor: 0, outbox: [] as string[] };
    const store = await JsonStore.open(file, defaults);
    expect(store.data).toEqual({ cursor: 0, outbox: [] });
    store.update((d) => {
      d.cursor = 7;
      d.outbox.push('a/b.txt');
    });
    expect(defaults.outbox).toEqual([]);
    await store.flush();
    expect(await readJson(file)).toEqual({ cursor: 7, outbox: ['a/b.txt'] });
    expect(await mode(file)).toBe(0o600);
    expect(await mode(path.dirname(file))).toBe(0o700);
    await store.close();
    expect(() => store.update((d) => void (d.cursor = 8))).toThrow(StoreClosedError);

    const again = await JsonStore.open(file, defaults);
    expect(again.data).toEqual({ cursor: 7, outbox: ['a/b.txt'] });
    await again.close();
  });

  it('ignores and removes a leftover temp file from an interrupted write', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 's.json');
    await fsp.writeFile(file, '{"n":1}');
    await fsp.writeFile(`${file}.tmp-999-abcdef`, '{"n":2, half');
    const store = await JsonStore.open(file, { n: 0 });
    expect(store.data).toEqual({ n: 1 });
    expect(await fsp.readdir(dir)).toEqual(['s.json']);
    await store.close();
  });

  it('on a corrupt file throws by default, or with reset moves it aside and starts from defaults', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 's.json');
    await fsp.writeFile(file, 'not json');
    await expect(JsonStore.open(file, { n: 0 })).rejects.toMatchObject({ code: 'STATE_CORRUPT', file });
    expect(await fsp.readFile(file, 'utf8')).toBe('not json');

    const store = await JsonStore.open(file, { n: 0 }, { onCorrupt: 'reset' });
    expect(store.data).toEqual({ n: 0 });
    const names = await fsp.readdir(dir);
    const aside = names.find((n) => /^s\.json\.corrupt-\d+$/.test(n));
    expect(aside).toBeDefined();
    expect(await fsp.readFile(path.join(dir, aside as string), 'utf8')).toBe('not json');
    store.update((d) => void (d.n = 1));
    await store.close();
    expect(await readJson(file)).toEqual({ n: 1 });
  });

  it('runs validate on load', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 's.json');
    await fsp.writeFile(file, '{"n":"seven"}');
    const validate = (raw: unknown): { n: number } => {
      const n = (raw as { n?: unknown }).n;
      if (typeof n !== 'number') throw new Error(`n: expected a number, got ${JSON.stringify(n)}`);
      return { n };
    };
    await expect(JsonStore.open(file, { n: 0 }, { validate })).rejects.toThrow(/s\.json is corrupt: n: expected a number, got "seven"/);
  });
});

describe('ShardedMap', () => {
  it('keeps a Map in memory and round-trips through flush and reopen', async () => {
    const dir = path.join(await tempDir(), 'index');
    const map = await ShardedMap.open<{ seq: number }>(dir, { shards: 8 });
    expect(map.shardCount).toBe(8);
    map.set('a.txt', { seq: 1 });
    map.set('dir/b.txt', { seq: 2 });
    map.set('a.txt', { seq: 3 });
    map.set('__proto__', { seq: 4 });
    expect(map.size).toBe(3);
    expect(map.get('a.txt')).toEqual({ seq: 3 });
    expect(map.get('missing')).toBeNull();
    expect(map.delete('dir/b.txt')).toBe(true);
    expect(map.delete('dir/b.txt')).toBe(false);
    expect(map.has('dir/b.txt')).toBe(false);
    await map.close();
    expect(() => map.set('x', { seq: 0 })).toThrow(StoreClosedError);

    const again = await ShardedMap.open<{ seq: number }>(dir, { shards: 32 });
    expect(again.shardCount).toBe(8); // fixed per directory
    expect(new Map(again.entries())).toEqual(
      new Map([
        ['a.txt', { seq: 3 }],
        ['__proto__', { seq: 4 }],
      ]),
    );
    expect([...again.keys()].sort()).toEqual(['__proto__', 'a.txt']);
    expect(await mode(dir)).toBe(0o700);
    for (const name of await fsp.readdir(dir)) expect(await mode(path.join(dir, name))).toBe(0o600);
    await again.close();
  });

  /** The map as a fresh process would load it: shard files, then journal lines in order. */
  async function readFromDisk(dir: string, shards: number): Promise<{ map: Map<string, unknown>; journalLines: string[] }> {
    const map = new Map<string, unknown>();
    for (let i = 0; i < shards; i++) {
      const content = (await readJson(path.join(dir, `shard-${String(i).padStart(4, '0')}.json`)).catch(() => ({ entries: [] }))) as { entries: Array<[string, unknown]> };
      for (const [k, v] of content.entries) {
        expect(hashKey(k) % shards).toBe(i);
        map.set(k, v);
      }
    }
    const journalLines = (await fsp.readFile(path.join(dir, 'journal.jsonl'), 'utf8')).split('\n').filter(Boolean);
    for (const line of journalLines) {
      const [k, ...v] = JSON.parse(line) as [string, unknown?];
      if (v.length === 1) map.set(k, v[0]);
      else map.delete(k);
    }
    return { map, journalLines };
  }

  it('flush resolving means the data is on disk (journal), and close folds it into the shard files', async () => {
    const dir = await tempDir();
    const map = await ShardedMap.open<number>(dir, { shards: 4 });
    for (let i = 0; i < 200; i++) map.set(`k${i}`, i);
    map.delete('k7');
    await map.flush();
    const flushed = await readFromDisk(dir, 4);
    expect(flushed.map).toEqual(new Map(map.entries()));
    expect(flushed.journalLines.length).toBeGreaterThanOrEqual(199);
    await map.close();
    const closed = await readFromDisk(dir, 4);
    expect(closed.journalLines).toEqual([]);
    expect(closed.map).toEqual(new Map([...Array(200).keys()].filter((i) => i !== 7).map((i) => [`k${i}`, i])));
    expect(await readJson(path.join(dir, 'meta.json'))).toEqual({ format: 'systemsync-sharded-map', version: 1, shards: 4 });
  });

  it('at 100k keys, one set + flush appends one journal line and rewrites no shard', async () => {
    const dir = await tempDir();
    const map = await ShardedMap.open<{ seq: number; hash: string }>(dir);
    expect(map.shardCount).toBe(64);
    for (let i = 0; i < 100_000; i++) map.set(`folder/sub${i % 100}/file-${i}.txt`, { seq: i, hash: 'ab'.repeat(32) });
    await map.flush(); // 100k lines: more than half the map, so folded into the shards
    const names = (await fsp.readdir(dir)).filter((n) => n.startsWith('shard-'));
    expect(names).toHaveLength(64);
    expect(await fsp.readFile(path.join(dir, 'journal.jsonl'), 'utf8')).toBe('');
    const before = new Map<string, bigint>();
    for (const n of names) before.set(n, (await fsp.stat(path.join(dir, n), { bigint: true })).mtimeNs);
    await new Promise((r) => setTimeout(r, 20)); // so that a rewrite cannot share an mtime with the first write

    const key = 'folder/sub3/file-3.txt';
    map.set(key, { seq: 100_001, hash: 'cd'.repeat(32) });
    await map.flush();
    const changed: string[] = [];
    for (const n of names) if ((await fsp.stat(path.join(dir, n), { bigint: true })).mtimeNs !== before.get(n)) changed.push(n);
    expect(changed).toEqual([]);
    expect(await fsp.readFile(path.join(dir, 'journal.jsonl'), 'utf8')).toBe(`${JSON.stringify([key, { seq: 100_001, hash: 'cd'.repeat(32) }])}\n`);

    // A crash now (no close): the next open replays the journal.
    const again = await ShardedMap.open<{ seq: number; hash: string }>(dir);
    expect(again.size).toBe(100_000);
    expect(again.get(key)).toEqual({ seq: 100_001, hash: 'cd'.repeat(32) });
    await again.close();
    await map.close();
  });

  it('folds a long journal into the shards once it outgrows half the map', async () => {
    const dir = await tempDir();
    const map = await ShardedMap.open<number>(dir, { shards: 2 });
    map.set('a', 0);
    await map.flush();
    let lines = 0;
    for (let i = 1; i <= 5000; i++) {
      map.set('a', i);
      await map.flush();
      lines = (await fsp.readFile(path.join(dir, 'journal.jsonl'), 'utf8')).split('\n').filter(Boolean).length;
      if (lines === 0) break;
    }
    expect(lines).toBe(0); // folded (after 4096 lines at the latest)
    expect((await readFromDisk(dir, 2)).map).toEqual(new Map([['a', map.get('a')]]));
    await map.close();
  });

  it('drops a torn last journal line; a corrupt line before the end throws, or with reset ends the replay there', async () => {
    const dir = await tempDir();
    const map = await ShardedMap.open<number>(dir, { shards: 2 });
    map.set('a', 1);
    await map.close();
    const journal = path.join(dir, 'journal.jsonl');
    await fsp.writeFile(journal, '["b",2]\n["c",3]\n["d",4'); // crash mid-append
    const torn = await ShardedMap.open<number>(dir);
    expect(new Map(torn.entries())).toEqual(new Map([['a', 1], ['b', 2], ['c', 3]]));
    torn.set('e', 5); // appended after the dropped tail, on a line of its own
    await torn.flush();
    expect(await fsp.readFile(journal, 'utf8')).toBe('["b",2]\n["c",3]\n["e",5]\n');
    await torn.close();

    await fsp.writeFile(journal, '["x",1]\nnot json\n["y",2]\n');
    await expect(ShardedMap.open<number>(dir)).rejects.toMatchObject({ code: 'STATE_CORRUPT', file: journal });
    const reset = await ShardedMap.open<number>(dir, { onCorrupt: 'reset' });
    expect(reset.get('x')).toBe(1);
    expect(reset.has('y')).toBe(false);
    expect((await fsp.readdir(dir)).some((n) => n.startsWith('journal.jsonl.corrupt-'))).toBe(true);
    await reset.close();
  });

  it('with a codec keeps encoded values, writes the same files as without, and reads old files', async () => {
    type V = { seq: number; tags: string[] };
    const codec = {
      encode: (v: V) => `${v.seq}|${JSON.stringify(v.tags)}`,
      decode: (s: string): V => {
        const bar = s.indexOf('|');
        return { seq: Number(s.slice(0, bar)), tags: JSON.parse(s.slice(bar + 1)) as string[] };
      },
    };
    const plainDir = path.join(await tempDir(), 'plain');
    const codedDir = path.join(await tempDir(), 'coded');
    const plain = await ShardedMap.open<V>(plainDir, { shards: 4 });
    const coded = await ShardedMap.open<V>(codedDir, { shards: 4, codec });
    for (let i = 0; i < 300; i++) {
      const v = { seq: i, tags: [`t${i}`, 'x"y'] };
      plain.set(`dir/k${i}`, v);
      coded.set(`dir/k${i}`, v);
    }
    plain.delete('dir/k7');
    coded.delete('dir/k7');
    expect(coded.stored('dir/k3')).toBe('3|["t3","x\\"y"]');
    const got = coded.get('dir/k3') as V;
    expect(got).toEqual({ seq: 3, tags: ['t3', 'x"y'] });
    got.tags.push('mutated'); // a fresh copy each time: the map is not touched
    expect(coded.get('dir/k3')).toEqual({ seq: 3, tags: ['t3', 'x"y'] });
    expect(new Map(coded.entries())).toEqual(new Map(plain.entries()));
    await plain.close();
    await coded.close();
    for (let i = 0; i < 4; i++) {
      const name = `shard-000${i}.json`;
      expect(await fsp.readFile(path.join(codedDir, name), 'utf8')).toBe(await fsp.readFile(path.join(plainDir, name), 'utf8'));
    }
    // Files written without a codec load into a map with one.
    const reopened = await ShardedMap.open<V>(plainDir, { codec });
    expect(reopened.size).toBe(299);
    expect(reopened.stored('dir/k5')).toBe('5|["t5","x\\"y"]');
    await reopened.close();
  });


  it('ignores leftover temp files and handles a corrupt shard per onCorrupt', async () => {
    const dir = await tempDir();
    const map = await ShardedMap.open<number>(dir, { shards: 2 });
    const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (const k of keys) map.set(k, 1);
    await map.close();
    const shardOfA = `shard-000${hashKey('a') % 2}.json`;
    await fsp.writeFile(path.join(dir, `${shardOfA}.tmp-1-ffff`), 'half a write');
    const reopened = await ShardedMap.open<number>(dir);
    expect(reopened.size).toBe(6);
    await reopened.close();
    expect((await fsp.readdir(dir)).some((n) => n.includes('.tmp-'))).toBe(false);

    await fsp.writeFile(path.join(dir, shardOfA), '{"entries": [');
    await expect(ShardedMap.open<number>(dir)).rejects.toMatchObject({ code: 'STATE_CORRUPT', file: path.join(dir, shardOfA) });
    const reset = await ShardedMap.open<number>(dir, { onCorrupt: 'reset' });
    const survivors = keys.filter((k) => `shard-000${hashKey(k) % 2}.json` !== shardOfA);
    expect([...reset.keys()].sort()).toEqual(survivors);
    expect((await fsp.readdir(dir)).some((n) => n.startsWith(`${shardOfA}.corrupt-`))).toBe(true);
    await reset.close();
  });

  it('rejects a bad shard count and a key filed in the wrong shard', async () => {
    const dir = await tempDir();
    await expect(ShardedMap.open(dir, { shards: 0 })).rejects.toMatchObject({ code: 'INVALID_OPTION' });
    const map = await ShardedMap.open<number>(dir, { shards: 2 });
    await map.close();
    const wrong = `shard-000${1 - (hashKey('a') % 2)}.json`;
    await fsp.writeFile(path.join(dir, wrong), JSON.stringify({ entries: [['a', 1]] }));
    await expect(ShardedMap.open<number>(dir)).rejects.toThrow(/key "a" does not belong in shard/);
  });

  it('survives kill -9 of a writing process: every flushed key is there and every file loads', async () => {
    // A plain node child runs the compiled module (dist/, rebuilt from src/ by the global setup);
    // the child script lives in a directory of this process's own.
    const here = path.dirname(fileURLToPath(import.meta.url));
    const modulePath = path.join(here, '../dist/persistence.js');
    const cacheDir = path.join(here, `../node_modules/.cache/systemsync-test/kill-${process.pid}`);
    await fsp.mkdir(cacheDir, { recursive: true });
    const childPath = path.join(cacheDir, 'child.mjs');
    await fsp.writeFile(
      childPath,
      `import { ShardedMap } from ${JSON.stringify(modulePath)};
const map = await ShardedMap.open(process.argv[2], { shards: 8 });
for (let i = 0; ; i++) {
  for (let j = 0; j < 50; j++) map.set('k' + (i * 50 + j), { i, pad: 'x'.repeat(200) });
  if (i % 2 === 0) { await map.flush(); process.stdout.write('flushed ' + (i * 50 + 49) + '\\n'); }
  else await new Promise((r) => setImmediate(r));
}
`,
    );
    const dir = await tempDir();
    const child = spawn(process.execPath, [childPath, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise((resolve) => child.on('exit', resolve));
    try {
      await waitFor(() => (out.match(/flushed/g)?.length ?? 0) >= 20, { timeoutMs: 60_000, what: `20 flushes by the child (stderr: ${err})` });
    } finally {
      child.kill('SIGKILL');
      await exited;
      await fsp.rm(cacheDir, { recursive: true, force: true });
    }
    const lines = out.trim().split('\n').filter((l) => /^flushed \d+$/.test(l));
    const lastFlushed = Number((lines.at(-1) as string).split(' ')[1]);
    const map = await ShardedMap.open<{ i: number }>(dir); // throws if any file is torn
    for (let k = 0; k <= lastFlushed; k++) expect(map.has(`k${k}`), `k${k}`).toBe(true);
    expect(map.size).toBeGreaterThan(lastFlushed);
    await map.close();
  });
});

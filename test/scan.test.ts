import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { createIgnoreMatcher } from '../src/core/ignore.js';
import { DEFERRED_HASH, fingerprint, hashFile, hashOpenFile, hashSmallFile, isRecordedFile, readLocal, readSmallFile, setMtime, walkTree, type WalkProblem } from '../src/fs/scan.js';
import { cleanupTempDirs, makeTree, tempDir } from './helpers/tree.js';

afterAll(cleanupTempDirs);

const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');
const noIgnore = createIgnoreMatcher([], null);

async function walkAll(root: string, opts: Partial<Parameters<typeof walkTree>[1]> = {}): Promise<string[]> {
  const out: string[] = [];
  for await (const item of walkTree(root, { ignore: noIgnore, ...opts })) out.push(`${item.type}:${item.path}`);
  return out;
}

describe('hashFile', () => {
  it('hashes content larger than one chunk and reports its size', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    big.write('tail', big.length - 4);
    const root = await makeTree({ big, empty: '' });
    expect(await hashFile(path.join(root, 'big'))).toEqual({ hash: sha(big), size: big.length });
    expect(await hashFile(path.join(root, 'empty'))).toEqual({ hash: sha(''), size: 0 });
  });

  it('refuses to follow a symlink', async () => {
    const root = await makeTree({ real: 'x', link: { symlink: 'real' } });
    await expect(hashFile(path.join(root, 'link'))).rejects.toMatchObject({ code: 'ELOOP' });
  });

  it('stops when aborted', async () => {
    const root = await makeTree({ f: 'x' });
    const ac = new AbortController();
    ac.abort();
    await expect(hashFile(path.join(root, 'f'), ac.signal)).rejects.toMatchObject({ name: 'AbortError' });
  });
});

describe('readLocal', () => {
  it('reads a file, a directory, a symlink, and null for missing paths', async () => {
    const root = await makeTree({
      'f.txt': { content: 'hello', mode: 0o640, mtime: 1_700_000_000_000 },
      d: { dir: true, mode: 0o750 },
      l: { symlink: '../outside/nowhere' },
    });
    const f = await readLocal(root, 'f.txt');
    const st = await fsp.lstat(path.join(root, 'f.txt'));
    expect(f).toEqual({
      entry: { type: 'file', size: 5, mtime: Math.floor(st.mtimeMs), mode: 0o640, hash: sha('hello') },
      stat: fingerprint(st),
      links: 1,
    });
    // A second name of the same inode: both names report two links (their other name is re-checked).
    await fsp.link(path.join(root, 'f.txt'), path.join(root, 'g.txt'));
    expect(await readLocal(root, 'f.txt')).toMatchObject({ links: 2 });
    expect(await readLocal(root, 'g.txt')).toMatchObject({ links: 2 });
    await fsp.rm(path.join(root, 'g.txt'));
    // A directory carries its fingerprint: its inode is what a directory rename is recognised by.
    const dirStat = await fsp.lstat(path.join(root, "d"));
    expect(await readLocal(root, 'd')).toEqual({ entry: { type: 'dir', mode: 0o750 }, stat: fingerprint(dirStat) });
    expect(await readLocal(root, 'l')).toEqual({ entry: { type: 'symlink', target: '../outside/nowhere' }, stat: null });
    expect(await readLocal(root, 'missing')).toBeNull();
    expect(await readLocal(root, 'f.txt/below')).toBeNull();
  });

  it('reports a FIFO and a socket as unsupported', async () => {
    const root = await tempDir();
    execFileSync('mkfifo', [path.join(root, 'fifo')]);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(root, 'sock'), resolve));
    try {
      expect(await readLocal(root, 'fifo')).toBe('unsupported');
      expect(await readLocal(root, 'sock')).toBe('unsupported');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('reuses the known hash when the fingerprint is unchanged, and rehashes when it moved', async () => {
    const root = await makeTree({ f: 'content' });
    const first = await readLocal(root, 'f');
    if (first === null || first === 'unsupported') throw new Error('expected a file');
    // A deliberately wrong known hash proves that no hashing happened.
    const reused = await readLocal(root, 'f', { knownStat: first.stat, knownHash: 'f'.repeat(64) });
    expect(reused).toMatchObject({ entry: { hash: 'f'.repeat(64) } });
    await fsp.writeFile(path.join(root, 'f'), 'content changed');
    const fresh = await readLocal(root, 'f', { knownStat: first.stat, knownHash: 'f'.repeat(64) });
    expect(fresh).toMatchObject({ entry: { hash: sha('content changed'), size: 15 } });
  });

  it('returns an entry consistent with its stat even when the file changes during hashing', async () => {
    const root = await makeTree({ f: Buffer.alloc(8 * 1024 * 1024, 1) });
    const abs = path.join(root, 'f');
    const appending = (async () => {
      for (let i = 0; i < 3; i++) {
        await fsp.appendFile(abs, 'more');
        await new Promise((r) => setImmediate(r));
      }
    })();
    let result: Awaited<ReturnType<typeof readLocal>> | Error;
    try {
      result = await readLocal(root, 'f');
    } catch (err) {
      result = err as Error;
    }
    await appending;
    if (result instanceof Error) {
      expect(result).toMatchObject({ code: 'FILE_UNSTABLE' });
    } else {
      if (result === null || result === 'unsupported' || result.entry.type !== 'file') throw new Error('expected a file');
      const content = await fsp.readFile(abs);
      // Whatever was returned describes one real state: size and hash agree with each other.
      const expectedHash = sha(content.subarray(0, result.entry.size));
      expect(result.entry.hash).toBe(expectedHash);
      expect(result.stat?.size).toBe(result.entry.size);
    }
  });
});

describe('setMtime', () => {
  it('round-trips integer milliseconds exactly (floor and round)', async () => {
    const root = await makeTree({ f: 'x' });
    const abs = path.join(root, 'f');
    // ext4 stores -2^31 s .. ~2446; stay inside.
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: -2_000_000_000_000, max: 15_000_000_000_000 }), async (ms) => {
        const st = await setMtime(abs, ms);
        expect(Math.floor(st.mtimeMs)).toBe(ms);
        expect(Math.round(st.mtimeMs)).toBe(ms);
        const reread = await readLocal(root, 'f');
        expect(reread).toMatchObject({ entry: { mtime: ms } });
      }),
      { numRuns: 300 },
    );
    for (const ms of [0, 1, 999, 1000, 1_700_000_000_123, 1_700_000_000_999, -1]) {
      expect(Math.floor((await setMtime(abs, ms)).mtimeMs)).toBe(ms);
    }
  });

  it('refuses non-integer values with BAD_MTIME', async () => {
    const root = await makeTree({ f: 'x' });
    for (const bad of [1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(setMtime(path.join(root, 'f'), bad)).rejects.toMatchObject({ code: 'BAD_MTIME' });
    }
  });
});

describe('walkTree', () => {
  it('walks pre-order with sorted names, never following symlinks, skipping .systemsync', async () => {
    const outside = await makeTree({ 'secret/s.txt': 's' });
    const root = await makeTree({
      'b/y.txt': 'y',
      'b/a/deep.txt': 'd',
      'a.txt': 'a',
      'B.txt': 'B',
      'empty': { dir: true },
      'link-out': { symlink: path.join(outside, 'secret') },
      '.systemsync/tmp/x': 'internal',
      '.syncignore': '*.log\n',
    });
    expect(await walkAll(root)).toEqual([
      'file:.syncignore',
      'file:B.txt',
      'file:a.txt',
      'dir:b',
      'dir:b/a',
      'file:b/a/deep.txt',
      'file:b/y.txt',
      'dir:empty',
      'symlink:link-out',
    ]);
  });

  it('skips ignored files and does not enter ignored directories', async () => {
    const root = await makeTree({
      'node_modules/p/index.js': 'x',
      'src/a.ts': 'a',
      'src/a.tmp': 't',
      'src/node_modules/q.js': 'q',
    });
    const ignore = createIgnoreMatcher(['*.tmp', 'node_modules/'], null);
    expect(await walkAll(root, { ignore })).toEqual(['dir:src', 'file:src/a.ts']);
  });

  it('walks only below `under`, and reports "other" types', async () => {
    const root = await makeTree({ 'x/y/z.txt': 'z', 'x/w.txt': 'w', 'top.txt': 't' });
    execFileSync('mkfifo', [path.join(root, 'x', 'fifo')]);
    expect(await walkAll(root, { under: 'x' })).toEqual(['other:x/fifo', 'file:x/w.txt', 'dir:x/y', 'file:x/y/z.txt']);
    expect(await walkAll(root, { under: 'nope' })).toEqual([]);
  });

  it('lists nothing when `under` is, or lies under, a symlink (names outside the folder are not the folder\'s)', async () => {
    const outside = await makeTree({ 'secret/s.txt': 's', 'secret/sub/t.txt': 't' });
    const root = await makeTree({
      'real/in.txt': 'i',
      'moved': { symlink: path.join(outside, 'secret') },
      'file.txt': 'f',
    });
    expect(await walkAll(root, { under: 'moved' })).toEqual([]);
    expect(await walkAll(root, { under: 'moved/sub' })).toEqual([]);
    expect(await walkAll(root, { under: 'file.txt' })).toEqual([]);
    expect(await walkAll(root, { under: 'real' })).toEqual(['file:real/in.txt']);
  });

  it('reports a directory it cannot read and goes on', async () => {
    const root = await makeTree({ 'ok/fine.txt': 'y' });
    // Permission bits do not stop root, so use a path longer than PATH_MAX: bash can build it
    // with relative cd's, while every absolute-path call fails with ENAMETOOLONG.
    const name = 'n'.repeat(200);
    execFileSync('bash', ['-c', `cd "$1" && mkdir deep && cd deep && for i in $(seq 25); do mkdir ${name} && cd ${name}; done && echo x > f`, '_', root]);
    const problems: WalkProblem[] = [];
    try {
      const paths = await walkAll(root, { onProblem: (p) => problems.push(p) });
      expect(paths[0]).toBe('dir:deep');
      expect(paths.slice(-2)).toEqual(['dir:ok', 'file:ok/fine.txt']);
      expect(problems).toHaveLength(1);
      expect(problems[0]?.path.startsWith('deep/')).toBe(true);
      expect(problems[0]?.error).toMatchObject({ code: 'ENAMETOOLONG' });
    } finally {
      execFileSync('rm', ['-rf', 'deep'], { cwd: root });
    }
  });
});

describe('hashOpenFile', () => {
  it('reads a file that was empty when opened and grew meanwhile in large chunks, to the end', async () => {
    const root = await tempDir();
    const file = path.join(root, 'growing.bin');
    await fsp.writeFile(file, '');
    const handle = await fsp.open(file, 'r');
    try {
      const content = Buffer.alloc(8 * 1024 * 1024, 7);
      await fsp.appendFile(file, content);
      // The size hint (0) is from before the growth; one-byte reads would take minutes here.
      const result = await hashOpenFile(handle, 0);
      expect(result.size).toBe(content.length);
      expect(result.hash).toBe(createHash('sha256').update(content).digest('hex'));
    } finally {
      await handle.close();
    }
  }, 20_000);
});

describe('readLocal with deferHash', () => {
  it('leaves a changed file unread when asked, and reuses a known hash when nothing changed', async () => {
    const root = await makeTree({ 'f.txt': 'version one' });
    const first = await readLocal(root, 'f.txt');
    if (first === null || first === 'unsupported' || first.entry.type !== 'file') throw new Error('expected a file');
    expect(first.entry.hash).toBe(createHash('sha256').update('version one').digest('hex'));

    // Unchanged fingerprint: the known hash is used and deferHash is never asked.
    const unchanged = await readLocal(root, 'f.txt', { knownStat: first.stat, knownHash: first.entry.hash, deferHash: () => true });
    expect(unchanged !== null && unchanged !== 'unsupported' && unchanged.entry.type === 'file' && unchanged.entry.hash).toBe(first.entry.hash);

    await fsp.writeFile(path.join(root, 'f.txt'), 'version two, longer');
    const deferred = await readLocal(root, 'f.txt', { knownStat: first.stat, knownHash: first.entry.hash, deferHash: () => true });
    expect(deferred !== null && deferred !== 'unsupported' && deferred.entry.type === 'file' && deferred.entry.hash).toBe(DEFERRED_HASH);
    const hashed = await readLocal(root, 'f.txt', { knownStat: first.stat, knownHash: first.entry.hash, deferHash: () => false });
    expect(hashed !== null && hashed !== 'unsupported' && hashed.entry.type === 'file' && hashed.entry.hash).toBe(
      createHash('sha256').update('version two, longer').digest('hex'),
    );
  });
});

describe('small-file reads', () => {
  it('readSmallFile and hashSmallFile read whole files, never through a final symlink, and refuse what is too large', async () => {
    const root = await makeTree({ 'a.txt': 'hello', 'empty.txt': '', 'big.bin': Buffer.alloc(70_000, 1) });
    await fsp.symlink(path.join(root, 'a.txt'), path.join(root, 'link'));
    expect((await readSmallFile(path.join(root, 'a.txt'), 64 * 1024)).toString()).toBe('hello');
    expect((await readSmallFile(path.join(root, 'empty.txt'), 64 * 1024)).length).toBe(0);
    expect(() => readSmallFile(path.join(root, 'big.bin'), 64 * 1024)).toThrow(/larger than 65536/);
    expect(() => readSmallFile(path.join(root, 'link'), 64 * 1024)).toThrow(/ELOOP|symbolic link/);
    expect(() => readSmallFile(root, 64 * 1024)).toThrow(/not a regular file/);
    expect(hashSmallFile(path.join(root, 'big.bin'))).toEqual({ hash: createHash('sha256').update(Buffer.alloc(70_000, 1)).digest('hex'), size: 70_000 });
    expect(() => hashSmallFile(path.join(root, 'link'))).toThrow(/ELOOP|symbolic link/);
  });

  it('isRecordedFile is true only for a file with exactly the recorded fingerprint', async () => {
    const root = await makeTree({ 'a.txt': 'hello', 'd/x': 'x' });
    const st = await fsp.lstat(path.join(root, 'a.txt'));
    const entry = { type: 'file' as const, size: 5, mtime: Math.floor(st.mtimeMs), mode: 0o644, hash: 'f'.repeat(64) };
    expect(isRecordedFile(root, 'a.txt', { entry, stat: fingerprint(st) })).toBe(true);
    expect(isRecordedFile(root, 'a.txt', { entry, stat: null })).toBe(false);
    expect(isRecordedFile(root, 'a.txt', null)).toBe(false);
    expect(isRecordedFile(root, 'd', { entry: { type: 'dir', mode: 0o755 }, stat: fingerprint(await fsp.lstat(path.join(root, 'd'))) })).toBe(false);
    await fsp.appendFile(path.join(root, 'a.txt'), '!');
    expect(isRecordedFile(root, 'a.txt', { entry, stat: fingerprint(st) })).toBe(false);
    await fsp.rm(path.join(root, 'a.txt'));
    expect(isRecordedFile(root, 'a.txt', { entry, stat: fingerprint(st) })).toBe(false);
  });
});

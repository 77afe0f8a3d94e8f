/**
 * Odd names, end to end, between real daemons over a real sshd: spaces, quotes, newlines,
 * leading dashes, NFC and NFD forms of one name, 255-byte names, names that look like our temp
 * files, names differing only in case. And a path the receiving side cannot store (its folder
 * root is deeper, so the same relative path passes PATH_MAX there): a visible failed task with
 * its error, never a silent rename, and everything else keeps syncing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startAll, startCluster, waitIdle, type Cluster } from './helpers/daemons.js';
import { cleanupTempDirs, snapshotTree } from './helpers/tree.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';

interface Task {
  folder: string;
  path: string;
  op: string;
  state: string;
  permanent: boolean;
  lastError: string | null;
  attempts: number;
}

const PATH_MAX = 4096;
let cluster: Cluster;
let hub: string, alpha: string, beta: string;

/** A relative path of exactly `bytes` bytes, made of 200-byte directory names and a file name. */
function longPath(bytes: number, tag: string): string {
  const parts: string[] = [];
  let used = 0;
  while (bytes - used > 255) {
    parts.push(`${tag}${'d'.repeat(199 - tag.length)}`);
    used += 200; // 199 characters and a slash
  }
  const last = bytes - used;
  parts.push(`${tag}${'f'.repeat(last - tag.length)}`);
  const p = parts.join('/');
  if (Buffer.byteLength(p) !== bytes) throw new Error(`longPath: made ${Buffer.byteLength(p)} bytes, wanted ${bytes}`);
  return p;
}

/** A path that fits on alpha but not on the hub (alpha's push of it fails). */
function pushRel(): string {
  return longPath(PATH_MAX - 1 - Buffer.byteLength(alpha) - 1 - 40, 'push');
}

/** A path that fits on alpha and the hub but not on beta (beta's pull of it fails). */
function pullRel(): string {
  return longPath(PATH_MAX - 1 - Buffer.byteLength(hub) - 1 - 40, 'pull');
}

/**
 * What the tests leave that is not the same on every node, whatever ran before: ignored files and
 * the paths some node cannot store. Trees are compared without them.
 */
function unequalByDesign(): string[] {
  return ['key.secret', 'build', 'beta.secret', pushRel().split('/')[0]!, pullRel().split('/')[0]!];
}

async function writeDeep(root: string, rel: string, content: string): Promise<void> {
  await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
  await fs.writeFile(path.join(root, rel), content);
}

async function tasksOf(index: number): Promise<Task[]> {
  return (await cluster.clients[index]!.control<{ tasks: Task[] }>('tasks')).tasks;
}

/** Everything under `root` (no symlinks followed), as relative paths. */
async function listAll(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of await fs.readdir(rel === '' ? root : path.join(root, rel))) {
      const sub = rel === '' ? name : `${rel}/${name}`;
      out.push(sub);
      if ((await fs.lstat(path.join(root, sub))).isDirectory()) await walk(sub);
    }
  };
  await walk('');
  return out;
}

/**
 * A cluster whose folders lie at different depths. Each describe starts its own: the paths that
 * cannot be stored leave permanent failed tasks (a client that is never idle again), which the
 * odd-name tests must not inherit.
 */
async function startNamesCluster(): Promise<void> {
  cluster = await startCluster({ clients: 2, noStart: true });
  // alpha's folder is short, the hub's deeper, beta's deeper still: one relative path can fit
  // PATH_MAX on alpha but not on the hub, another on the hub but not on beta.
  const deep = (node: string, levels: number): string =>
    path.join(cluster.dir, node, ...Array.from({ length: levels }, (_, i) => `level${i}-${'n'.repeat(190)}`), 'docs');
  alpha = cluster.clients[0]!.folder();
  hub = deep('hub-deep', 2);
  beta = deep('beta-deep', 4);
  for (const dir of [hub, beta]) await fs.mkdir(dir, { recursive: true });
  const server = cluster.server;
  const rpcSocket = path.join(server.stateDir, 'rpc.sock');
  server.writeConfig(`[node]\nname = hub\nrole = server\nstate_dir = ${server.stateDir}\n\n[rpc]\nsocket = ${rpcSocket}\n\n[folders]\ndocs = ${hub}\n`);
  const betaNode = cluster.clients[1]!;
  betaNode.writeConfig(
    `[node]\nname = beta\nrole = client\nstate_dir = ${betaNode.stateDir}\n\n` +
      `[server]\nhost = 127.0.0.1\nport = ${cluster.sshd.port}\nuser = ${cluster.sshd.user}\nidentity = ${cluster.sshd.clientKeyPath}\n` +
      `known_hosts = ${cluster.sshd.knownHostsPath}\nhost_key_check = yes\nrpc_socket = ${rpcSocket}\nconnect_timeout = 5\n\n[folders]\ndocs = ${beta}\n`,
  );
  await startAll(cluster);
}

async function stopNamesCluster(): Promise<void> {
  await cluster?.stop();
  await cleanupTempDirs();
}

const NFC = 'caf\u00e9.txt';
const NFD = 'cafe\u0301.txt';

const ALPHA_NAMES: Record<string, string> = {
  'with space.txt': 'space',
  ' leading space': 'leading space',
  'trailing space ': 'trailing space',
  "it's.txt": 'single quote',
  'say "hi".txt': 'double quotes',
  'line1\nline2.txt': 'newline',
  'carriage\rreturn': 'carriage return',
  'tab\tname': 'tab',
  '-rf': 'dash rf',
  '--help': 'dash dash help',
  '-': 'lone dash',
  [NFC]: 'NFC form',
  [NFD]: 'NFD form',
  [`${'a'.repeat(251)}.txt`]: '255 ascii bytes',
  ['\u00e9'.repeat(127) + 'x']: '255 bytes, 2-byte chars',
  ['\u65e5'.repeat(85)]: '255 bytes, 3-byte chars',
  ['\u{1F600}'.repeat(63) + 'abc']: '255 bytes, 4-byte chars',
  'x.part': 'looks like a temp file',
  'lqz-abc.up': 'looks like an upload',
  'm0abc-0123456789ab.down': 'looks like a download',
  'tmp/inner.txt': 'a tmp dir outside .systemsync',
  'trash/20200101-000000/old.txt': 'a trash-like dir outside .systemsync',
  'systemsync/x': 'no leading dot',
  '.systemsyncx': 'prefix of the reserved name',
  'sub/.systemsync/nested.txt': 'reserved name below the root is an ordinary dir',
  Readme: 'title case',
  README: 'upper case',
  '.hidden': 'hidden',
  '...': 'three dots',
  '..foo': 'starts with two dots',
  'dots/..bar/x': 'a directory that starts with two dots',
  '#hash': 'hash',
  '!bang': 'bang',
  '*star?[x]': 'glob characters',
  'dir with space/and\nnewline/-rf': 'odd names at every level',
  'a.sync-conflict-20260101-000000-nobody.txt': 'looks like a conflict copy',
};

describe('odd names between two clients and the hub', () => {
  beforeAll(startNamesCluster);
  afterAll(stopNamesCluster);

  it('syncs every odd name alpha writes, as distinct files, unchanged', async () => {
    for (const [name, content] of Object.entries(ALPHA_NAMES)) await writeDeep(alpha, name, content);
    const tree = await waitForTreesEqual([alpha, hub, beta], { timeoutMs: 60_000, exclude: unequalByDesign() });
    for (const [name, content] of Object.entries(ALPHA_NAMES)) {
      expect(tree.get(name)?.type, name).toBe('file');
      expect(await fs.readFile(path.join(beta, name), 'utf8'), name).toBe(content);
      expect(await fs.readFile(path.join(hub, name), 'utf8'), name).toBe(content);
    }
    // NFC and NFD stay two files; Readme and README stay two files.
    const names = await fs.readdir(beta);
    expect(names).toContain(NFC);
    expect(names).toContain(NFD);
    expect(names).toContain('Readme');
    expect(names).toContain('README');
    expect(names.filter((n) => n.normalize('NFC') === NFC)).toHaveLength(2);
    // Nothing was renamed: beta holds exactly alpha's names.
    const unequal = unequalByDesign();
    const synced = (all: string[]): string[] =>
      all.filter((p) => p !== '.systemsync' && !p.startsWith('.systemsync/') && !unequal.includes(p.split('/')[0]!)).sort();
    expect(synced(await listAll(beta))).toEqual(synced(await listAll(alpha)));
  });

  it('syncs odd names beta writes, and edits and deletes of odd names', async () => {
    const betaNames: Record<string, string> = {
      'beta says "hello"\n.txt': 'from beta',
      '--': 'double dash',
      '-n': 'dash n',
      ['\u00c5ngstr\u00f6m']: 'NFC angstrom',
      ['A\u030angstro\u0308m']: 'NFD angstrom',
      Case: 'title',
      CASE: 'upper',
      [`${'b'.repeat(255)}`]: '255 bytes from beta',
    };
    // Odd names alpha wrote, in a directory of this test's own, for beta to edit, delete and rename.
    const own = 'edited by beta';
    const fromAlpha: Record<string, string> = { [NFC]: 'NFC form', [NFD]: 'NFD form', '-rf': 'dash rf', 'line1\nline2.txt': 'newline' };
    for (const [name, content] of Object.entries(fromAlpha)) await writeDeep(alpha, `${own}/${name}`, content);
    await waitFor(async () => (await fs.readFile(path.join(beta, own, 'line1\nline2.txt'), 'utf8').catch(() => null)) === 'newline', {
      timeoutMs: 60_000,
      what: "alpha's odd names on beta",
    });
    await waitForTreesEqual([alpha, hub, beta], { timeoutMs: 60_000, exclude: unequalByDesign() });
    await waitIdle(cluster.all);

    for (const [name, content] of Object.entries(betaNames)) await writeDeep(beta, name, content);
    await fs.writeFile(path.join(beta, own, NFD), 'NFD edited on beta');
    await fs.rm(path.join(beta, own, '-rf'));
    await fs.rename(path.join(beta, own, 'line1\nline2.txt'), path.join(beta, own, "renamed 'quoted'\n.txt"));
    await waitForTreesEqual([alpha, hub, beta], { timeoutMs: 60_000, exclude: unequalByDesign() });
    for (const [name, content] of Object.entries(betaNames)) expect(await fs.readFile(path.join(alpha, name), 'utf8'), name).toBe(content);
    expect(await fs.readFile(path.join(alpha, own, NFD), 'utf8')).toBe('NFD edited on beta');
    expect(await fs.readFile(path.join(alpha, own, NFC), 'utf8')).toBe('NFC form');
    await expect(fs.lstat(path.join(alpha, own, '-rf'))).rejects.toThrow(/ENOENT/);
    await expect(fs.lstat(path.join(alpha, own, 'line1\nline2.txt'))).rejects.toThrow(/ENOENT/);
    expect(await fs.readFile(path.join(alpha, own, "renamed 'quoted'\n.txt"), 'utf8')).toBe('newline');
  });

  it('applies a .syncignore on every node', async () => {
    await fs.writeFile(path.join(alpha, '.syncignore'), '*.secret\nbuild/\n');
    await waitFor(async () => (await fs.readFile(path.join(beta, '.syncignore'), 'utf8').catch(() => null)) === '*.secret\nbuild/\n', {
      timeoutMs: 30_000,
      what: '.syncignore on beta',
    });
    await waitIdle(cluster.all);
    await fs.writeFile(path.join(alpha, 'key.secret'), 'alpha secret');
    await writeDeep(alpha, 'build/out.o', 'object');
    await fs.writeFile(path.join(beta, 'beta.secret'), 'beta secret');
    await fs.writeFile(path.join(alpha, 'visible.txt'), 'visible');
    await waitFor(async () => (await fs.readFile(path.join(beta, 'visible.txt'), 'utf8').catch(() => null)) === 'visible', {
      timeoutMs: 30_000,
      what: 'visible.txt on beta',
    });
    await waitIdle(cluster.all);
    await waitForTreesEqual([alpha, hub, beta], { exclude: unequalByDesign() });
    for (const [root, name] of [
      [hub, 'key.secret'],
      [beta, 'key.secret'],
      [hub, 'build'],
      [beta, 'build'],
      [hub, 'beta.secret'],
      [alpha, 'beta.secret'],
    ] as const) {
      await expect(fs.lstat(path.join(root, name)), `${name} in ${root}`).rejects.toThrow(/ENOENT/);
    }
  });
});

describe('a path the receiving side cannot store', () => {
  beforeAll(startNamesCluster);
  afterAll(stopNamesCluster);

  it('fails a push as a visible task error, renames nothing, and the rest keeps syncing', async () => {
    // Fits on alpha; on the hub the same relative path is over PATH_MAX.
    const rel = pushRel();
    expect(Buffer.byteLength(path.join(alpha, rel))).toBeLessThan(PATH_MAX);
    expect(Buffer.byteLength(path.join(hub, rel))).toBeGreaterThanOrEqual(PATH_MAX);
    await writeDeep(alpha, rel, 'cannot land on the hub');

    const failed = (await waitFor(
      async () => (await tasksOf(0)).find((t) => t.path === rel && t.state === 'failed') ?? null,
      { timeoutMs: 60_000, what: 'the failed push of the long path to be listed' },
    ))!;
    expect(failed.op).toBe('push');
    expect(failed.permanent).toBe(true);
    expect(failed.lastError).toMatch(/ENAMETOOLONG|name too long/i);

    const cli = await cluster.clients[0]!.cli(['tasks']);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/failed \(permanent\)\s+push\s+docs\s+push/);
    expect(cli.stdout).toMatch(/ENAMETOOLONG|name too long/i);
    const json = await cluster.clients[0]!.cli(['tasks', '--json']);
    expect((JSON.parse(json.stdout) as Task[]).some((t) => t.path === rel && t.state === 'failed')).toBe(true);
    expect(cluster.clients[0]!.log()).toMatch(/push .* refused by the server .*permanent.*(ENAMETOOLONG|name too long)/i);

    // Nothing renamed: the file stays where it is on alpha, and no shortened or mangled copy exists anywhere.
    expect(await fs.readFile(path.join(alpha, rel), 'utf8')).toBe('cannot land on the hub');
    const leaf = path.basename(rel);
    for (const root of [hub, beta]) {
      const all = await listAll(root);
      expect(all.filter((p) => p.endsWith(leaf) || /sync-conflict.*alpha/.test(p) || p.includes('push' + 'f'))).toEqual([]);
    }

    // Other files still sync.
    await fs.writeFile(path.join(alpha, 'after-long.txt'), 'still syncing');
    await waitFor(async () => (await fs.readFile(path.join(beta, 'after-long.txt'), 'utf8').catch(() => null)) === 'still syncing', {
      timeoutMs: 30_000,
      what: 'after-long.txt on beta',
    });
  });

  it('fails a pull as a visible task error on the client that cannot store it, renames nothing', async () => {
    // Fits on alpha and on the hub; on beta the same relative path is over PATH_MAX.
    const rel = pullRel();
    expect(Buffer.byteLength(path.join(hub, rel))).toBeLessThan(PATH_MAX);
    expect(Buffer.byteLength(path.join(beta, rel))).toBeGreaterThanOrEqual(PATH_MAX);
    await writeDeep(alpha, rel, 'cannot land on beta');
    await waitFor(async () => (await fs.readFile(path.join(hub, rel), 'utf8').catch(() => null)) === 'cannot land on beta', {
      timeoutMs: 30_000,
      what: 'the long path on the hub',
    });

    const failed = (await waitFor(
      async () => (await tasksOf(1)).find((t) => t.path === rel && t.state === 'failed') ?? null,
      { timeoutMs: 60_000, what: 'the failed pull of the long path to be listed on beta' },
    ))!;
    expect(failed.op).toBe('pull');
    expect(failed.permanent).toBe(true);
    expect(failed.lastError).toMatch(/ENAMETOOLONG|name too long/i);
    const cli = await cluster.clients[1]!.cli(['tasks']);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/failed \(permanent\)\s+pull\s+docs\s+pull/);
    expect((await cluster.clients[1]!.status()).folders[0]!.failed).toBeGreaterThanOrEqual(1);

    const leaf = path.basename(rel);
    expect((await listAll(beta)).filter((p) => p.endsWith(leaf) || /sync-conflict.*beta/.test(p))).toEqual([]);
    // beta's temp dir holds no leftover of the failed download.
    expect(await fs.readdir(path.join(beta, '.systemsync', 'tmp')).catch(() => [])).toEqual([]);

    await fs.writeFile(path.join(beta, 'from-beta-after.txt'), 'beta still syncs');
    await waitFor(async () => (await fs.readFile(path.join(alpha, 'from-beta-after.txt'), 'utf8').catch(() => null)) === 'beta still syncs', {
      timeoutMs: 30_000,
      what: 'from-beta-after.txt on alpha',
    });
    // Everything that can be stored everywhere is identical.
    await waitForTreesEqual([alpha, hub, beta], { exclude: unequalByDesign() });
    expect((await snapshotTree(alpha)).has(rel)).toBe(true);
  });
});

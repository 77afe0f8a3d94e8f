/**
 * Conflicts, edit-versus-delete, the mass-delete guard, the server's trash and the first sync of
 * folders that already hold files (SPEC promises 7–10), with real daemons against a real sshd.
 * Concurrency is made real by editing while the daemons are stopped, then starting them together.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { startCluster, startDaemon, waitConnected, waitIdle, type Cluster, type Daemon } from './helpers/daemons.js';
import { cleanupTempDirs, makeTree, snapshotTree } from './helpers/tree.js';
import { waitFor, waitForTreesEqual } from './helpers/wait.js';

const STAMP = '\\d{8}-\\d{6}';

/** Every file of a tree whose name is a conflict copy of `stem`/`ext`, as path → content. */
async function conflictCopies(root: string, stem: string, ext: string | null): Promise<Map<string, string>> {
  const pattern = new RegExp(`^${stem}\\.sync-conflict-${STAMP}-(alpha|beta|hub)${ext === null ? '' : `\\.${ext}`}$`);
  const out = new Map<string, string>();
  for (const [p, item] of await snapshotTree(root)) {
    if (item.type === 'file' && pattern.test(p)) out.set(p, await fs.readFile(path.join(root, p), 'utf8'));
  }
  return out;
}

async function readOrNull(file: string): Promise<string | null> {
  return fs.readFile(file, 'utf8').catch(() => null);
}

describe('conflicts, deletes, pauses and trash', () => {
  let cluster: Cluster;
  let alphaNode: Daemon, betaNode: Daemon;
  let hub: string, alpha: string, beta: string;

  const converge = async (timeoutMs = 60_000): Promise<void> => {
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs });
    await waitIdle(cluster.all);
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs });
  };

  /** Stop both clients, run `edit` while they are down, then start both at once. */
  const whileBothDown = async (edit: () => Promise<void>): Promise<void> => {
    await Promise.all([alphaNode.stop('SIGTERM'), betaNode.stop('SIGTERM')]);
    await edit();
    alphaNode.start();
    betaNode.start();
    await Promise.all([waitConnected(alphaNode), waitConnected(betaNode)]);
  };

  beforeAll(async () => {
    cluster = await startCluster({ clients: 2 });
    [alphaNode, betaNode] = cluster.clients as [Daemon, Daemon];
    [hub, alpha, beta] = [cluster.server.folder(), alphaNode.folder(), betaNode.folder()];
  });

  afterAll(async () => {
    await cluster?.stop();
    await cleanupTempDirs();
  });

  it('keeps both versions of a file edited on two clients at once, the later as a conflict copy named per SPEC', async () => {
    await makeTree({ 'notes.txt': 'v0\n', 'sub/archive.tar.gz': 'gz v0', 'README': 'plain v0', 'same.txt': 'same v0' }, alpha);
    await converge();
    await whileBothDown(async () => {
      await fs.writeFile(path.join(alpha, 'notes.txt'), 'alpha edit\n');
      await fs.writeFile(path.join(beta, 'notes.txt'), 'beta edit\n');
      await fs.writeFile(path.join(alpha, 'sub/archive.tar.gz'), 'gz alpha');
      await fs.writeFile(path.join(beta, 'sub/archive.tar.gz'), 'gz beta');
      await fs.writeFile(path.join(alpha, 'README'), 'plain alpha');
      await fs.writeFile(path.join(beta, 'README'), 'plain beta');
      // The same new content on both sides is not a conflict.
      await fs.writeFile(path.join(alpha, 'same.txt'), 'same v1');
      await fs.writeFile(path.join(beta, 'same.txt'), 'same v1');
    });
    await converge();

    const cases: Array<{ file: string; stem: string; ext: string | null; dir: string; versions: Record<string, string> }> = [
      { file: 'notes.txt', stem: 'notes', ext: 'txt', dir: '', versions: { alpha: 'alpha edit\n', beta: 'beta edit\n' } },
      { file: 'sub/archive.tar.gz', stem: 'archive\\.tar', ext: 'gz', dir: 'sub', versions: { alpha: 'gz alpha', beta: 'gz beta' } },
      { file: 'README', stem: 'README', ext: null, dir: '', versions: { alpha: 'plain alpha', beta: 'plain beta' } },
    ];
    for (const root of [hub, alpha, beta]) {
      for (const c of cases) {
        const atPath = await fs.readFile(path.join(root, c.file), 'utf8');
        const copies = await conflictCopies(path.join(root, c.dir), c.stem, c.ext);
        expect(copies.size, `${root}: one conflict copy of ${c.file}`).toBe(1);
        const [copyName, copyContent] = [...copies][0]!;
        // The copy is named after the node that wrote the version it holds.
        const copyNode = /-(alpha|beta|hub)(\.[^.]*)?$/.exec(copyName)![1]!;
        expect(copyContent).toBe(c.versions[copyNode]);
        const winner = copyNode === 'alpha' ? 'beta' : 'alpha';
        expect(atPath).toBe(c.versions[winner]);
      }
      expect(await fs.readFile(path.join(root, 'same.txt'), 'utf8')).toBe('same v1');
      expect((await conflictCopies(root, 'same', 'txt')).size).toBe(0);
    }
    const status = await alphaNode.status();
    const betaStatus = await betaNode.status();
    // Each client counts the conflict copies it holds.
    expect(status.folders[0]!.conflicts).toBe(3);
    expect(betaStatus.folders[0]!.conflicts).toBe(3);
  });

  it('lets an edit win over a concurrent delete, everywhere', async () => {
    await makeTree({ 'ed1.txt': 'e1 v0', 'ed2.txt': 'e2 v0' }, alpha);
    await converge();
    await whileBothDown(async () => {
      await fs.writeFile(path.join(alpha, 'ed1.txt'), 'e1 edited by alpha');
      await fs.rm(path.join(beta, 'ed1.txt'));
      await fs.rm(path.join(alpha, 'ed2.txt'));
      await fs.writeFile(path.join(beta, 'ed2.txt'), 'e2 edited by beta');
    });
    await converge();
    for (const root of [hub, alpha, beta]) {
      expect(await fs.readFile(path.join(root, 'ed1.txt'), 'utf8')).toBe('e1 edited by alpha');
      expect(await fs.readFile(path.join(root, 'ed2.txt'), 'utf8')).toBe('e2 edited by beta');
      expect((await conflictCopies(root, 'ed1', 'txt')).size).toBe(0);
      expect((await conflictCopies(root, 'ed2', 'txt')).size).toBe(0);
    }
  });

  it('keeps a deleted or replaced file in the server trash at .systemsync/trash/<YYYYMMDD-HHMMSS>/<path>', async () => {
    await makeTree({ 'deep/er/gone.txt': 'precious', 'deep/kept.txt': 'old content' }, alpha);
    await converge();
    await fs.rm(path.join(alpha, 'deep/er/gone.txt'));
    await fs.writeFile(path.join(alpha, 'deep/kept.txt'), 'new content');
    await converge();
    await expect(fs.lstat(path.join(hub, 'deep/er/gone.txt'))).rejects.toThrow(/ENOENT/);
    const trash = path.join(hub, '.systemsync', 'trash');
    const stamps = await fs.readdir(trash);
    for (const stamp of stamps) expect(stamp).toMatch(new RegExp(`^${STAMP}$`));
    const found = async (rel: string): Promise<string[]> => {
      const out: string[] = [];
      for (const stamp of stamps) {
        const content = await readOrNull(path.join(trash, stamp, rel));
        if (content !== null) out.push(content);
      }
      return out;
    };
    expect(await found('deep/er/gone.txt')).toContain('precious');
    expect(await found('deep/kept.txt')).toContain('old content');
    // Recover it by hand: copy it back on the server, and it syncs to every client.
    const source = (await Promise.all(stamps.map(async (s) => ((await readOrNull(path.join(trash, s, 'deep/er/gone.txt'))) !== null ? s : null)))).find(Boolean)!;
    await fs.copyFile(path.join(trash, source, 'deep/er/gone.txt'), path.join(hub, 'deep/er/gone.txt'));
    await converge();
    expect(await fs.readFile(path.join(beta, 'deep/er/gone.txt'), 'utf8')).toBe('precious');
  });

  it('pauses a client whose folder was swapped for an empty directory, deletes nothing, and resumes when it is back', async () => {
    await makeTree({ 'keep/a.txt': 'a', 'keep/b.txt': 'b', 'top.txt': 'top' }, alpha);
    await converge();
    const before = await snapshotTree(hub);
    const away = `${beta}.away`;
    await fs.rename(beta, away);
    await fs.mkdir(beta);
    const reason = await waitFor(async () => (await betaNode.status()).folders[0]!.paused, { timeoutMs: 30_000, what: 'beta to pause its folder' });
    expect(typeof reason).toBe('string');
    expect(reason!.length).toBeGreaterThan(0);
    expect(betaNode.log()).toMatch(/paused: .*marker/);
    // Life goes on elsewhere: a new file from alpha reaches the server while beta is paused.
    await fs.writeFile(path.join(alpha, 'during-pause.txt'), 'written while beta was paused');
    await waitFor(async () => (await readOrNull(path.join(hub, 'during-pause.txt'))) !== null, { what: 'the hub to get during-pause.txt' });
    await waitIdle([cluster.server, alphaNode]);
    // Nothing was deleted anywhere, and nothing was written into the empty directory.
    const after = await snapshotTree(hub);
    for (const [p, item] of before) expect(after.get(p), `hub still has ${p}`).toEqual(item);
    await waitForTreesEqual([hub, alpha]);
    expect(await fs.readdir(beta)).toEqual([]);
    expect((await betaNode.status()).folders[0]!.paused).toBe(reason);

    await fs.rmdir(beta);
    await fs.rename(away, beta);
    await waitFor(async () => (await betaNode.status()).folders[0]!.paused === null, { timeoutMs: 30_000, what: 'beta to resume' });
    expect(betaNode.log()).toMatch(/folder is back: resuming/);
    await converge();
    expect(await fs.readFile(path.join(beta, 'during-pause.txt'), 'utf8')).toBe('written while beta was paused');
    expect(await fs.readFile(path.join(hub, 'keep/a.txt'), 'utf8')).toBe('a');
  });

  it('pauses the server folder whose root vanished and keeps every client file', async () => {
    const away = `${hub}.away`;
    const alphaBefore = await snapshotTree(alpha);
    await fs.rename(hub, away);
    const reason = await waitFor(async () => (await cluster.server.status()).folders[0]!.paused, { timeoutMs: 30_000, what: 'the hub to pause its folder' });
    expect(reason).toMatch(/missing/);
    expect(cluster.server.log()).toMatch(/paused: folder root is missing/);
    // A client edit meanwhile is refused by the server and kept queued, never lost.
    await fs.writeFile(path.join(alpha, 'while-hub-away.txt'), 'queued');
    await waitFor(async () => (await alphaNode.status()).folders[0]!.failed > 0 || (await alphaNode.status()).folders[0]!.pendingPush > 0, {
      what: 'alpha to hold its push',
    });
    for (const [p] of alphaBefore) expect(await fs.lstat(path.join(alpha, p)).then(() => true), `alpha still has ${p}`).toBe(true);
    await expect(fs.lstat(hub)).rejects.toThrow(/ENOENT/); // never recreated by the daemons
    await fs.rename(away, hub);
    await waitFor(async () => (await cluster.server.status()).folders[0]!.paused === null, { timeoutMs: 30_000, what: 'the hub to resume' });
    await cluster.clients[0]!.cli(['retry']);
    await converge();
    expect(await fs.readFile(path.join(beta, 'while-hub-away.txt'), 'utf8')).toBe('queued');
  });
});

describe('first sync of folders that already hold files', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ clients: 2, noStart: true });
  });

  afterAll(async () => {
    await cluster?.stop();
    await cleanupTempDirs();
  });

  it('merges: one-sided files are copied, identical files left alone, different files follow the conflict rule', async () => {
    const [alphaNode, betaNode] = cluster.clients as [Daemon, Daemon];
    const [hub, alpha, beta] = [cluster.server.folder(), alphaNode.folder(), betaNode.folder()];
    const old = new Date('2024-01-02T03:04:05Z');
    await makeTree(
      {
        'only-hub.txt': 'hub only',
        'hubdir/nested/h.txt': 'hub nested',
        'same.txt': { content: 'identical', mtime: old },
        'diff.txt': 'hub version',
      },
      hub,
    );
    await makeTree(
      {
        'only-alpha.txt': 'alpha only',
        'alphadir/nested/a.txt': 'alpha nested',
        'same.txt': { content: 'identical', mtime: old },
        'diff.txt': 'alpha version',
        'clients-differ.txt': 'alpha says',
      },
      alpha,
    );
    await makeTree({ 'only-beta.txt': 'beta only', 'same.txt': 'identical', 'clients-differ.txt': 'beta says' }, beta);
    const sameIno = (await fs.stat(path.join(alpha, 'same.txt'))).ino;

    await startDaemon(cluster.server);
    alphaNode.start();
    await waitConnected(alphaNode);
    await waitIdle([cluster.server, alphaNode]);
    betaNode.start();
    await waitConnected(betaNode);
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs: 60_000 });
    await waitIdle(cluster.all);
    await waitForTreesEqual([hub, alpha, beta], { timeoutMs: 60_000 });

    for (const root of [hub, alpha, beta]) {
      expect(await fs.readFile(path.join(root, 'only-hub.txt'), 'utf8')).toBe('hub only');
      expect(await fs.readFile(path.join(root, 'hubdir/nested/h.txt'), 'utf8')).toBe('hub nested');
      expect(await fs.readFile(path.join(root, 'only-alpha.txt'), 'utf8')).toBe('alpha only');
      expect(await fs.readFile(path.join(root, 'alphadir/nested/a.txt'), 'utf8')).toBe('alpha nested');
      expect(await fs.readFile(path.join(root, 'only-beta.txt'), 'utf8')).toBe('beta only');
      expect(await fs.readFile(path.join(root, 'same.txt'), 'utf8')).toBe('identical');
      expect((await conflictCopies(root, 'same', 'txt')).size).toBe(0);
      // The server had diff.txt first: it keeps the path, alpha's version becomes alpha's copy.
      expect(await fs.readFile(path.join(root, 'diff.txt'), 'utf8')).toBe('hub version');
      expect([...(await conflictCopies(root, 'diff', 'txt'))].map(([p, c]) => [p.replace(/\d{8}-\d{6}/, 'T'), c])).toEqual([
        ['diff.sync-conflict-T-alpha.txt', 'alpha version'],
      ]);
      // alpha connected first: its clients-differ.txt keeps the path, beta's is beta's copy.
      expect(await fs.readFile(path.join(root, 'clients-differ.txt'), 'utf8')).toBe('alpha says');
      expect([...(await conflictCopies(root, 'clients-differ', 'txt'))].map(([p, c]) => [p.replace(/\d{8}-\d{6}/, 'T'), c])).toEqual([
        ['clients-differ.sync-conflict-T-beta.txt', 'beta says'],
      ]);
    }
    // Identical files are left alone: not replaced on alpha (same inode).
    expect((await fs.stat(path.join(alpha, 'same.txt'))).ino).toBe(sameIno);
  });
});

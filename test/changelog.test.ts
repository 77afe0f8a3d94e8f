// The server's change log, in process, on a real temp dir: versions, pages, cursors, pruning,
// counters, and what survives a close and reopen.
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Entry } from '../src/core/types.js';
import { ChangeLog } from '../src/server/changelog.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';

afterAll(cleanupTempDirs);

const file = (size: number, hash = 'a'.repeat(64)): Entry => ({ type: 'file', size, mtime: 1_700_000_000_000, mode: 0o644, hash });
const dir: Entry = { type: 'dir', mode: 0o755 };
const link: Entry = { type: 'symlink', target: 'elsewhere' };
const DAY = 24 * 3600 * 1000;
const at = (ms: number): Date => new Date(Date.UTC(2026, 0, 1) + ms);

async function openLog(): Promise<{ log: ChangeLog; dir: string }> {
  const d = path.join(await tempDir(), 'state');
  return { log: await ChangeLog.open(d), dir: d };
}

describe('ChangeLog versions', () => {
  it('numbers every version from 1, keeps only the current one per path, and records deletes as tombstones', async () => {
    const { log } = await openLog();
    expect(log.isEmpty).toBe(true);
    expect(log.head).toBe(0);
    expect(log.assign('a.txt', file(3), 'alpha', { stat: { ino: 7, size: 3, mtimeMs: 1, ctimeMs: 2 } })).toBe(1);
    expect(log.assign('b.txt', file(5), 'beta')).toBe(2);
    expect(log.assign('a.txt', file(4), 'beta')).toBe(3);
    expect(log.assign('b.txt', null, 'alpha', { stat: { ino: 8, size: 5, mtimeMs: 1, ctimeMs: 2 } })).toBe(4);
    expect(log.head).toBe(4);
    expect(log.get('a.txt')).toEqual({ seq: 3, entry: file(4), origin: 'beta', stat: null });
    // A tombstone never keeps a stat: the path is gone on disk.
    expect(log.get('b.txt')).toEqual({ seq: 4, entry: null, origin: 'alpha', stat: null });
    expect(log.get('never.txt')).toBeNull();
    expect(log.livePaths()).toEqual(['a.txt']);
    await log.close();
  });

  it('keeps `from` for a version that arrived by a rename, and setStat changes no version', async () => {
    const { log } = await openLog();
    log.assign('old.txt', file(1), 'alpha');
    log.assign('old.txt', null, 'alpha');
    const seq = log.assign('new.txt', file(1), 'alpha', { from: 'old.txt' });
    log.setStat('new.txt', { ino: 9, size: 1, mtimeMs: 5, ctimeMs: 6 });
    log.setStat('missing.txt', { ino: 1, size: 1, mtimeMs: 1, ctimeMs: 1 });
    expect(log.get('new.txt')).toEqual({ seq, entry: file(1), origin: 'alpha', from: 'old.txt', stat: { ino: 9, size: 1, mtimeMs: 5, ctimeMs: 6 } });
    expect(log.get('missing.txt')).toBeNull();
    expect(log.head).toBe(seq);
    await log.close();
  });

  it('counts live files, their bytes and conflict copies through replaces, type changes and deletes', async () => {
    const { log } = await openLog();
    const copy = 'notes.sync-conflict-20260101-000000-beta.txt';
    log.assign('notes.txt', file(10), 'alpha');
    log.assign(copy, file(20), 'beta');
    log.assign('d', dir, 'alpha');
    log.assign('l', link, 'alpha');
    expect([log.files, log.bytes, log.conflicts]).toEqual([2, 30, 1]);
    log.assign('notes.txt', file(15), 'beta');
    expect([log.files, log.bytes, log.conflicts]).toEqual([2, 35, 1]);
    log.assign('notes.txt', dir, 'beta');
    expect([log.files, log.bytes, log.conflicts]).toEqual([1, 20, 1]);
    log.assign(copy, null, 'alpha');
    expect([log.files, log.bytes, log.conflicts]).toEqual([0, 0, 0]);
    await log.close();
  });

  it('lists the live paths recorded on one inode (hard links), without tombstones or paths of other inodes', async () => {
    const { log } = await openLog();
    const on = (ino: number) => ({ stat: { ino, size: 3, mtimeMs: 1, ctimeMs: 2 } });
    log.assign('one', file(3), 'hub', on(7));
    log.assign('two', file(3), 'hub', on(7));
    log.assign('other', file(3), 'hub', on(8));
    log.assign('gone', file(3), 'hub', on(7));
    log.assign('gone', null, 'hub');
    log.assign('unknown', file(3), 'alpha');
    expect(log.livePathsOnInode(7).sort()).toEqual(['one', 'two']);
    expect(log.livePathsOnInode(9)).toEqual([]);
    await log.close();
  });

  it('lists the live paths strictly inside a directory, deepest first, without tombstones or look-alike prefixes', async () => {
    const { log } = await openLog();
    for (const p of ['d', 'd/a', 'd/a/x.txt', 'd/b.txt', 'd/gone.txt', 'dd/other.txt', 'e.txt']) log.assign(p, p.endsWith('.txt') ? file(1) : dir, 'alpha');
    log.assign('d/gone.txt', null, 'alpha');
    const under = log.liveUnder('d');
    expect(under[0]).toBe('d/a/x.txt');
    expect(new Set(under)).toEqual(new Set(['d/a/x.txt', 'd/a', 'd/b.txt']));
    expect(under).toHaveLength(3);
    await log.close();
  });
});

describe('ChangeLog pages', () => {
  it.each([
    { description: 'from the start: every live path once, in seq order, no tombstones', after: 0, limit: 100, expected: ['c.txt@3', 'a.txt@5'] },
    { description: 'after a cursor: superseded seqs are skipped, tombstones included', after: 1, limit: 100, expected: ['c.txt@3', 'b.txt@4', 'a.txt@5'] },
    { description: 'a limit cuts the page', after: 1, limit: 2, expected: ['c.txt@3', 'b.txt@4'] },
    { description: 'at the head: nothing', after: 5, limit: 100, expected: [] },
  ])('$description', async ({ after, limit, expected }) => {
    const { log } = await openLog();
    log.assign('a.txt', file(1), 'alpha'); // 1, superseded by 5
    log.assign('b.txt', file(1), 'alpha'); // 2
    log.assign('c.txt', file(1), 'beta'); // 3
    log.assign('b.txt', null, 'beta'); // 4: b's tombstone replaces seq 2
    log.assign('a.txt', file(2), 'beta'); // 5
    const page = log.changesAfter(after, limit);
    // A page lists each path once, at its current seq.
    const shown = page.changes.map((c) => `${c.path}@${c.seq}`);
    expect(page.reset).toBe(false);
    expect(page.head).toBe(5);
    expect(shown).toEqual(expected);
    await log.close();
  });

  it('cuts a page by its JSON bytes too, and still lists one version larger than the budget', async () => {
    const { log } = await openLog();
    for (let i = 0; i < 10; i++) log.assign(`f${i}.txt`, file(1), 'alpha');
    const one = log.changesAfter(0, 100).changes[0]!;
    const bytes = Buffer.byteLength(JSON.stringify(one)) + 1; // and the comma after it
    // Room for three of these (the names are all as long), not four.
    const page = log.changesAfter(0, 100, 4 * bytes - 1);
    expect(page.changes.map((c) => c.path)).toEqual(['f0.txt', 'f1.txt', 'f2.txt']);
    expect(page.reset).toBe(false);
    // A budget smaller than one version still makes progress: one per page.
    expect(log.changesAfter(4, 100, 1).changes.map((c) => c.seq)).toEqual([5]);
    await log.close();
  });

  it('lists the tombstone at its own seq and the rename source in `from`', async () => {
    const { log } = await openLog();
    log.assign('x.txt', file(1), 'alpha');
    log.assign('x.txt', null, 'alpha');
    log.assign('y.txt', file(1), 'alpha', { from: 'x.txt' });
    expect(log.changesAfter(1, 10).changes).toEqual([
      { path: 'x.txt', seq: 2, entry: null, origin: 'alpha' },
      { path: 'y.txt', seq: 3, entry: file(1), origin: 'alpha', from: 'x.txt' },
    ]);
    await log.close();
  });

  it('tells a client above the head, or below the floor, to re-sync fully', async () => {
    const { log } = await openLog();
    log.assign('a.txt', file(1), 'alpha');
    log.assign('a.txt', null, 'alpha');
    log.assign('b.txt', file(1), 'alpha');
    expect(log.changesAfter(9, 10)).toEqual({ changes: [], head: 3, reset: true });
    log.setCursor('alpha', 3, at(0));
    expect(log.pruneTombstones(at(1000), DAY)).toBe(1);
    expect(log.floor).toBe(2);
    expect(log.changesAfter(1, 10).reset).toBe(true);
    expect(log.changesAfter(2, 10)).toEqual({ changes: [{ path: 'b.txt', seq: 3, entry: file(1), origin: 'alpha' }], head: 3, reset: false });
    // A full listing (cursor 0) is always allowed.
    expect(log.changesAfter(0, 10).reset).toBe(false);
    await log.close();
  });
});

describe('ChangeLog cursors and what each client still has to pull', () => {
  it("counts only other nodes' versions after the cursor, whether the log is sparse or dense", async () => {
    const { log } = await openLog();
    for (let i = 0; i < 6; i++) log.assign(`f${i}.txt`, file(1), i % 2 === 0 ? 'alpha' : 'beta');
    expect(log.countAfter(0, 'alpha')).toBe(3);
    expect(log.countAfter(0, 'beta')).toBe(3);
    expect(log.countAfter(3, 'alpha')).toBe(2); // f3 (beta), f5 (beta)
    // Rewriting one path many times leaves the seq range much larger than the live records.
    for (let i = 0; i < 50; i++) log.assign('hot.txt', file(i), 'beta');
    expect(log.countAfter(0, 'alpha')).toBe(4);
    expect(log.countAfter(log.head, 'alpha')).toBe(0);
    await log.close();
  });

  it('clamps a cursor to the head, and touchClient keeps a known cursor', async () => {
    const { log } = await openLog();
    log.assign('a.txt', file(1), 'alpha');
    log.setCursor('beta', 99, at(0));
    expect(log.clientCursor('beta')).toEqual({ cursor: 1, lastSeen: at(0).toISOString() });
    log.touchClient('beta', at(5000));
    log.touchClient('gamma', at(6000));
    expect(log.clientCursor('beta')).toEqual({ cursor: 1, lastSeen: at(5000).toISOString() });
    expect(log.clientCursor('gamma')).toEqual({ cursor: 0, lastSeen: at(6000).toISOString() });
    expect(log.clientCursor('nobody')).toBeNull();
    expect(log.clients().map(([name]) => name).sort()).toEqual(['beta', 'gamma']);
    await log.close();
  });
});

describe('ChangeLog tombstone pruning', () => {
  it('prunes only tombstones every recently seen client has pulled; a client gone too long no longer holds the log back', async () => {
    const { log } = await openLog();
    log.assign('a.txt', file(1), 'alpha'); // 1
    log.assign('a.txt', null, 'alpha'); // 2
    log.assign('b.txt', file(1), 'alpha'); // 3
    log.assign('b.txt', null, 'alpha'); // 4
    log.setCursor('alpha', 4, at(0));
    log.setCursor('beta', 2, at(0));
    expect(log.pruneTombstones(at(1000), DAY)).toBe(1); // only a.txt's (seq 2 <= beta's cursor)
    expect(log.get('a.txt')).toBeNull();
    expect(log.get('b.txt')?.entry).toBeNull();
    expect(log.floor).toBe(2);
    // Beta is not seen for more than a day: only alpha's cursor counts.
    log.setCursor('alpha', 4, at(2 * DAY));
    expect(log.pruneTombstones(at(2 * DAY), DAY)).toBe(1);
    expect(log.get('b.txt')).toBeNull();
    expect(log.floor).toBe(4);
    expect(log.head).toBe(4);
    expect(log.pruneTombstones(at(3 * DAY), DAY)).toBe(0);
    await log.close();
  });

  it('with no client known, the head bounds pruning: every tombstone goes', async () => {
    const { log } = await openLog();
    log.assign('a.txt', file(1), 'alpha');
    log.assign('a.txt', null, 'alpha');
    expect(log.pruneTombstones(at(0), DAY)).toBe(1);
    expect(log.livePaths()).toEqual([]);
    await log.close();
  });
});

describe('ChangeLog on disk', () => {
  it('reopens with the same versions, head, floor, cursors and counters', async () => {
    const { log, dir: stateDir } = await openLog();
    log.assign('keep.txt', file(7), 'alpha');
    log.assign('gone.txt', file(1), 'beta');
    log.assign('gone.txt', null, 'beta');
    log.assign('copy.sync-conflict-20260101-000000-beta.txt', file(2), 'beta');
    log.setCursor('alpha', 3, at(0));
    log.setCursor('beta', 4, at(0));
    log.pruneTombstones(at(1), DAY);
    const before = { head: log.head, floor: log.floor, files: log.files, bytes: log.bytes, conflicts: log.conflicts, page: log.changesAfter(0, 100) };
    await log.close();
    const again = await ChangeLog.open(stateDir);
    expect({ head: again.head, floor: again.floor, files: again.files, bytes: again.bytes, conflicts: again.conflicts, page: again.changesAfter(0, 100) }).toEqual(before);
    expect(before).toMatchObject({ head: 4, floor: 3, files: 2, bytes: 9, conflicts: 1 });
    expect(again.clientCursor('alpha')?.cursor).toBe(3);
    expect(again.assign('next.txt', file(1), 'alpha')).toBe(5);
    await again.close();
  });
});

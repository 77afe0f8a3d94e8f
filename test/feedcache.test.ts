/**
 * The hub's fan-out (src/server/feedcache.ts) on a real ChangeLog on disk: one `changed` line per
 * head carrying the changes since the last one inline, and `changes` pages shared by all clients
 * until the log moves.
 */
import { afterAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { ChangeLog } from '../src/server/changelog.js';
import { FeedCache } from '../src/server/feedcache.js';
import { MAX_INLINE_CHANGES, validateParams, validateResult } from '../src/rpc.js';
import type { Entry } from '../src/core/types.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';

afterAll(cleanupTempDirs);

const file = (n: number): Entry => ({ type: 'file', size: n, mtime: 1_700_000_000_000, mode: 0o644, hash: n.toString(16).padStart(64, '0') });

async function openLog(): Promise<ChangeLog> {
  return ChangeLog.open(path.join(await tempDir(), 'log'));
}

function parsedLine(line: string): { folder: string; head: number; after?: number; changes?: Array<{ path: string; seq: number }> } {
  const msg = JSON.parse(line) as { jsonrpc: string; method: string; params: unknown };
  expect(msg.jsonrpc).toBe('2.0');
  expect(msg.method).toBe('changed');
  return validateParams('changed', msg.params);
}

describe('FeedCache', () => {
  it('announces each new head with exactly the changes since the last one, inline', async () => {
    const log = await openLog();
    const feed = new FeedCache('docs', log, log.head);
    log.assign('a.txt', file(1), 'alpha');
    log.assign('b.txt', file(2), 'alpha');
    const first = parsedLine(feed.changedLine(log.head));
    expect(first).toMatchObject({ folder: 'docs', head: 2, after: 0 });
    expect(first.changes?.map((c) => [c.path, c.seq])).toEqual([['a.txt', 1], ['b.txt', 2]]);

    log.assign('a.txt', file(3), 'beta'); // supersedes seq 1
    log.assign('b.txt', null, 'beta'); // a tombstone travels too (after > 0)
    const second = parsedLine(feed.changedLine(log.head));
    expect(second).toMatchObject({ head: 4, after: 2 });
    expect(second.changes?.map((c) => [c.path, c.seq])).toEqual([['a.txt', 3], ['b.txt', 4]]);
    // What a client at `after` would get by asking.
    expect(second.changes).toEqual(log.changesAfter(2, 1000).changes);

    // The same head again (a second commit flushed together): nothing inline.
    expect(parsedLine(feed.changedLine(4))).toEqual({ folder: 'docs', head: 4 });
    await log.close();
  });

  it('leaves out what is not durable yet, and sends no inline page for a burst too big for one', async () => {
    const log = await openLog();
    const feed = new FeedCache('docs', log, 0);
    log.assign('x', file(1), 'alpha');
    log.assign('y', file(2), 'alpha');
    const partial = parsedLine(feed.changedLine(1)); // only seq 1 is on disk
    expect(partial.changes?.map((c) => c.seq)).toEqual([1]);
    expect(parsedLine(feed.changedLine(2)).changes?.map((c) => c.seq)).toEqual([2]);

    for (let i = 0; i < MAX_INLINE_CHANGES; i++) log.assign(`burst/${i}`, file(i), 'alpha');
    const burst = parsedLine(feed.changedLine(log.head));
    expect(burst).toEqual({ folder: 'docs', head: log.head });
    // After a skip (no client connected), the next line starts at the skipped head.
    feed.skipTo(log.head);
    log.assign('z', file(9), 'alpha');
    expect(parsedLine(feed.changedLine(log.head))).toMatchObject({ after: log.head - 1, changes: [{ path: 'z', seq: log.head }] });
    await log.close();
  });

  it('serves one page object to every client until the log moves', async () => {
    const log = await openLog();
    const feed = new FeedCache('docs', log, 0);
    log.assign('a', file(1), 'alpha');
    log.assign('b', file(2), 'alpha');
    const one = feed.page(0, 100, 2);
    expect(feed.page(0, 100, 2)).toBe(one);
    expect(feed.page(1, 100, 2)).not.toBe(one);
    expect(validateResult('changes', JSON.parse(one.json))).toEqual(log.changesAfter(0, 100));
    // Not durable yet: the page stops at the durable head, and a new durable head is a new page.
    log.assign('c', file(3), 'alpha');
    const early = JSON.parse(feed.page(0, 100, 2).json) as { changes: Array<{ seq: number }> };
    expect(early.changes.map((c) => c.seq)).toEqual([1, 2]);
    const late = JSON.parse(feed.page(0, 100, 3).json) as { changes: Array<{ seq: number }> };
    expect(late.changes.map((c) => c.seq)).toEqual([1, 2, 3]);
    await log.close();
  });
});

/**
 * Issue 12 finding 6: a rogue server against a real client daemon (see helpers/rogue.ts: real
 * sshd, real client, the forwarded RPC socket served by handlers written here).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { PushOp, PushResult } from '../src/core/types.js';
import { helloFor, startRogue, type Rogue } from './helpers/rogue.js';
import { cleanupTempDirs } from './helpers/tree.js';
import { waitFor } from './helpers/wait.js';

let rogue: Rogue;
let local: string;
const pushed: PushOp[] = [];

const SERVER_VERSION = 'the server version of edit.txt\n';
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

beforeAll(async () => {
  let seq = 10;
  rogue = await startRogue(
    (serverRoot) => ({
      hello: () => helloFor(serverRoot),
      changes: (params) => ({ changes: [], head: params.after, reset: false }),
      ack: () => ({}),
      bundle: (params) => ({ bundle: null, parts: params.files.map(() => null) }),
      push: (params) => {
        pushed.push(...params.ops);
        const results: PushResult[] = params.ops.map((op) => {
          const p = op.op === 'rename' ? op.to : op.path;
          if (p === 'edit.txt') {
            // The hostile answer: "conflict, and your version goes to victim.txt".
            return {
              status: 'conflict',
              copy: 'victim.txt',
              copySeq: ++seq,
              current: { seq: ++seq, entry: { type: 'file', size: Buffer.byteLength(SERVER_VERSION), mtime: 1_700_000_000_000, mode: 0o644, hash: sha256(SERVER_VERSION) }, origin: 'rogue' },
            };
          }
          return { status: 'ok', seq: ++seq };
        });
        return { results };
      },
    }),
    async (serverRoot, localDir) => {
      await fs.writeFile(path.join(serverRoot, 'edit.txt'), SERVER_VERSION);
      // An edit the server has never seen, at the name the server will pick for a conflict copy.
      await fs.writeFile(path.join(localDir, 'victim.txt'), 'precious local work\n');
      await fs.writeFile(path.join(localDir, 'edit.txt'), 'our edit of edit.txt\n');
    },
  );
  local = rogue.local;
}, 120_000);

afterAll(async () => {
  await rogue?.stop();
  await cleanupTempDirs();
});

describe('a rogue server', () => {
  it('cannot make the client replace a local file by naming it as a conflict copy', async () => {
    await waitFor(() => pushed.some((op) => op.op === 'put' && op.path === 'edit.txt'), { timeoutMs: 60_000, what: 'the push of edit.txt' });
    // The server version is pulled to edit.txt; ours must survive somewhere, and victim.txt must not change.
    await waitFor(async () => (await fs.readFile(path.join(local, 'edit.txt'), 'utf8').catch(() => null)) === SERVER_VERSION, {
      timeoutMs: 60_000,
      what: `edit.txt to hold the server version\n${rogue.client.log().slice(-3000)}`,
    });
    expect(await fs.readFile(path.join(local, 'victim.txt'), 'utf8')).toBe('precious local work\n');
    const names = await fs.readdir(local);
    const ours = [];
    for (const name of names) if ((await fs.readFile(path.join(local, name), 'utf8').catch(() => '')) === 'our edit of edit.txt\n') ours.push(name);
    expect(ours).toEqual(['victim (local 1).txt']);
    expect(rogue.client.log()).toMatch(/the server named victim\.txt, which exists here and is kept/);
  });
});

describe('a rogue server that resets the feed', () => {
  const PAGES = 5;
  const PER_PAGE = 50;
  let resync: Rogue;
  let resetSent = false;
  /** For each page after the first: was the page before it already applied on disk when it was asked for? */
  const appliedBeforeNext: boolean[] = [];

  beforeAll(async () => {
    resync = await startRogue(
      (serverRoot, localDir) => ({
        hello: () => helloFor(serverRoot),
        ack: () => ({}),
        push: (params) => ({ results: params.ops.map((_, i) => ({ status: 'ok' as const, seq: 10_000 + i })) }),
        changes: async (params) => {
          const head = PAGES * PER_PAGE;
          if (!resetSent) {
            resetSent = true;
            return { changes: [], head, reset: true };
          }
          const page = Math.floor(params.after / PER_PAGE);
          if (page >= PAGES) return { changes: [], head, reset: false };
          if (page > 0) appliedBeforeNext.push(await fs.stat(path.join(localDir, `d${page - 1}-0`)).then(() => true, () => false));
          const changes = Array.from({ length: PER_PAGE }, (_, i) => ({
            path: `d${page}-${i}`,
            seq: page * PER_PAGE + i + 1,
            entry: { type: 'dir' as const, mode: 0o755 },
            origin: 'rogue',
          }));
          return { changes, head, reset: false };
        },
      }),
      async () => undefined,
    );
  }, 120_000);

  afterAll(async () => {
    await resync?.stop();
  });

  it('fullResync applies each page before asking for the next (holds one page, not the whole listing)', async () => {
    await waitFor(async () => (await fs.stat(path.join(resync.local, `d${PAGES - 1}-${PER_PAGE - 1}`)).then(() => true, () => false)), {
      timeoutMs: 60_000,
      what: `the last listed directory on the client\n${resync.client.log().slice(-3000)}`,
    });
    expect(resync.client.log()).toMatch(/no longer has this client's place in its log/);
    expect(appliedBeforeNext).toEqual(Array.from({ length: PAGES - 1 }, () => true));
  });
});

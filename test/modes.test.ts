/**
 * setuid, setgid and sticky never travel (issue 12, finding 2): masked when scanning, when an
 * entry arrives over the wire (both directions), and when an entry is applied to disk.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { permissionBits } from '../src/core/modes.js';
import { validateParams, validateResult } from '../src/rpc.js';
import { placeDir, placeFile, restampFile, tmpDirOf } from '../src/fs/apply.js';
import { readLocal } from '../src/fs/scan.js';
import { cleanupTempDirs, makeTree } from './helpers/tree.js';

afterAll(cleanupTempDirs);

const hashOf = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');
const modeOf = async (file: string): Promise<number> => (await fs.lstat(file)).mode & 0o7777;

describe('permissionBits', () => {
  it.each([
    { description: 'plain 0755', mode: 0o755, expected: 0o755 },
    { description: 'setuid', mode: 0o4755, expected: 0o755 },
    { description: 'setgid', mode: 0o2755, expected: 0o755 },
    { description: 'sticky', mode: 0o1777, expected: 0o777 },
    { description: 'all three', mode: 0o7777, expected: 0o777 },
    { description: 'a regular file type from stat', mode: 0o100644, expected: 0o644 },
  ])('$description', ({ mode, expected }) => {
    expect(permissionBits(mode)).toBe(expected);
  });
});

describe('modes on the wire', () => {
  it('a pushed entry arrives at the server with its permission bits only', () => {
    const params = validateParams('push', {
      folder: 'docs',
      ops: [
        { op: 'put', path: 'suid', base: null, entry: { type: 'file', size: 1, mtime: 0, mode: 0o4755, hash: hashOf('x') }, upload: 'u1' },
        { op: 'put', path: 'dir', base: null, entry: { type: 'dir', mode: 0o3777 }, upload: null },
        { op: 'rename', from: 'a', to: 'b', base: 1, toBase: null, entry: { type: 'file', size: 1, mtime: 0, mode: 0o2750, hash: hashOf('x') } },
      ],
    });
    expect(params.ops.map((op) => (op.op === 'delete' ? null : (op.entry as { mode: number }).mode))).toEqual([0o755, 0o777, 0o750]);
  });

  it('a change or push result arrives at the client with its permission bits only', () => {
    const page = validateResult('changes', {
      changes: [{ path: 'suid', seq: 1, origin: 'srv', entry: { type: 'file', size: 1, mtime: 0, mode: 0o6755, hash: hashOf('x') } }],
      head: 1,
      reset: false,
    });
    expect((page.changes[0]!.entry as { mode: number }).mode).toBe(0o755);
    const pushed = validateResult('push', { results: [{ status: 'same', seq: 1, entry: { type: 'dir', mode: 0o1755 } }] });
    expect((pushed.results[0] as { entry: { mode: number } }).entry.mode).toBe(0o755);
  });

  it('still refuses modes beyond 0o7777', () => {
    expect(() => validateResult('changes', { changes: [{ path: 'x', seq: 1, origin: 'srv', entry: { type: 'dir', mode: 0o17777 } }], head: 1, reset: false })).toThrow(/mode/);
  });
});

describe('modes on disk', () => {
  it('a scan reports a 04755 file, a 02755 file and a 01777 directory without the special bits', async () => {
    const root = await makeTree({ 'suid.sh': { content: 'a', mode: 0o4755 }, 'sgid.sh': { content: 'b', mode: 0o2755 }, sticky: { dir: true, mode: 0o1777 } });
    expect(await modeOf(path.join(root, 'suid.sh'))).toBe(0o4755);
    const modes = [];
    for (const p of ['suid.sh', 'sgid.sh', 'sticky']) {
      const local = await readLocal(root, p);
      if (local === null || local === 'unsupported') throw new Error(`${p}: not read`);
      modes.push((local.entry as { mode: number }).mode);
    }
    expect(modes).toEqual([0o755, 0o755, 0o777]);
  });

  it('applying an entry that carries special bits (a caller that skipped the wire) sets the permission bits only', async () => {
    const root = await makeTree({ '.systemsync/tmp/t1': 'abc', 'existing.sh': { content: 'abc', mode: 0o644 } });
    const entry = { type: 'file' as const, size: 3, mtime: 1_600_000_000_000, mode: 0o4755, hash: hashOf('abc') };
    await placeFile(root, path.join(tmpDirOf(root), 't1'), 'placed.sh', entry);
    expect(await modeOf(path.join(root, 'placed.sh'))).toBe(0o755);
    await restampFile(root, 'existing.sh', { ...entry, mode: 0o2750 });
    expect(await modeOf(path.join(root, 'existing.sh'))).toBe(0o750);
    await placeDir(root, 'newdir', { type: 'dir', mode: 0o1777 });
    expect(await modeOf(path.join(root, 'newdir'))).toBe(0o777);
  });
});

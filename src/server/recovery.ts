/**
 * Getting things back, on the server: list versions, restore one, list conflict copies, resolve
 * them. Each change is made like a commit (under the folder's lock, recorded in the change log,
 * then flushed and announced), so it reaches every client like any other change. Whatever a
 * restore or a resolution replaces or removes is kept as a version first: nothing is destroyed.
 */
import fs from 'node:fs/promises';
import type { Entry } from '../core/types.js';
import { SyncError } from '../core/errors.js';
import { parseConflictCopy } from '../core/conflict.js';
import { isSameOrInside, parentOf } from '../core/paths.js';
import type { ChangeLog } from './changelog.js';
import type { SerialLock } from '../node/lock.js';
import { movePath, placeDir, placeFile, removePath } from '../fs/apply.js';
import { readLocal } from '../fs/scan.js';
import { MAX_CONFLICTS_LISTED, MAX_RESOLVED_LISTED, MAX_VERSIONS_LISTED, type ConflictWire, type RestoreResultWire, type VersionInfoWire } from '../rpc.js';
import { toVersionInfo, type KeptRecord, type VersionStore } from './versions.js';

/** Paths in one answer add up to at most this many bytes (paths may be 4 KiB each; a line 8 MiB). */
const MAX_LISTED_PATH_BYTES = 2 * 1024 * 1024;

/** The first items of `items` that fit MAX_LISTED_PATH_BYTES and `max`. */
function bounded<T>(items: T[], max: number, bytesOf: (item: T) => number): { items: T[]; truncated: boolean } {
  let bytes = 0;
  let n = 0;
  for (; n < items.length && n < max; n++) {
    bytes += bytesOf(items[n]!);
    if (bytes > MAX_LISTED_PATH_BYTES) break;
  }
  return { items: items.slice(0, n), truncated: n < items.length };
}

/** What recovery needs of a served folder. */
export interface RecoveryHost {
  readonly name: string;
  readonly root: string;
  readonly log: ChangeLog;
  readonly lock: SerialLock;
  readonly kept: VersionStore;
  /**
   * The origin of the versions a restore or resolve records: the server's own node. The requesting
   * client holds none of the new content, so it must pull it like every other node (a version
   * recorded under its own name that its disk does not hold would be pushed back as a delete).
   * Who asked is kept with the versions the change displaces.
   */
  readonly origin: string;
  /** Records what is on disk at `p` now (under the lock), as a commit does first. */
  absorbLocal(p: string): Promise<number>;
  /** Records the parents of `p` that exist on disk but not in the log. */
  recordParents(p: string, origin: string): Promise<void>;
  /** Flush, move the durable head, tell the clients. Outside the lock. */
  commitDurably(): Promise<void>;
  /** Throws FOLDER_PAUSED when the folder is paused. */
  requireActive(): Promise<void>;
}

export interface Resolution {
  copy: string;
  original: string;
  kept: 'copy' | 'original';
}

function noVersion(p: string): SyncError {
  return new SyncError('NO_VERSION', `no versions of ${JSON.stringify(p)} are kept on the server`);
}

/** The versions kept for `p`, newest first, at most MAX_VERSIONS_LISTED. */
export function listVersions(host: RecoveryHost, p: string): { versions: VersionInfoWire[]; truncated: boolean } {
  const { items, truncated } = bounded(host.kept.list(p), MAX_VERSIONS_LISTED, (r) => Buffer.byteLength(r.path));
  return { versions: items.map(toVersionInfo), truncated };
}

/**
 * Puts version `id` of `p` (null: the newest) back at `as` (null: at `p`) on behalf of `node`.
 * @throws SyncError NO_VERSION (none kept, or no such id for this path), TARGET_IS_DIR /
 *   TARGET_IS_FILE (the type at the target differs), VERSION_GONE (its content was removed).
 */
export async function restoreVersion(host: RecoveryHost, p: string, id: string | null, as: string | null, node: string): Promise<RestoreResultWire> {
  const target = as ?? p;
  const result = await host.lock.run(async () => {
    await host.requireActive();
    const chosen = id === null ? (host.kept.list(p)[0] ?? null) : host.kept.get(id);
    if (chosen === null) throw noVersion(p);
    if (chosen.path !== p) throw new SyncError('NO_VERSION', `version ${id} is not a version of ${JSON.stringify(p)} (it is one of ${JSON.stringify(chosen.path)})`);
    for (let dir = parentOf(target); dir !== null; dir = parentOf(dir)) {
      await host.absorbLocal(dir);
      const entry = host.log.get(dir)?.entry ?? null;
      if (entry !== null && entry.type !== 'dir') throw new SyncError('TARGET_BLOCKED', `cannot restore at ${JSON.stringify(target)}: ${JSON.stringify(dir)} is not a directory`);
    }
    if (chosen.type === 'file') {
      const done = await restoreFile(host, chosen, target, node);
      return { path: target, version: chosen.id, restored: done ? 1 : 0, missing: 0 };
    }
    return restoreDir(host, chosen, target, node);
  });
  await host.commitDurably();
  return result;
}

/** Puts a kept file at `target`; the file there now is kept first. False when it is already there. */
async function restoreFile(host: RecoveryHost, r: KeptRecord, target: string, node: string): Promise<boolean> {
  await host.absorbLocal(target);
  const current = host.log.get(target)?.entry ?? null;
  if (current?.type === 'dir') {
    throw new SyncError('TARGET_IS_DIR', `${JSON.stringify(target)} is a directory now; restore the file elsewhere with --as NEWPATH`);
  }
  const { tmpAbs, entry } = await host.kept.copyOut(r);
  if (current?.type === 'file' && current.hash === entry.hash && current.mode === entry.mode && current.mtime === entry.mtime) {
    await fs.rm(tmpAbs, { force: true });
    return false;
  }
  try {
    const stat = await placeFile(host.root, tmpAbs, target, entry, host.kept.keeper(node, 'replaced'));
    await host.recordParents(target, host.origin);
    host.log.assign(target, entry, host.origin, { stat });
  } catch (err) {
    await fs.rm(tmpAbs, { force: true });
    throw err;
  }
  return true;
}

async function restoreDir(host: RecoveryHost, r: KeptRecord, target: string, node: string): Promise<RestoreResultWire> {
  await host.absorbLocal(target);
  const current = host.log.get(target)?.entry ?? null;
  if (current !== null && current.type !== 'dir') {
    throw new SyncError('TARGET_IS_FILE', `${JSON.stringify(target)} is a file now; restore the directory elsewhere with --as NEWPATH`);
  }
  let restored = 0;
  let missing = 0;
  const placeDirAt = async (p: string, mode: number): Promise<void> => {
    await host.absorbLocal(p);
    const now = host.log.get(p)?.entry ?? null;
    if (now?.type === 'dir') return;
    const entry: Entry = { type: 'dir', mode };
    await placeDir(host.root, p, entry);
    await host.recordParents(p, host.origin);
    host.log.assign(p, entry, host.origin);
    restored++;
  };
  await placeDirAt(target, r.mode);
  const children = (r.children ?? []).map((c) => host.kept.get(c));
  const present = children.filter((c): c is KeptRecord => c !== null && isSameOrInside(c.path, r.path));
  missing += children.length - present.length;
  // Directories outermost first, then files.
  present.sort((a, b) => (a.type === b.type ? a.path.split('/').length - b.path.split('/').length : a.type === 'dir' ? -1 : 1));
  for (const child of present) {
    const at = target + child.path.slice(r.path.length);
    if (child.type === 'dir') {
      await placeDirAt(at, child.mode);
      continue;
    }
    try {
      if (await restoreFile(host, child, at, node)) restored++;
    } catch (err) {
      if ((err as SyncError).code !== 'VERSION_GONE') throw err;
      missing++;
    }
  }
  return { path: target, version: r.id, restored, missing };
}

/** Live conflict copies of the folder, sorted by path, at most MAX_CONFLICTS_LISTED. */
export function listConflicts(host: RecoveryHost): { conflicts: ConflictWire[]; truncated: boolean } {
  const isLive = (p: string): boolean => host.log.get(p)?.entry != null;
  const found: ConflictWire[] = [];
  for (const p of host.log.livePaths().sort()) {
    const info = parseConflictCopy(p, isLive);
    if (info === null) continue;
    found.push({
      folder: host.name,
      path: p,
      original: info.original,
      node: info.node,
      time: info.time.toISOString().replace('.000Z', 'Z'),
      hasOriginal: isLive(info.original),
    });
  }
  const { items, truncated } = bounded(found, MAX_CONFLICTS_LISTED, (c) => Buffer.byteLength(c.path) + Buffer.byteLength(c.original));
  return { conflicts: items, truncated };
}

/**
 * Resolves conflict copy `copy` (null: every copy of the folder, oldest first) on behalf of
 * `node`: `copy` replaces the original (which becomes a version), `original` removes the copy
 * (which becomes a version), `newest` keeps whichever was modified last (the original on a tie).
 * @throws SyncError NOT_A_CONFLICT (not a live conflict copy), TARGET_IS_DIR.
 */
export async function resolveConflicts(
  host: RecoveryHost,
  copy: string | null,
  keep: 'copy' | 'original' | 'newest',
  node: string,
): Promise<{ count: number; resolved: Resolution[] }> {
  const resolved: Resolution[] = [];
  let resolvedBytes = 0;
  let count = 0;
  try {
    await host.lock.run(async () => {
      await host.requireActive();
      let copies: string[];
      if (copy !== null) {
        await host.absorbLocal(copy);
        copies = [copy];
      } else {
        copies = listAllCopies(host);
      }
      for (const c of copies) {
        const done = await resolveOne(host, c, keep, node, copy !== null);
        if (done === null) continue;
        count++;
        if (resolved.length < MAX_RESOLVED_LISTED && resolvedBytes < MAX_LISTED_PATH_BYTES) {
          resolved.push(done);
          resolvedBytes += Buffer.byteLength(done.copy) + Buffer.byteLength(done.original);
        }
      }
    });
  } finally {
    await host.commitDurably();
  }
  return { count, resolved };
}

function listAllCopies(host: RecoveryHost): string[] {
  const copies: Array<{ path: string; time: number }> = [];
  for (const p of host.log.livePaths()) {
    const info = parseConflictCopy(p);
    if (info !== null) copies.push({ path: p, time: info.time.getTime() });
  }
  return copies.sort((a, b) => a.time - b.time || (a.path < b.path ? -1 : 1)).map((c) => c.path);
}

async function resolveOne(host: RecoveryHost, copy: string, keep: 'copy' | 'original' | 'newest', node: string, isNamed: boolean): Promise<Resolution | null> {
  const isLive = (p: string): boolean => host.log.get(p)?.entry != null;
  const info = parseConflictCopy(copy, isLive);
  const copyEntry = host.log.get(copy)?.entry ?? null;
  if (info === null || copyEntry === null) {
    if (!isNamed) return null;
    throw new SyncError('NOT_A_CONFLICT', info === null ? `${JSON.stringify(copy)} is not a conflict copy` : `${JSON.stringify(copy)} does not exist (any more)`);
  }
  const original = info.original;
  await host.absorbLocal(original);
  const originalEntry = host.log.get(original)?.entry ?? null;
  let side: 'copy' | 'original';
  if (keep === 'newest') {
    const mtimeOf = (e: Entry | null): number => (e?.type === 'file' ? e.mtime : Number.NEGATIVE_INFINITY);
    side = originalEntry === null || mtimeOf(copyEntry) > mtimeOf(originalEntry) ? 'copy' : 'original';
  } else {
    side = keep;
  }
  if (side === 'original') {
    await removeKept(host, copy, copyEntry, node);
    return { copy, original, kept: 'original' };
  }
  if (originalEntry?.type === 'dir') {
    if (!isNamed) return null;
    throw new SyncError('TARGET_IS_DIR', `${JSON.stringify(original)} is a directory now: cannot put the copy there`);
  }
  if (copyEntry.type === 'dir') {
    if (!isNamed) return null;
    throw new SyncError('NOT_A_CONFLICT', `${JSON.stringify(copy)} is a directory, not a conflict copy of a file`);
  }
  // Like a committed rename: the original is kept as a version, the copy moves into its place.
  await movePath(host.root, copy, original, host.kept.keeper(node, 'replaced'));
  await host.recordParents(original, host.origin);
  const local = await readLocal(host.root, original, {});
  const stat = local !== null && local !== 'unsupported' ? local.stat : null;
  host.log.assign(original, copyEntry, host.origin, { from: copy, stat });
  host.log.assign(copy, null, host.origin);
  return { copy, original, kept: 'copy' };
}

/** Deletes a file (kept as a version first) and records the deletion. */
async function removeKept(host: RecoveryHost, p: string, entry: Entry, node: string): Promise<void> {
  if (entry.type === 'dir') throw new SyncError('NOT_A_CONFLICT', `${JSON.stringify(p)} is a directory, not a conflict copy of a file`);
  await removePath(host.root, p, host.kept.keeper(node, 'deleted'));
  host.log.assign(p, null, host.origin);
}

/**
 * The per-folder `.systemsync/` directory and its `tmp` and `trash`, used without ever following
 * a link. Anyone who can write the folder (a member of a group-writable shared folder, a client
 * over SFTP) can move `.systemsync` aside and plant `.systemsync/tmp -> ~/.ssh`; the temp-file
 * cleanup and the trash pruning would then delete through it.
 *
 * So each of them is lstat'ed before use and must be a real directory owned by the daemon's uid:
 * - `.systemsync` that is not: the folder pauses, with the reason, until it is fixed.
 * - `tmp` or `trash` that is a symlink: the link itself is removed (its target is never touched)
 *   and a real directory made in its place, with a warning; anything else that is not a directory
 *   of ours pauses the folder.
 * Every delete below them goes through safefs (parents lstat'ed before and after each call).
 */
import fs from 'node:fs';
import path from 'node:path';
import { SyncError } from '../core/errors.js';
import { RESERVED_DIR } from '../core/paths.js';
import { safeLstat, safeRmdir, safeUnlink, checkPath, ensureParentDirs } from './safefs.js';

export type ReservedSub = 'tmp' | 'trash';

/** A reserved directory that is not a real directory owned by this daemon. code 'UNSAFE_RESERVED_DIR'. */
export class UnsafeReservedDirError extends SyncError {
  constructor(message: string) {
    super('UNSAFE_RESERVED_DIR', message);
  }
}

function ownUid(): number | null {
  return typeof process.getuid === 'function' ? process.getuid() : null;
}

function describeLink(abs: string): string {
  try {
    return `a symlink (to ${JSON.stringify(fs.readlinkSync(abs))})`;
  } catch {
    return 'a symlink';
  }
}

/** Why `abs` (lstat'ed, never followed) is not a real directory owned by us, or null; 'missing' when absent. */
function dirProblem(abs: string): string | 'missing' | null {
  const st = fs.lstatSync(abs, { throwIfNoEntry: false });
  if (st === undefined) return 'missing';
  if (st.isSymbolicLink()) return describeLink(abs);
  if (!st.isDirectory()) return 'not a directory';
  const uid = ownUid();
  if (uid !== null && st.uid !== uid) return `owned by uid ${st.uid}, not by this daemon's uid ${uid}`;
  return null;
}

/**
 * Checks `<root>/.systemsync` and, when present, its `tmp` and `trash` (creating `tmp` when
 * `createTmp`). Repairs a symlinked `tmp` or `trash` (see above), logging through `warn`.
 * Returns why the folder must pause, or null. `.systemsync` missing is not this function's
 * business (core/safety decides): null.
 */
export function reservedDirsProblem(root: string, warn: (message: string) => void, createTmp = true): string | null {
  const marker = path.join(root, RESERVED_DIR);
  const markerProblem = dirProblem(marker);
  if (markerProblem === 'missing') return null;
  if (markerProblem !== null) return `${RESERVED_DIR} is ${markerProblem}: refusing to use it (make it a real directory of this user to resume)`;
  for (const sub of ['tmp', 'trash'] as const) {
    const abs = path.join(marker, sub);
    let problem = dirProblem(abs);
    if (problem !== null && problem !== 'missing' && fs.lstatSync(abs).isSymbolicLink()) {
      fs.unlinkSync(abs); // the link itself: its target is never touched
      warn(`${RESERVED_DIR}/${sub} was ${problem}: removed the link (its target is untouched) and made a real directory`);
      problem = 'missing';
    }
    if (problem === 'missing') {
      if (sub !== 'tmp' || !createTmp) continue;
      try {
        fs.mkdirSync(abs, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      problem = dirProblem(abs);
    }
    if (problem !== null) return `${RESERVED_DIR}/${sub} is ${problem}: refusing to use it (make it a real directory of this user to resume)`;
  }
  return null;
}

/**
 * Requires `.systemsync` and `.systemsync/<sub>` to be real directories owned by us, right
 * before they are used. `create`: make a missing `<sub>` (mode 0700) first.
 * @throws UnsafeReservedDirError; RootMissingError and the like from safefs.
 */
export async function requireReservedDir(root: string, sub: ReservedSub, create = false): Promise<string> {
  const rel = `${RESERVED_DIR}/${sub}`;
  if (create) await ensureParentDirs(root, `${rel}/x`, 0o700, { allowReserved: true });
  for (const [shown, abs] of [
    [RESERVED_DIR, path.join(root, RESERVED_DIR)],
    [rel, path.join(root, rel)],
  ] as const) {
    const problem = dirProblem(abs);
    if (problem !== null) throw new UnsafeReservedDirError(`${root}: ${shown} is ${problem === 'missing' ? 'missing' : problem}: refusing to use it`);
  }
  return path.join(root, rel);
}

/** The checked absolute path of temp file `name` in `.systemsync/tmp` (made when missing). */
export async function tempFilePath(root: string, name: string): Promise<string> {
  await requireReservedDir(root, 'tmp', true);
  return (await checkPath(root, `${RESERVED_DIR}/tmp/${name}`, { allowReserved: true })).abs;
}

/**
 * Removes `rel` (under `.systemsync/`) and everything below it, one checked call at a time
 * (safefs): a directory swapped for a symlink on the way is reported, never followed.
 */
export async function removeTreeChecked(root: string, rel: string): Promise<void> {
  const st = await safeLstat(root, rel, { allowReserved: true });
  if (st === null) return;
  if (!st.isDirectory()) {
    await safeUnlink(root, rel, { allowReserved: true });
    return;
  }
  const dirAbs = (await checkPath(root, `${rel}/x`, { allowReserved: true })).abs;
  for (const name of fs.readdirSync(path.dirname(dirAbs))) await removeTreeChecked(root, `${rel}/${name}`);
  await safeRmdir(root, rel, { allowReserved: true });
}

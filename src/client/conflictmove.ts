/**
 * Where this client puts its own version when the server answers a push with `conflict`. The
 * server names the copy; a rogue or confused server could name any path in the folder. Whatever
 * is there locally (an unpushed edit, a file the server never saw) is never replaced: the copy
 * goes to a free name beside it instead (core/conflict.ts), and is pushed from there as a new file.
 */
import { lstatUnderRoot } from '../fs/presence.js';
import { conflictTargetCandidates } from '../core/conflict.js';

/** `to` when nothing is there; else `<to> (local N)` (before the extension), the first free one. */
export async function freeConflictTarget(root: string, to: string): Promise<string> {
  for (const candidate of conflictTargetCandidates(to)) if ((await lstatUnderRoot(root, candidate)) === null) return candidate;
  throw new Error(`no free name beside ${to} for a conflict copy`);
}

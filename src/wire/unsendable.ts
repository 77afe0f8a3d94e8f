/**
 * Paths whose names the wire rejects (a backslash, a name that folds to
 * `.systemsync`, …; see core/paths `pathProblem`). Such a path is never recorded in the change
 * log on the server, so no `changes` page fails validation because of it, and never put in a push
 * on a client; it is listed instead, as one
 * failed task per path in `tasks` and in the folder's `failed` count, with the reason.
 */
import type { Change } from '../core/types.js';
import { pathProblem } from '../core/paths.js';
import type { TaskInfo } from '../node.js';

/** Why `p` cannot travel on the wire, in words, or null when it can. */
export function unsendableReason(p: string): string | null {
  const problem = pathProblem(p);
  return problem === null ? null : `BAD_PATH: the name cannot be synced (${problem}); rename it`;
}

/** True when every path a change carries would pass the wire's path check. */
export function isSendableChange(change: Change): boolean {
  return pathProblem(change.path) === null && (change.from === undefined || pathProblem(change.from) === null);
}

export class UnsendablePaths {
  private readonly paths = new Map<string, { reason: string; since: string }>();

  /** Records `p` (present on disk) as unsendable; true when it is new, i.e. worth a log line. */
  add(p: string, reason: string, now: Date): boolean {
    if (this.paths.has(p)) return false;
    this.paths.set(p, { reason, since: now.toISOString() });
    return true;
  }

  /** `p` is gone (or ignored): it is no longer a failure. */
  remove(p: string): void {
    this.paths.delete(p);
  }

  get size(): number {
    return this.paths.size;
  }

  tasks(folder: string): TaskInfo[] {
    return [...this.paths].map(([p, { reason, since }]) => ({ folder, path: p, op: 'record', state: 'failed', attempts: 1, lastError: reason, permanent: true, since }));
  }
}

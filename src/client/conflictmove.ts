/**
 * Where this client puts its own version when the server answers a push with `conflict`. The
 * server names the copy; a rogue or confused server could name any path in the folder. Whatever
 * is there locally (an unpushed edit, a file the server never saw) is never replaced: the copy
 * goes to a free name beside it instead, and is pushed from there as a new file.
 */
import { lstatUnderRoot } from '../fs/presence.js';

/** `to` when nothing is there; else `<to> (local N)` (before the extension), the first free one. */
export async function freeConflictTarget(root: string, to: string): Promise<string> {
  if ((await lstatUnderRoot(root, to)) === null) return to;
  const slash = to.lastIndexOf('/');
  const dir = to.slice(0, slash + 1);
  const name = to.slice(slash + 1);
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  for (let n = 1; n < 1000; n++) {
    const candidate = `${dir}${stem} (local ${n})${ext}`;
    if ((await lstatUnderRoot(root, candidate)) === null) return candidate;
  }
  throw new Error(`no free name beside ${to} for a conflict copy`);
}

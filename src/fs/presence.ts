/**
 * Whether a folder-relative path is on disk, for paths the path rules refuse (so safefs, which
 * checks them first, cannot look): each parent must be a real directory, never a symlink.
 */
import fs from 'node:fs/promises';
import type { Stats } from 'node:fs';

/** The lstat of `root/rel`, or null when it is missing or reached through a symlink or a non-directory. */
export async function lstatUnderRoot(root: string, rel: string): Promise<Stats | null> {
  const parts = rel.split('/');
  let at = root;
  for (const [i, part] of parts.entries()) {
    at = `${at}/${part}`;
    const st = await fs.lstat(at).catch(() => null);
    if (st === null) return null;
    if (i < parts.length - 1 && !st.isDirectory()) return null;
    if (i === parts.length - 1) return st;
  }
  return null;
}

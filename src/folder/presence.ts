/**
 * The presence check of a synced folder, with its side effects: it makes the marker directory of
 * a folder new to this node, repairs a symlinked tmp or trash, and says why the folder must pause.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { RESERVED_DIR } from '../core/paths.js';
import { needsMarker, pauseReason } from '../core/safety.js';
import { reservedDirsProblem } from '../fs/reserved.js';
import type { Logger } from '../node/log.js';
import { describeFsError } from '../node.js';

/**
 * Why the folder at `root` must be paused now, or null (see core/safety). Creates the marker of a
 * folder new to this node, and logs when the answer differs from `previous`.
 */
export async function checkFolderAndMakeMarker(root: string, hasHistory: boolean, previous: string | null, logger: Logger): Promise<string | null> {
  const isDir = (p: string): Promise<boolean> => fs.stat(p).then((s) => s.isDirectory(), () => false);
  const presence = { rootExists: await isDir(root), markerExists: await isDir(path.join(root, RESERVED_DIR)), hasHistory };
  if (needsMarker(presence)) await fs.mkdir(path.join(root, RESERVED_DIR), { recursive: true, mode: 0o700 });
  let reason = pauseReason(presence);
  // `.systemsync`, `tmp` and `trash` must be real directories of ours (a symlink there would be
  // followed by the cleanup): a symlinked tmp or trash is replaced, anything else pauses.
  if (reason === null) {
    try {
      reason = reservedDirsProblem(root, (message) => logger.warn(`${message} (${root})`));
    } catch (err) {
      reason = `${RESERVED_DIR} cannot be checked: ${describeFsError(err)}`;
    }
  }
  if (reason !== previous) {
    if (reason === null) logger.info('folder is back: resuming');
    else logger.error(`paused: ${reason} (${root})`);
  }
  return reason;
}

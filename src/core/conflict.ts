/**
 * Conflict copy names: `<name>.sync-conflict-<YYYYMMDD>-<HHMMSS>-<node>.<ext>` beside the file.
 * `<ext>` is the part after the last dot of the base name, so `a.tar.gz` gives
 * `a.tar.sync-conflict-….gz`; a name with no dot (or only a leading one, `.bashrc`) gets no
 * extension and no trailing dot. The time is UTC and comes in as an argument: no clock here.
 */

const MAX_NAME_BYTES = 255;

/** `20261123-140501` for a UTC time. */
export function formatStamp(at: Date): string {
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
  return (
    `${pad(at.getUTCFullYear(), 4)}${pad(at.getUTCMonth() + 1)}${pad(at.getUTCDate())}-` +
    `${pad(at.getUTCHours())}${pad(at.getUTCMinutes())}${pad(at.getUTCSeconds())}`
  );
}

function splitExtension(name: string): { stem: string; ext: string | null } {
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return { stem: name, ext: null };
  return { stem: name.slice(0, dot), ext: name.slice(dot + 1) };
}

function truncateUtf8(text: string, maxBytes: number): string {
  let out = text;
  while (Buffer.byteLength(out, 'utf8') > maxBytes) out = [...out].slice(0, -1).join('');
  return out;
}

/**
 * The conflict copy path for `path` (folder-relative), detected at `at` for the version written
 * by `node`. `isTaken` lets the caller avoid a name already in use: then `-2`, `-3`, … is added
 * after the node name. The result stays in the same directory and within 255 bytes a name.
 */
export function conflictCopyPath(
  path: string,
  at: Date,
  node: string,
  isTaken: (candidate: string) => boolean = () => false,
): string {
  const slash = path.lastIndexOf('/');
  const dir = slash < 0 ? '' : path.slice(0, slash + 1);
  const { stem, ext } = splitExtension(path.slice(slash + 1));
  for (let n = 1; ; n++) {
    const tag = `.sync-conflict-${formatStamp(at)}-${node}${n > 1 ? `-${n}` : ''}`;
    let tail = tag + (ext === null ? '' : `.${ext}`);
    let body = stem;
    if (MAX_NAME_BYTES - Buffer.byteLength(tail, 'utf8') < 4) {
      // The extension leaves no room: treat the whole name as the stem (node names are ≤ 64 bytes).
      tail = tag;
      body = stem + (ext === null ? '' : `.${ext}`);
    }
    const room = MAX_NAME_BYTES - Buffer.byteLength(tail, 'utf8');
    const candidate = dir + truncateUtf8(body, room) + tail;
    if (!isTaken(candidate)) return candidate;
  }
}

/** True when `path`'s base name is a conflict copy made by systemsync. */
export function isConflictCopy(path: string): boolean {
  return /\.sync-conflict-\d{8}-\d{6}-/.test(path.slice(path.lastIndexOf('/') + 1));
}

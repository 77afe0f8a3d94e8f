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

/** What a conflict copy's name says: the path it belongs to, the node that wrote it, and when. */
export interface ConflictCopyInfo {
  original: string;
  node: string;
  /** When the server detected the conflict, UTC, to the second. */
  time: Date;
}

/**
 * Reads a conflict copy's name. The original's extension and the node name cannot always be
 * told apart (`a.sync-conflict-…-my.host` is `a` by node `my.host` or `a.host` by node `my`), so
 * every reading is tried and one whose original `exists` wins; failing that, the last dot starts
 * the extension. Returns null when the name is not a conflict copy. A copy whose name had to be
 * shortened (over 255 bytes) yields the shortened original.
 */
export function parseConflictCopy(path: string, exists: (original: string) => boolean = () => false): ConflictCopyInfo | null {
  const slash = path.lastIndexOf('/');
  const dir = path.slice(0, slash + 1);
  const base = path.slice(slash + 1);
  const m = /^(.+)\.sync-conflict-(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})-(.+)$/.exec(base);
  if (m === null) return null;
  const [, stem, y, mo, d, h, mi, s, rest] = m as unknown as [string, string, string, string, string, string, string, string, string];
  const time = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)));
  if (Number.isNaN(time.getTime())) return null;
  // Readings, last dot first: node = rest up to a dot, extension = the rest after it; or no extension.
  const readings: Array<{ node: string; original: string }> = [];
  for (let dot = rest.lastIndexOf('.'); dot > 0; dot = rest.lastIndexOf('.', dot - 1)) {
    readings.push({ node: rest.slice(0, dot), original: `${dir}${stem}.${rest.slice(dot + 1)}` });
  }
  readings.push({ node: rest, original: dir + stem });
  const chosen = readings.find((r) => exists(r.original)) ?? readings[0]!;
  // A second copy made in the same second has `-2` after the node name: it is shown as part of
  // the name, since node names may end in `-<digits>` themselves.
  return { original: chosen.original, node: chosen.node, time };
}

/**
 * Where a client puts its own version when the server names the conflict copy `to`: `to` itself,
 * then `<to> (local N)` (before the extension), in that order; the first name that is free on the
 * client's disk is taken (whatever is there is never replaced).
 */
export function* conflictTargetCandidates(to: string, tries = 1000): Generator<string> {
  yield to;
  const slash = to.lastIndexOf('/');
  const dir = to.slice(0, slash + 1);
  const name = to.slice(slash + 1);
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  for (let n = 1; n < tries; n++) yield `${dir}${stem} (local ${n})${ext}`;
}

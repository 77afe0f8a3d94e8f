/**
 * The one vocabulary of systemsync, shared by the pure core, the daemons and the wire.
 *
 * Paths are always folder-relative POSIX strings ("a/b.txt"), never absolute, never "" (the
 * folder root itself is not an entry). "Nothing here" is `null`.
 */

/** A regular file as it is synced: content hash plus the metadata that travels with it. */
export interface FileEntry {
  type: 'file';
  size: number;
  /** Modification time, integer milliseconds since the epoch. */
  mtime: number;
  /** Permission bits only (mode & 0o777): never setuid, setgid or sticky (core/modes.ts). */
  mode: number;
  /** sha256 of the content, lowercase hex. */
  hash: string;
}

export interface DirEntry {
  type: 'dir';
  mode: number;
}

/** A symlink is synced as a link: its target text travels, it is never followed. */
export interface SymlinkEntry {
  type: 'symlink';
  target: string;
}

export type Entry = FileEntry | DirEntry | SymlinkEntry;
export type EntryType = Entry['type'];

/**
 * The server's record of one path in one folder: the version it holds now.
 * `entry === null` is a tombstone (the path was deleted at `seq`).
 * `from` is set when this version arrived by a rename: the path it was renamed from.
 */
export interface Version {
  seq: number;
  entry: Entry | null;
  /** Name of the node whose change produced this version. */
  origin: string;
  from?: string;
}

/** What the server keeps per path: the latest version and the stat it was committed with. */
export interface ServerRecord extends Version {
  stat: StatFingerprint | null;
}

/** A version together with its path, as listed by the server's change feed. */
export interface Change extends Version {
  path: string;
}

/**
 * What a client knows it agreed on with the server for one path: the server's version number
 * and the entry, plus the local stat fingerprint at the moment of agreement (so that an
 * unchanged file is recognised without hashing it again).
 */
export interface BaseRecord {
  seq: number;
  entry: Entry;
  /** Local stat fingerprint; null for symlinks and until known. */
  stat: StatFingerprint | null;
}

/** Cheap identity of a local file: if all of these are equal, the content is taken as unchanged. */
export interface StatFingerprint {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/**
 * One change a client asks the server to commit. `base` is the seq the client last agreed on
 * (null: none). A file `put` carries `upload`, the name of the temp file it uploaded into the
 * folder's `.systemsync/tmp`; `upload: null` on a file means only its metadata changed (the
 * server refuses it unless its content has that hash).
 */
/** Where one file's content lies inside a bundle: many small files travel as one SFTP transfer. */
export interface BundlePart {
  offset: number;
  length: number;
}

export type PushOp =
  /** `upload` names the temp file holding the content; with `part`, a bundle holding it at these bytes;
   * with `delta`, a delta upload: the new content's block list and the blocks the server lacks (src/core/blocks.ts). */
  | { op: 'put'; path: string; base: number | null; entry: Entry; upload: string | null; part?: BundlePart; delta?: boolean }
  | { op: 'delete'; path: string; base: number | null }
  | { op: 'rename'; from: string; to: string; base: number | null; toBase: number | null; entry: Entry };

/**
 * A path that moved with a directory rename: its new path, the seq of its version there, and
 * the seq of the version that was moved (the child's seq under the old name). A server older
 * than `before` sends only the first two.
 */
export type MovedChild = [path: string, seq: number, before?: number];

/** The server's answer to one PushOp. */
export type PushResult =
  /** Committed as asked. `moved` lists every path that moved with a directory rename (see MovedChild). */
  | { status: 'ok'; seq: number; moved?: MovedChild[] }
  /** The content was already what the server holds: nothing changed. `seq` and `entry` are the
   * server's current version (its metadata may differ from the pushed one). */
  | { status: 'same'; seq: number; entry: Entry | null }
  /** Two edits met: the server kept its version at the path and stored the pushed one at `copy`. */
  | { status: 'conflict'; copy: string; copySeq: number; current: Version }
  /** The op was not applied because the server's version moved on (edit wins over delete, etc.).
   * `current` is what the server holds at the path now; the client re-syncs that path from it. */
  | { status: 'stale'; current: Version | null }
  /** The op failed at this path; `permanent` failures are not retried automatically. */
  | { status: 'error'; code: string; message: string; permanent: boolean };

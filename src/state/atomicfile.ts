/**
 * Files of state on local disk: private directories (0700), a socket's directory checked before
 * binding, and JSON files written atomically and durably (temp file, fsync, rename, fsync of the
 * directory; mode 0600), read back as lowdb's `Adapter`.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import type { Adapter } from 'lowdb';
import { PersistenceError, StateCorruptError, type OnCorrupt } from './errors.js';

export const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
export const TEMP_INFIX = '.tmp-';

/**
 * `mkdir -p` with mode 0700; if the directory already exists its mode is set to 0700.
 * Throws a `PersistenceError` ('STATE_DIR') naming the path if it cannot be made a directory.
 */
export async function ensurePrivateDir(dirPath: string): Promise<void> {
  try {
    await fsp.mkdir(dirPath, { recursive: true, mode: DIR_MODE });
    const st = await fsp.stat(dirPath);
    if (!st.isDirectory()) throw new Error('not a directory');
    if ((st.mode & 0o7777) !== DIR_MODE) await fsp.chmod(dirPath, DIR_MODE);
  } catch (cause) {
    throw new PersistenceError('STATE_DIR', `cannot use ${dirPath} as a private state directory: ${describe(cause)}`, { cause });
  }
}

/**
 * The directory a Unix socket is bound in. One this call creates is made 0700. One that already
 * exists (e.g. the home directory, for `[rpc] socket = ~/rpc.sock`) is never chmod'ed: it must be
 * a directory owned by this user (or root) that nobody else can write into, unless its sticky bit
 * keeps others from removing or replacing the socket; otherwise this refuses with a
 * `PersistenceError` ('SOCKET_DIR') naming the directory and its mode. The socket file itself is
 * 0600, so a readable parent is fine.
 */
export async function ensureSocketDir(dirPath: string): Promise<void> {
  let st: Stats;
  try {
    const created = await fsp.mkdir(dirPath, { recursive: true, mode: DIR_MODE });
    if (created !== undefined) return;
    st = await fsp.stat(dirPath);
  } catch (cause) {
    throw new PersistenceError('SOCKET_DIR', `cannot use ${dirPath} for a socket: ${describe(cause)}`, { cause });
  }
  const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
  if (!st.isDirectory()) throw new PersistenceError('SOCKET_DIR', `cannot use ${dirPath} for a socket: not a directory`);
  const uid = process.getuid?.() ?? st.uid;
  if (st.uid !== uid && st.uid !== 0) {
    throw new PersistenceError('SOCKET_DIR', `refusing to put a socket in ${dirPath}: it is owned by uid ${st.uid}, not by this user (uid ${uid}) or root`);
  }
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
    throw new PersistenceError(
      'SOCKET_DIR',
      `refusing to put a socket in ${dirPath}: mode ${mode} lets other users replace it; make that directory not group/other-writable, or choose a socket path in a private directory (systemsync does not change the mode of a directory it did not create)`,
    );
  }
}

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

async function fsyncDir(dirPath: string): Promise<void> {
  const handle = await fsp.open(dirPath, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Writes `text` to `file` atomically and durably: a temp file beside it (mode 0600), fsync,
 * rename into place, fsync of the directory. `text` may come as chunks, written in order (each
 * produced only when the previous one is written).
 */
export async function writeFileAtomic(file: string, text: string | Iterable<string>): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `${path.basename(file)}${TEMP_INFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
  let renamed = false;
  try {
    const handle = await fsp.open(temp, 'wx', FILE_MODE);
    try {
      await handle.chmod(FILE_MODE); // independent of the umask
      if (typeof text === 'string') await handle.writeFile(text, 'utf8');
      else for (const chunk of text) await handle.writeFile(chunk, 'utf8'); // at the current position, all of it
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, file);
    renamed = true;
    await fsyncDir(dir);
  } catch (cause) {
    if (!renamed) await fsp.rm(temp, { force: true }).catch(() => undefined);
    throw new PersistenceError('STATE_WRITE', `cannot write state file ${file}: ${describe(cause)}`, { cause });
  }
}

/** Removes temp files left beside `file` by writes that a crash interrupted. */
export async function removeLeftoverTemps(file: string): Promise<void> {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}${TEMP_INFIX}`;
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    if (isNotFound(err)) return;
    throw err;
  }
  await Promise.all(names.filter((n) => n.startsWith(prefix)).map((n) => fsp.rm(path.join(dir, n), { force: true })));
}

/** Moves a corrupt file aside to `<file>.corrupt-<ms timestamp>`; returns the new name. */
export async function moveAside(file: string): Promise<string> {
  let aside = `${file}.corrupt-${Date.now()}`;
  for (let i = 1; await exists(aside); i++) aside = `${file}.corrupt-${Date.now()}-${i}`;
  await fsp.rename(file, aside);
  await fsyncDir(path.dirname(file));
  return aside;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/**
 * lowdb adapter for one JSON file with atomic, fsynced writes and mode 0600.
 * `read()` returns null if the file does not exist and throws `StateCorruptError` if it is not
 * valid JSON or `validate` rejects it. `write()` serialises synchronously, before its first
 * await, so the snapshot written is the data as it was at the call.
 */
export class AtomicJsonFile<T> implements Adapter<T> {
  constructor(
    readonly file: string,
    private readonly validate: ((raw: unknown) => T) | null = null,
  ) {}

  async read(): Promise<T | null> {
    let text: string;
    try {
      text = await fsp.readFile(this.file, 'utf8');
    } catch (err) {
      if (isNotFound(err)) return null;
      throw new PersistenceError('STATE_READ', `cannot read state file ${this.file}: ${describe(err)}`, { cause: err });
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (cause) {
      throw new StateCorruptError(this.file, `not valid JSON (${describe(cause)})`, { cause });
    }
    if (this.validate === null) return raw as T;
    try {
      return this.validate(raw);
    } catch (cause) {
      throw new StateCorruptError(this.file, describe(cause), { cause });
    }
  }

  write(data: T): Promise<void> {
    const text = JSON.stringify(data);
    if (text === undefined) return Promise.reject(new PersistenceError('STATE_WRITE', `cannot serialise state for ${this.file}`));
    return writeFileAtomic(this.file, text + '\n');
  }
}

/**
 * Reads one JSON state file. A corrupt file throws `StateCorruptError`, or with
 * `onCorrupt: 'reset'` is moved aside to `<file>.corrupt-<ts>` and reads as absent (null).
 */
export async function readOrMoveAside<T>(adapter: AtomicJsonFile<T>, onCorrupt: OnCorrupt | undefined): Promise<T | null> {
  try {
    return await adapter.read();
  } catch (err) {
    if (!(err instanceof StateCorruptError) || onCorrupt !== 'reset') throw err;
    await moveAside(adapter.file);
    return null;
  }
}


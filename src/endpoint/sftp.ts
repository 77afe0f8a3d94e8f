/**
 * The SFTP subsystem of the embedded endpoint, confined to what the protocol needs:
 *
 * - read (stat, lstat, open for reading, read, fstat) inside the folders this client may use,
 *   outside their `.systemsync/` except `.systemsync/tmp/`;
 * - write, set attributes and remove only files directly inside `<folder>/.systemsync/tmp/`
 *   (uploads; the downloaded bundles the client removes);
 * - nothing else: no directory listing, mkdir, rmdir, rename, symlink or readlink, no extension.
 *
 * Every path is absolute and must lie in an allowed folder (`[access]`). Parents are checked with
 * safefs (real directories only, no symlink on the way); the final component is opened with
 * O_NOFOLLOW, and where /proc is there the opened descriptor's real path is checked to lie inside
 * the folder's real root. A refusal answers PERMISSION_DENIED with the reason and logs one line.
 */
import fs, { constants as FS, type BigIntStats, type Stats } from 'node:fs';
import path from 'node:path';
import ssh2, { type Attributes, type SFTPWrapper } from 'ssh2';
import { SystemsyncError } from '../core/errors.js';
import { RESERVED_DIR } from '../core/paths.js';
import { streamedHashes, type StreamedWriter } from '../fs/streamedhashes.js';
import { checkPath, recheckPath, safeChmod, safeUnlink, safeUtimes, type CheckedPath } from '../fs/safefs.js';

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp;

/** Largest read answered (OpenSSH's limit is 255 KiB; ssh2's client asks at most 256 KiB minus overhead). */
const MAX_READ = 256 * 1024;
/** Open handles per SFTP session. */
const MAX_HANDLES = 256;
const TMP_PREFIX = `${RESERVED_DIR}/tmp/`;

export interface ConfinedFolder {
  name: string;
  /** The folder's path as the server's config has it (what `hello` tells the client). */
  root: string;
}

export interface SftpPolicy {
  /** The client's node name (from its key), for log lines. */
  node: string;
  /** Every folder the server serves. */
  folders: readonly ConfinedFolder[];
  /** Whether this client may use the folder (`[access]`). */
  isAllowed(folder: string): boolean;
  /** One line per refusal. */
  log(line: string): void;
}

/** Where an absolute path from the client lands. */
export type Located =
  | { ok: false; reason: string }
  | { ok: true; folder: ConfinedFolder; rel: string; area: 'root' | 'content' | 'tmpdir' | 'tmp' };

/** A request the policy refuses; answered as PERMISSION_DENIED. */
class Refused extends SystemsyncError {
  constructor(message: string) {
    super('SFTP_REFUSED', message);
  }
}

/**
 * Maps an absolute path from the client onto an allowed folder. Pure (no fs): the caller still
 * checks the parents on disk.
 */
export function locate(p: string, policy: Pick<SftpPolicy, 'folders' | 'isAllowed'>): Located {
  if (typeof p !== 'string' || p.includes('\0')) return { ok: false, reason: 'not a path' };
  if (!p.startsWith('/')) return { ok: false, reason: 'only absolute paths inside the served folders are open' };
  const trimmed = p.length > 1 ? p.replace(/\/+$/, '') : p;
  if (path.posix.normalize(trimmed) !== trimmed || trimmed.split('/').some((s) => s === '.' || s === '..')) {
    return { ok: false, reason: 'the path is not in normal form ("..", "." or "//")' };
  }
  const folder = policy.folders.find((f) => trimmed === f.root || trimmed.startsWith(`${f.root}/`));
  if (folder === undefined) return { ok: false, reason: 'it is outside the folders this client may use' };
  if (!policy.isAllowed(folder.name)) return { ok: false, reason: `folder ${folder.name} is not in this client's [access]` };
  const rel = trimmed === folder.root ? '' : trimmed.slice(folder.root.length + 1);
  if (rel === '') return { ok: true, folder, rel, area: 'root' };
  if (rel === `${RESERVED_DIR}/tmp`) return { ok: true, folder, rel, area: 'tmpdir' };
  if (rel.startsWith(TMP_PREFIX) && !rel.slice(TMP_PREFIX.length).includes('/')) return { ok: true, folder, rel, area: 'tmp' };
  if (rel === RESERVED_DIR || rel.startsWith(`${RESERVED_DIR}/`)) {
    return { ok: false, reason: `the folder's ${RESERVED_DIR}/ belongs to the server (only ${RESERVED_DIR}/tmp/ is open)` };
  }
  return { ok: true, folder, rel, area: 'content' };
}

interface Handle {
  fd: number;
  path: string;
  isWritable: boolean;
  /** Hashes the writes of an upload as they come (src/fs/streamedhashes.ts); null on a handle for reading. */
  writer: StreamedWriter | null;
  /** Reads and writes in flight: CLOSE waits for them (clients pipeline the close). */
  inFlight: Set<Promise<unknown>>;
}

function toAttrs(st: Stats): Attributes {
  return {
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    atime: Math.floor(st.atimeMs / 1000),
    mtime: Math.floor(st.mtimeMs / 1000),
  };
}

function isInsideReal(real: string, realRoot: string): boolean {
  return real === realRoot || real.startsWith(realRoot.endsWith('/') ? realRoot : `${realRoot}/`);
}

/**
 * Where the descriptor really is, checked against the folder's real root. On Linux this reads
 * /proc/self/fd (the kernel's answer, whatever was swapped meanwhile); elsewhere the parents are
 * checked again.
 */
async function checkDescriptor(fd: number, c: CheckedPath, area: 'content' | 'tmp'): Promise<void> {
  let real: string | null = null;
  try {
    real = fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    real = null;
  }
  if (real === null) {
    await recheckPath(c, 'while opening');
    return;
  }
  const within = area === 'tmp' ? path.posix.join(c.realRoot, RESERVED_DIR, 'tmp') : c.realRoot;
  if (!isInsideReal(real, within) || real === within) throw new Refused(`it resolves to ${real}, outside the folder`);
}

function openFlags(pflags: number): { flags: number; isWritable: boolean } {
  const wants = (bit: number): boolean => (pflags & bit) !== 0;
  const isWritable = wants(OPEN_MODE.WRITE) || wants(OPEN_MODE.APPEND) || wants(OPEN_MODE.CREAT) || wants(OPEN_MODE.TRUNC) || wants(OPEN_MODE.EXCL);
  let flags = FS.O_NOFOLLOW | FS.O_NONBLOCK;
  if (isWritable) {
    flags |= wants(OPEN_MODE.READ) ? FS.O_RDWR : FS.O_WRONLY;
    if (wants(OPEN_MODE.APPEND)) flags |= FS.O_APPEND;
    if (wants(OPEN_MODE.CREAT)) flags |= FS.O_CREAT;
    if (wants(OPEN_MODE.TRUNC)) flags |= FS.O_TRUNC;
    if (wants(OPEN_MODE.EXCL)) flags |= FS.O_EXCL;
  } else flags |= FS.O_RDONLY;
  return { flags, isWritable };
}

function statusOf(err: unknown): { code: number; message: string } {
  if (err instanceof Refused) return { code: STATUS_CODE.PERMISSION_DENIED, message: err.message };
  const errno = (err as NodeJS.ErrnoException).code;
  const message = (err as Error).message ?? String(err);
  if (errno === 'ENOENT') return { code: STATUS_CODE.NO_SUCH_FILE, message: 'no such file' };
  if (errno === 'EACCES' || errno === 'EPERM') return { code: STATUS_CODE.PERMISSION_DENIED, message: 'permission denied' };
  if ((err as { code?: unknown }).code === 'UNSAFE_PATH' || (err as { code?: unknown }).code === 'NOT_A_DIRECTORY') {
    return { code: STATUS_CODE.PERMISSION_DENIED, message };
  }
  return { code: STATUS_CODE.FAILURE, message: errno ?? 'failure' };
}

/** Ends the hashing of an upload's handle with the file as its writes left it. */
function finishWriter(h: Handle): void {
  let st: BigIntStats | null = null;
  try {
    st = fs.fstatSync(h.fd, { bigint: true });
  } catch {
    // no entry: the server reads the upload
  }
  h.writer!.finish(st);
}

/** Serves `sftp` (a server-side SFTP session of ssh2) under `policy` until it closes. */
export function serveConfinedSftp(sftp: SFTPWrapper, policy: SftpPolicy): void {
  new ConfinedSftpSession(sftp, policy).listen();
}

/** One client's SFTP session on the embedded endpoint: each request answered under `policy`. */
class ConfinedSftpSession {
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;

  constructor(
    private readonly sftp: SFTPWrapper,
    private readonly policy: SftpPolicy,
  ) {}

  /** Answers every request of the session from now on. */
  listen(): void {
    const { sftp } = this;
    sftp.on('OPEN', (reqid: number, filename: string, pflags: number, attrs: Attributes) => this.open(reqid, filename, pflags, attrs));
    sftp.on('READ', (reqid: number, raw: Buffer, offset: number, length: number) => this.read(reqid, raw, offset, length));
    sftp.on('WRITE', (reqid: number, raw: Buffer, offset: number, data: Buffer) => this.write(reqid, raw, offset, data));
    sftp.on('CLOSE', (reqid: number, raw: Buffer) => this.close(reqid, raw));
    sftp.on('FSTAT', (reqid: number, raw: Buffer) => this.fstat(reqid, raw));
    sftp.on('FSETSTAT', (reqid: number, raw: Buffer, attrs: Attributes) => this.fsetstat(reqid, raw, attrs));
    sftp.on('STAT', (reqid: number, p: string) => this.stat('stat', reqid, p));
    sftp.on('LSTAT', (reqid: number, p: string) => this.stat('lstat', reqid, p));
    sftp.on('SETSTAT', (reqid: number, p: string, attrs: Attributes) => this.setstat(reqid, p, attrs));
    sftp.on('REMOVE', (reqid: number, p: string) => this.remove(reqid, p));
    sftp.on('REALPATH', (reqid: number, p: string) => this.realpath(reqid, p));
    for (const [event, op] of [
      ['OPENDIR', 'opendir'],
      ['READDIR', 'readdir'],
      ['MKDIR', 'mkdir'],
      ['RMDIR', 'rmdir'],
      ['RENAME', 'rename'],
      ['READLINK', 'readlink'],
      ['SYMLINK', 'symlink'],
      ['EXTENDED', 'extended request'],
    ] as const) {
      sftp.on(event, ((reqid: number, ...args: unknown[]) => this.notOffered(op, reqid, ...args)) as never);
    }
    sftp.on('close', () => this.closeAll());
    sftp.on('end', () => this.closeAll());
  }

  /** OPEN: a file in the folder to read, or one under tmp/ to write (never through a symlink). */
  private open(reqid: number, filename: string, pflags: number, attrs: Attributes): void {
    const { flags, isWritable } = openFlags(pflags);
    const where = this.place(reqid, isWritable ? 'open for writing' : 'open', filename, isWritable ? ['tmp'] : ['content', 'tmp']);
    if (where === null) return;
    if (this.handles.size >= MAX_HANDLES) {
      this.sftp.status(reqid, STATUS_CODE.FAILURE, `too many open files (${MAX_HANDLES})`);
      return;
    }
    void (async () => {
      const area = where.area as 'content' | 'tmp';
      const c = await checkPath(where.folder.root, where.rel, { allowReserved: area === 'tmp' });
      const mode = attrs.mode !== undefined ? attrs.mode & 0o777 : 0o600;
      const fd = fs.openSync(c.abs, flags, mode);
      let st: BigIntStats;
      try {
        st = fs.fstatSync(fd, { bigint: true });
        if (!st.isFile()) throw new Refused('not a regular file');
        await checkDescriptor(fd, c, area);
      } catch (err) {
        fs.closeSync(fd);
        throw err;
      }
      const id = this.nextHandle++;
      const writer = isWritable ? streamedHashes.beginWrite(st) : null;
      if ((flags & FS.O_APPEND) !== 0) writer?.abandon(); // the kernel, not the request, says where each write lands
      this.handles.set(id, { fd, path: filename, isWritable, writer, inFlight: new Set() });
      const raw = Buffer.alloc(4);
      raw.writeUInt32BE(id, 0);
      this.sftp.handle(reqid, raw);
    })().catch((err: unknown) => {
      // O_NOFOLLOW on a symlink: ELOOP. Say what it is.
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') return this.refuse(reqid, 'open', filename, 'it is a symlink (never followed)');
      this.fail(reqid, 'open', filename, err);
    });
  }

  /** READ: up to MAX_READ bytes at `offset`; EOF at the end. */
  private read(reqid: number, raw: Buffer, offset: number, length: number): void {
    const h = this.handleOf(reqid, raw);
    if (h === null) return;
    const buffer = Buffer.allocUnsafe(Math.min(length, MAX_READ));
    this.track(
      h,
      new Promise<number>((resolve, reject) => fs.read(h.fd, buffer, 0, buffer.length, offset, (err, n) => (err ? reject(err) : resolve(n)))),
    ).then(
      (n) => (n === 0 ? this.sftp.status(reqid, STATUS_CODE.EOF) : this.sftp.data(reqid, n === buffer.length ? buffer : buffer.subarray(0, n))),
      (err: unknown) => this.fail(reqid, 'read', h.path, err),
    );
  }

  /** WRITE: all of `data` at `offset`, on a handle opened for writing. */
  private write(reqid: number, raw: Buffer, offset: number, data: Buffer): void {
    const h = this.handleOf(reqid, raw);
    if (h === null) return;
    if (!h.isWritable) return this.refuse(reqid, 'write', h.path, 'the file was opened for reading');
    // Hashed in the order the writes arrive (the order they are written in is the kernel's affair).
    h.writer?.write(offset, data);
    const writeAll = async (): Promise<void> => {
      let done = 0;
      while (done < data.length) {
        done += await new Promise<number>((resolve, reject) =>
          fs.write(h.fd, data, done, data.length - done, offset + done, (err, n) => (err ? reject(err) : resolve(n))),
        );
      }
    };
    this.track(h, writeAll()).then(
      () => this.sftp.status(reqid, STATUS_CODE.OK),
      (err: unknown) => {
        h.writer?.abandon();
        this.fail(reqid, 'write', h.path, err);
      },
    );
  }

  /** CLOSE: after every request still in flight on the handle. */
  private close(reqid: number, raw: Buffer): void {
    const h = this.handleOf(reqid, raw);
    if (h === null) return;
    this.handles.delete(raw.readUInt32BE(0));
    void Promise.allSettled([...h.inFlight]).then(() => {
      if (h.writer !== null) finishWriter(h);
      fs.close(h.fd, (err) => (err ? this.fail(reqid, 'close', h.path, err) : this.sftp.status(reqid, STATUS_CODE.OK)));
    });
  }

  /** FSTAT of an open handle. */
  private fstat(reqid: number, raw: Buffer): void {
    const h = this.handleOf(reqid, raw);
    if (h === null) return;
    fs.fstat(h.fd, (err, st) => (err ? this.fail(reqid, 'fstat', h.path, err) : this.sftp.attrs(reqid, toAttrs(st))));
  }

  /** FSETSTAT: mode and mtime of a handle opened for writing. */
  private fsetstat(reqid: number, raw: Buffer, attrs: Attributes): void {
    const h = this.handleOf(reqid, raw);
    if (h === null) return;
    if (!h.isWritable) return this.refuse(reqid, 'fsetstat', h.path, 'the file was opened for reading');
    try {
      if (attrs.mode !== undefined) fs.fchmodSync(h.fd, attrs.mode & 0o777);
      if (attrs.mtime !== undefined) fs.futimesSync(h.fd, attrs.atime ?? attrs.mtime, attrs.mtime);
      this.sftp.status(reqid, STATUS_CODE.OK);
    } catch (err) {
      this.fail(reqid, 'fsetstat', h.path, err);
    }
  }

  /** SETSTAT: mode and mtime of a file under tmp/. */
  private setstat(reqid: number, p: string, attrs: Attributes): void {
    const where = this.place(reqid, 'setstat', p, ['tmp']);
    if (where === null) return;
    void (async () => {
      const options = { allowReserved: true };
      if (attrs.mode !== undefined) await safeChmod(where.folder.root, where.rel, attrs.mode & 0o777, options);
      if (attrs.mtime !== undefined) {
        await safeUtimes(where.folder.root, where.rel, (attrs.atime ?? attrs.mtime) * 1000, attrs.mtime * 1000, options);
      }
    })().then(
      () => this.sftp.status(reqid, STATUS_CODE.OK),
      (err: unknown) => this.fail(reqid, 'setstat', p, err),
    );
  }

  /** REMOVE: a file under tmp/. */
  private remove(reqid: number, p: string): void {
    const where = this.place(reqid, 'remove', p, ['tmp']);
    if (where === null) return;
    safeUnlink(where.folder.root, where.rel, { allowReserved: true }).then(
      () => this.sftp.status(reqid, STATUS_CODE.OK),
      (err: unknown) => this.fail(reqid, 'remove', p, err),
    );
  }

  /** REALPATH: the path as the client names it, located first. */
  private realpath(reqid: number, p: string): void {
    const where = locate(p, this.policy);
    if (!where.ok) return this.refuse(reqid, 'realpath', p, where.reason);
    const name = where.rel === '' ? where.folder.root : `${where.folder.root}/${where.rel}`;
    this.sftp.name(reqid, [{ filename: name, longname: name, attrs: {} as Attributes }]);
  }

  /** STAT and LSTAT: inside the folder only; a symlink is followed by STAT only while it stays inside. */
  private stat(op: 'stat' | 'lstat', reqid: number, p: string): void {
    const where = this.place(reqid, op, p, ['root', 'content', 'tmpdir', 'tmp']);
    if (where === null) return;
    void (async () => {
      if (where.area === 'root') return fs.statSync(where.folder.root);
      const c = await checkPath(where.folder.root, where.rel, { allowReserved: where.area !== 'content' });
      let st = fs.lstatSync(c.abs);
      if (op === 'stat' && st.isSymbolicLink()) {
        const real = fs.realpathSync(c.abs);
        if (!isInsideReal(real, c.realRoot)) throw new Refused('it is a symlink that leads outside the folder');
        st = fs.statSync(real);
      }
      return st;
    })().then(
      (st) => this.sftp.attrs(reqid, toAttrs(st)),
      (err: unknown) => this.fail(reqid, op, p, err),
    );
  }

  /** A request the endpoint does not offer: refused and logged. */
  private notOffered(op: string, reqid: number, ...args: unknown[]): void {
    const shown = args.filter((a): a is string => typeof a === 'string').map((a) => JSON.stringify(a)).join(' → ');
    this.policy.log(`refused sftp ${op} ${shown} for client ${this.policy.node}: not offered by the endpoint`);
    this.sftp.status(reqid, STATUS_CODE.OP_UNSUPPORTED, `${op} is not offered by this server`);
  }

  /** The session ended: every handle is closed once its requests in flight settle. */
  private closeAll(): void {
    for (const h of this.handles.values()) {
      void Promise.allSettled([...h.inFlight]).then(() => {
        h.writer?.finish(null);
        fs.close(h.fd, () => undefined);
      });
    }
    this.handles.clear();
  }

  private refuse(reqid: number, op: string, p: string, reason: string): void {
    this.policy.log(`refused sftp ${op} ${JSON.stringify(p)} for client ${this.policy.node}: ${reason}`);
    this.sftp.status(reqid, STATUS_CODE.PERMISSION_DENIED, `${op} ${p}: refused: ${reason}`);
  }

  private fail(reqid: number, op: string, p: string, err: unknown): void {
    const { code, message } = statusOf(err);
    if (err instanceof Refused || code === STATUS_CODE.PERMISSION_DENIED) {
      this.refuse(reqid, op, p, message);
      return;
    }
    this.sftp.status(reqid, code, message);
  }

  /** Locates `p` and checks that its area is one of `areas`; answers the refusal itself. */
  private place(reqid: number, op: string, p: string, areas: ReadonlyArray<Extract<Located, { ok: true }>['area']>): Extract<Located, { ok: true }> | null {
    const where = locate(p, this.policy);
    if (!where.ok) {
      this.refuse(reqid, op, p, where.reason);
      return null;
    }
    if (!areas.includes(where.area)) {
      const why =
        where.area === 'content' || where.area === 'root'
          ? `clients write only through ${RESERVED_DIR}/tmp/ (the server commits the changes)`
          : `not offered on ${where.area === 'tmpdir' ? `${RESERVED_DIR}/tmp itself` : 'this path'}`;
      this.refuse(reqid, op, p, why);
      return null;
    }
    return where;
  }

  private handleOf(reqid: number, raw: Buffer): Handle | null {
    const h = raw.length === 4 ? this.handles.get(raw.readUInt32BE(0)) : undefined;
    if (h === undefined) {
      this.sftp.status(reqid, STATUS_CODE.FAILURE, 'invalid handle');
      return null;
    }
    return h;
  }

  private track<T>(h: Handle, work: Promise<T>): Promise<T> {
    h.inFlight.add(work);
    void work.finally(() => h.inFlight.delete(work)).catch(() => undefined);
    return work;
  }
}

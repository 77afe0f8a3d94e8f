/**
 * Checking what a client uploaded before a commit uses it: a pushed file is opened without
 * following links and must hash to the entry the client recorded; a bundle of small files is
 * read once and split into one temp file per part; a delta upload is assembled against the
 * current file. Every temp path is in a checked `.systemsync/tmp`.
 */
import fs from 'node:fs/promises';
import fsSync, { constants as FS, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import type { Entry, PushOp } from '../core/types.js';
import { SystemsyncError } from '../core/errors.js';
import { describeFsError } from '../node.js';
import { MAX_BUNDLE_BYTES } from '../rpc.js';
import { hashOpenFile, hashSmallFile, readSmallFile, SMALL_FILE } from '../fs/scan.js';
import { newTempName } from '../fs/apply.js';
import { RESERVED_DIR } from '../core/paths.js';
import { checkPath } from '../fs/safefs.js';
import { streamedHashes } from '../fs/streamedhashes.js';
import type { ChangeLog } from './changelog.js';
import type { ServerBlocks } from './delta.js';

/** One push op refused or failed; answered in that op's result, `permanent` or worth a retry. */
export class OpError extends SystemsyncError {
  constructor(code: string, message: string, readonly permanent: boolean) {
    super(code, message);
  }
}

/**
 * A fresh temp file path in `.systemsync/tmp`, whose parents are checked (safefs): the server
 * itself writes there, and a client can plant a symlink in place of the directory over SFTP.
 */
export async function newTempPath(root: string, suffix: string): Promise<string> {
  return uploadPath(root, newTempName(suffix));
}

/** The path of temp file `name` (an upload, a bundle, a part) with `.systemsync/tmp` checked to be a real directory in the folder. */
async function uploadPath(root: string, name: string): Promise<string> {
  return (await checkPath(root, `${RESERVED_DIR}/tmp/${name}`, { allowReserved: true })).abs;
}

/** The uploads of one folder, checked before they are committed. */
export class UploadChecks {
  constructor(
    private readonly root: string,
    private readonly blocks: ServerBlocks,
    private readonly log: ChangeLog,
  ) {}

  /** A delta put: the new content assembled into a fresh temp file (checked block by block and whole); the upload is removed. */
  async assembleDelta(upload: string, op: Extract<PushOp, { op: 'put' }>): Promise<string> {
    let uploadAbs: string;
    try {
      uploadAbs = await uploadPath(this.root, upload);
    } catch (err) {
      throw unusableTmpError(upload, err);
    }
    try {
      const outAbs = await newTempPath(this.root, 'delta');
      await this.blocks.assemble({ root: this.root, rel: op.path, current: this.log.get(op.path)?.entry, uploadAbs, inspect: inspectUpload(upload), entry: op.entry, outAbs });
      return outAbs;
    } finally {
      await fs.rm(uploadAbs, { force: true });
    }
  }

  /** Open a pushed temp file without following links and check it is what the client said. */
  async verifyUpload(upload: string, entry: Entry): Promise<string> {
    if (entry.type !== 'file') throw new OpError('BAD_OP', 'only files carry an upload', true);
    let tmpAbs: string;
    try {
      tmpAbs = await uploadPath(this.root, upload);
    } catch (err) {
      throw unusableTmpError(upload, err);
    }
    const inspect = inspectUpload(upload);
    let hashed: { hash: string; size: number };
    try {
      hashed = entry.size <= SMALL_FILE ? hashSmallFile(tmpAbs, inspect) : await hashLargeUpload(tmpAbs, inspect);
    } catch (err) {
      if (err instanceof OpError) throw err;
      throw new OpError('UPLOAD_MISSING', `upload ${upload}: ${describeFsError(err)}`, false);
    }
    if (hashed.hash !== entry.hash || hashed.size !== entry.size) {
      await fs.rm(tmpAbs, { force: true });
      throw new OpError('HASH_MISMATCH', `upload does not match the hash the client recorded (changed while sent?)`, false);
    }
    return tmpAbs;
  }

  /**
   * Split a bundle of pushed files: read it once (then remove it), check each part against the
   * entry the client recorded, and write each part to a temp file of its own. Sets `verified[i]`
   * for every op in `indexes` to the temp file's path or to the error that refuses it.
   */
  async splitBundle(upload: string, indexes: number[], ops: PushOp[], verified: Array<string | Error | null>): Promise<void> {
    let bundleAbs: string;
    let data: Buffer;
    try {
      bundleAbs = await uploadPath(this.root, upload);
    } catch (err) {
      for (const i of indexes) verified[i] = unusableTmpError(upload, err);
      return;
    }
    try {
      data = readSmallFile(bundleAbs, MAX_BUNDLE_BYTES, inspectUpload(upload));
    } catch (err) {
      const refused = err instanceof OpError ? err : new OpError('UPLOAD_MISSING', `upload ${upload}: ${describeFsError(err)}`, false);
      for (const i of indexes) verified[i] = refused;
      return;
    } finally {
      try {
        fsSync.rmSync(bundleAbs, { force: true });
      } catch {
        // a directory planted at the name: left for the temp-dir cleanup
      }
    }
    const overlap = overlappingPart(indexes.map((i) => (ops[i] as Extract<PushOp, { op: 'put' }>).part!));
    if (overlap !== null) {
      // One upload committed many times over (1000 puts of the same 16 MiB would commit 16 GB).
      const refused = new OpError('BAD_UPLOAD', `parts of upload ${upload} overlap (${overlap}): each byte of a bundle belongs to one file`, true);
      for (const i of indexes) verified[i] = refused;
      return;
    }
    for (const i of indexes) {
      const op = ops[i] as Extract<PushOp, { op: 'put' }>;
      const { offset, length } = op.part!;
      try {
        if (op.entry.type !== 'file') throw new OpError('BAD_OP', 'only files carry an upload', true);
        if (offset + length > data.length) throw new OpError('BAD_UPLOAD', `part ${offset}+${length} lies past the end of upload ${upload}`, true);
        const bytes = data.subarray(offset, offset + length);
        if (length !== op.entry.size || createHash('sha256').update(bytes).digest('hex') !== op.entry.hash) {
          throw new OpError('HASH_MISMATCH', `upload does not match the hash the client recorded (changed while sent?)`, false);
        }
        const tmpAbs = await newTempPath(this.root, 'part');
        fsSync.writeFileSync(tmpAbs, bytes, { flag: 'wx', mode: 0o600 });
        verified[i] = tmpAbs;
      } catch (err) {
        verified[i] = err instanceof OpError ? err : new OpError('UPLOAD_MISSING', `upload ${upload}: ${describeFsError(err)}`, false);
      }
    }
  }
}

/**
 * `.systemsync/tmp` could not be used for `upload` (swapped for a symlink, say). Not permanent:
 * the folder's presence check replaces a symlinked tmp, and the client's retry then succeeds.
 */
function unusableTmpError(upload: string, err: unknown): OpError {
  return new OpError('BAD_UPLOAD', `upload ${upload}: ${describeFsError(err)}`, false);
}

/** The first two parts that share bytes ("0+10 and 5+10"), or null when none do. Empty parts share nothing. */
function overlappingPart(parts: Array<{ offset: number; length: number }>): string | null {
  const sorted = parts.filter((p) => p.length > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const [a, b] = [sorted[i - 1]!, sorted[i]!];
    if (b.offset < a.offset + a.length) return `${a.offset}+${a.length} and ${b.offset}+${b.length}`;
  }
  return null;
}

/** Refuses an upload that is not a regular file, or that has other hard links. */
function inspectUpload(upload: string): (st: Stats) => void {
  return (st) => {
    if (!st.isFile()) throw new OpError('BAD_UPLOAD', `upload ${upload} is not a regular file`, true);
    // A hard link would let a rogue upload name a file outside the folder (chmod, rename).
    if (st.nlink > 1) throw new OpError('BAD_UPLOAD', `upload ${upload} has other hard links`, true);
  };
}

/**
 * hashSmallFile for a large upload: the same checks, with reads that do not block the event loop.
 * An upload the embedded endpoint hashed while writing it, unchanged since, is not read again.
 */
async function hashLargeUpload(tmpAbs: string, inspect: (st: Stats) => void): Promise<{ hash: string; size: number }> {
  const handle = await fs.open(tmpAbs, FS.O_RDONLY | FS.O_NOFOLLOW | FS.O_NONBLOCK);
  try {
    const st = await handle.stat();
    inspect(st);
    const streamed = streamedHashes.take(await handle.stat({ bigint: true }));
    if (streamed !== null) return { hash: streamed, size: st.size };
    return await hashOpenFile(handle, st.size);
  } finally {
    await handle.close();
  }
}

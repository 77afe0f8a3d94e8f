/**
 * Uploads for a push: small files together in one bundle, larger ones one by one (as a delta
 * against the base when there is one). Every upload is checked against the fingerprint its file
 * was read with: a file that changed while it was sent is never committed, but looked at again.
 */
import fsSync from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Entry, PushOp, StatFingerprint } from '../core/types.js';
import { SyncError } from '../core/errors.js';
import { isSameFingerprint } from '../core/reconcile.js';
import type { Logger } from '../node/log.js';
import { showPath } from '../node/log.js';
import { BUNDLE_FILE_MAX } from '../rpc.js';
import { DEFERRED_HASH, fingerprint, readSmallFile, type LocalState } from '../fs/scan.js';
import { newTempName } from '../fs/apply.js';
import { tempFilePath } from '../fs/reserved.js';
import { FileChangedError } from '../fs/blocks.js';
import type { ClientFolderState } from './clientstate.js';
import type { FolderConnection, Transfer } from './context.js';
import { pushDelta } from './delta.js';

/** What an upload needs of its folder. */
export interface UploadContext {
  readonly name: string;
  readonly root: string;
  readonly state: ClientFolderState;
  readonly logger: Logger;
  beginTransfer(p: string, direction: 'push' | 'pull', total: number): Transfer;
  /** A push of `p` failed: a task with its backoff (see Pusher). */
  recordPushFailure(p: string, err: unknown): void;
}

/**
 * Upload small files as one bundle: each is read whole (synchronously: a few microseconds) and
 * must still have the fingerprint it was read with, so content and entry agree. Returns their
 * put ops naming the bundle and their part of it; a file that changed meanwhile is re-queued.
 */
export async function uploadBundle(
  ctx: UploadContext,
  conn: FolderConnection,
  group: Array<Extract<PushOp, { op: 'put' }>>,
  locals: Map<string, LocalState | null>,
): Promise<PushOp[]> {
  const name = newTempName('bundle');
  const contents: Buffer[] = [];
  const built: PushOp[] = [];
  let offset = 0;
  for (const op of group) {
    if (op.entry.type !== 'file') continue; // isBundled let only files in
    const localAbs = path.join(ctx.root, op.path);
    const read = locals.get(op.path) ?? null;
    let data: Buffer;
    let after: StatFingerprint | null;
    try {
      data = readSmallFile(localAbs, BUNDLE_FILE_MAX);
      after = fingerprint(fsSync.lstatSync(localAbs));
    } catch (err) {
      ctx.recordPushFailure(op.path, err);
      continue;
    }
    const hash = createHash('sha256').update(data).digest('hex');
    const isAsRead = read !== null && isSameFingerprint(read.stat, after) && data.length === after.size;
    if (!isAsRead || (op.entry.hash !== DEFERRED_HASH && op.entry.hash !== hash)) {
      ctx.state.markDirty([op.path]);
      ctx.recordPushFailure(op.path, new SyncError('FILE_BUSY', 'changed while it was being sent; sent again once it is still'));
      continue;
    }
    const entry: Entry = { ...op.entry, hash };
    locals.set(op.path, { entry, stat: read.stat });
    built.push({ ...op, entry, upload: name, part: { offset, length: data.length } });
    contents.push(data);
    offset += data.length;
  }
  if (built.length === 0) return [];
  const transfer = ctx.beginTransfer(`${group[0]!.path} (bundle of ${built.length})`, 'push', offset);
  let localTmp: string | null = null;
  try {
    localTmp = await tempFilePath(ctx.root, name);
    fsSync.writeFileSync(localTmp, Buffer.concat(contents, offset), { flag: 'wx', mode: 0o600 });
    await conn.ssh.uploadFile(localTmp, `${conn.remote.tmp}/${name}`, { onProgress: (done) => transfer.progress(done) });
    return built;
  } catch (err) {
    for (const op of built) if (op.op === 'put') ctx.recordPushFailure(op.path, err);
    await conn.ssh.unlink(`${conn.remote.tmp}/${name}`).catch(() => undefined);
    return [];
  } finally {
    transfer.end();
    if (localTmp !== null) fsSync.rmSync(localTmp, { force: true });
  }
}

/**
 * Upload one file to the server's temp dir; null when it failed (recorded) or changed meanwhile
 * (re-queued). A file read without its hash (DEFERRED_HASH) gets the hash of the bytes sent,
 * provided its fingerprint after the upload is still the one it was read with.
 */
export async function uploadOne(ctx: UploadContext, conn: FolderConnection, op: Extract<PushOp, { op: 'put' }>, locals: Map<string, LocalState | null>): Promise<PushOp | null> {
  if (op.entry.type !== 'file') return op;
  const name = newTempName('up');
  const localAbs = path.join(ctx.root, op.path);
  const transfer = ctx.beginTransfer(op.path, 'push', op.entry.size);
  try {
    const base = ctx.state.getBase(op.path)?.entry;
    const delta = base?.type === 'file'
      ? await pushDelta({ ssh: conn.ssh, peer: conn.peer, folder: ctx.name, rel: op.path, localAbs, size: op.entry.size, base, remotePath: `${conn.remote.tmp}/${name}`, onProgress: (done) => transfer.progress(done) })
      : null;
    const sent = delta ?? (await conn.ssh.uploadFile(localAbs, `${conn.remote.tmp}/${name}`, { onProgress: (done) => transfer.progress(done) }));
    // Content as agreed (only its metadata changed): a metadata-only put.
    const extra = delta === null ? {} : delta.sentBytes === 0 ? { upload: null } : { delta: true };
    if (delta !== null) ctx.logger.debug(`push ${showPath(op.path)}: delta of ${delta.sentBlocks}/${delta.blocks} blocks, ${delta.sentBytes} bytes sent`);
    if (op.entry.hash === DEFERRED_HASH) {
      const read = locals.get(op.path) ?? null;
      let after: StatFingerprint | null = null;
      try {
        after = fingerprint(fsSync.lstatSync(localAbs));
      } catch {
        // gone: not the file that was read
      }
      if (read !== null && sent.size === op.entry.size && isSameFingerprint(read.stat, after)) {
        const entry: Entry = { ...op.entry, hash: sent.hash };
        locals.set(op.path, { entry, stat: read.stat });
        return { ...op, entry, upload: name, ...extra };
      }
    }
    if (sent.hash !== op.entry.hash) {
      // Changed while being sent: never commit a mix. A file still being written is busy: look
      // at it again after a backoff rather than sending it over and over while it grows.
      await conn.ssh.unlink(`${conn.remote.tmp}/${name}`).catch(() => undefined);
      ctx.state.markDirty([op.path]);
      ctx.recordPushFailure(op.path, new SyncError('FILE_BUSY', 'changed while it was being sent; sent again once it is still'));
      return null;
    }
    return { ...op, upload: name, ...extra };
  } catch (err) {
    if (err instanceof FileChangedError) {
      ctx.state.markDirty([op.path]);
      ctx.recordPushFailure(op.path, new SyncError('FILE_BUSY', 'changed while it was being sent; sent again once it is still'));
      return null;
    }
    ctx.recordPushFailure(op.path, err);
    await conn.ssh.unlink(`${conn.remote.tmp}/${name}`).catch(() => undefined);
    return null;
  } finally {
    transfer.end();
  }
}

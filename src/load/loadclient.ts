/**
 * A load client: many protocol-speaking sessions from one process, for measuring a hub with many
 * clients (bench `--only fanout`) and testing it (test/load-client.test.ts). Each session is one
 * real SSH connection with its own SFTP session and RPC stream to the hub's `rpc.sock`, speaking
 * the real protocol: `hello`, `changes` pages after its cursor on every `changed` notification,
 * `bundle` + SFTP downloads, `ack`, and `push` of uploaded files.
 *
 * It is not a daemon: no watcher, no index on disk, no outbox, no conflict handling. A session in
 * `apply` mode writes what it pulls into its own folder (plain files and directories; symlinks
 * are only recorded), one in `ack` mode only pages through the feed and acknowledges it. Paths
 * come from the hub validated by the RPC schemas (folder-relative, no `..`, no `.systemsync/`),
 * and the folder is the load client's own scratch directory, written by nothing else.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { Change, Entry } from '../core/types.js';
import { createRpcPeer, MAX_BUNDLE_BYTES, MAX_BUNDLE_FILES, BUNDLE_FILE_MAX, type FolderInfo, type RpcPeer } from '../rpc.js';
import { connectSsh, type SshSession, type SshTarget } from '../ssh/transfer.js';

export type LoadMode = 'apply' | 'ack';

export interface LoadSessionOptions {
  /** The node name it says in `hello` (one per session). */
  node: string;
  folder: string;
  target: SshTarget;
  /** The hub's rpc.sock, reached through the SSH connection. */
  rpcSocket: string;
  mode: LoadMode;
  /** Where an `apply` session writes what it pulls (created if missing). */
  localRoot?: string;
  /** Changes per `changes` page. Default 1000. */
  pageLimit?: number;
}

/** What a session holds for one path after applying it: the seq, and the content hash (null: a tombstone, '' for a dir or link). */
export interface HeldVersion {
  seq: number;
  hash: string | null;
}

/** Emitted as `applied` once per change a session applied (after its content is on disk, in apply mode). */
export interface AppliedEvent {
  session: LoadSession;
  change: Change;
  /** performance.now() when it was applied. */
  at: number;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

let tempCounter = 0;

/** One session: one SSH connection, one SFTP session, one RPC stream, one cursor. */
export class LoadSession extends EventEmitter {
  readonly held = new Map<string, HeldVersion>();
  cursor = 0;
  /** The hub's head as last told (hello, a `changed` notification, a page). */
  head = 0;
  pulls = 0;
  /** `changes` requests made, and inline pages (in `changed`) applied instead. */
  pages = 0;
  inlinePages = 0;
  errors: Error[] = [];
  private ssh: SshSession | null = null;
  private peer: RpcPeer | null = null;
  private info: FolderInfo | null = null;
  private pulling: Promise<void> | null = null;
  private readonly inline: Array<{ after: number; head: number; changes: Change[] }> = [];
  private again = false;

  constructor(readonly options: LoadSessionOptions) {
    super();
  }

  get name(): string {
    return this.options.node;
  }

  get isConnected(): boolean {
    return this.peer !== null && !this.peer.isClosed;
  }

  /** True once the session applied everything up to the head it was last told, with no pull running. */
  get isCaughtUp(): boolean {
    return this.pulling === null && this.cursor >= this.head;
  }

  async connect(): Promise<void> {
    const { options } = this;
    if (options.mode === 'apply') {
      if (options.localRoot === undefined) throw new Error(`${options.node}: apply mode needs localRoot`);
      fs.mkdirSync(options.localRoot, { recursive: true });
    }
    this.ssh = await connectSsh(options.target);
    const stream = await this.ssh.openUnixStream(options.rpcSocket);
    this.peer = createRpcPeer(stream, {
      context: this,
      name: options.node,
      handlers: {
        changed: (params) => {
          if (params.folder !== options.folder) return;
          if (params.head > this.head) this.head = params.head;
          if (params.after !== undefined && params.changes !== undefined) this.inline.push({ after: params.after, head: params.head, changes: params.changes });
          this.schedulePull();
        },
      },
    });
    const hello = await this.peer.request('hello', { node: options.node, folders: [options.folder], protocol: 1 });
    const info = hello.folders[options.folder];
    if (info === undefined) throw new Error(`${options.node}: the hub does not serve folder ${options.folder}`);
    this.info = info;
    this.cursor = info.cursor;
    this.head = Math.max(this.head, info.head);
    this.schedulePull();
  }

  /** Pull now, or once more after the pull that is running (notifications coalesce). */
  schedulePull(): void {
    if (this.pulling !== null) {
      this.again = true;
      return;
    }
    this.pulling = (async () => {
      do {
        this.again = false;
        try {
          await this.pullAll();
        } catch (err) {
          if (!this.isConnected) break;
          this.errors.push(err as Error);
          this.emit('error-pull', err);
        }
      } while (this.again);
    })().finally(() => {
      this.pulling = null;
      if (this.cursor >= this.head) this.emit('idle');
    });
  }

  /**
   * Applies the inline pages that start at (or before) the cursor; otherwise pages through the
   * feed after the cursor until a page is short. Each page applied is acknowledged.
   */
  private async pullAll(): Promise<void> {
    const peer = this.peer!;
    const limit = this.options.pageLimit ?? 1000;
    this.pulls++;
    for (;;) {
      const inline = this.takeInline();
      if (inline !== null) {
        this.inlinePages++;
        await this.applyChanges(inline.changes, inline.head);
        continue;
      }
      if (this.cursor >= this.head) return;
      const page = await peer.request('changes', { folder: this.options.folder, after: this.cursor, limit });
      this.pages++;
      if (page.head > this.head) this.head = page.head;
      if (page.reset) {
        // Below the hub's floor (or past its head): start over from a full listing.
        this.held.clear();
        this.cursor = 0;
        continue;
      }
      // Nothing durable past the cursor yet: what the head says will come with a later notification.
      if (page.changes.length === 0) return;
      await this.applyChanges(page.changes, page.changes[page.changes.length - 1]!.seq);
      if (page.changes.length < limit) return;
    }
  }

  /** The next inline page that continues from the cursor (the part after it); null at a gap. */
  private takeInline(): { changes: Change[]; head: number } | null {
    while (this.inline.length > 0) {
      const page = this.inline[0]!;
      if (page.head <= this.cursor) {
        this.inline.shift();
        continue;
      }
      if (page.after > this.cursor) return null;
      this.inline.shift();
      return { changes: page.changes.filter((c) => c.seq > this.cursor), head: page.head };
    }
    return null;
  }

  private async applyChanges(changes: Change[], cursor: number): Promise<void> {
    if (this.options.mode === 'apply' && changes.length > 0) await this.applyPage(changes);
    const at = performance.now();
    for (const change of changes) {
      this.held.set(change.path, { seq: change.seq, hash: change.entry === null ? null : change.entry.type === 'file' ? change.entry.hash : '' });
      this.emit('applied', { session: this, change, at } satisfies AppliedEvent);
    }
    this.cursor = cursor;
    await this.peer!.request('ack', { folder: this.options.folder, seq: this.cursor });
  }

  private localPath(rel: string): string {
    return path.join(this.options.localRoot!, ...rel.split('/'));
  }

  private writeLocal(rel: string, data: Buffer, entry: Extract<Entry, { type: 'file' }>): void {
    const abs = this.localPath(rel);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    const tmp = `${path.dirname(abs)}/.load-${process.pid}-${++tempCounter}.tmp`;
    fs.writeFileSync(tmp, data, { mode: entry.mode & 0o777 });
    fs.renameSync(tmp, abs);
  }

  /** Writes the page's files and directories into the session's folder; removes its tombstones. */
  private async applyPage(changes: Change[]): Promise<void> {
    const info = this.info!;
    const ssh = this.ssh!;
    const peer = this.peer!;
    const latest = new Map<string, Change>();
    for (const c of changes) latest.set(c.path, c);
    const small: Array<{ path: string; entry: Extract<Entry, { type: 'file' }> }> = [];
    const large: Array<{ path: string; entry: Extract<Entry, { type: 'file' }> }> = [];
    for (const c of latest.values()) {
      const entry = c.entry;
      if (entry === null) {
        fs.rmSync(this.localPath(c.path), { recursive: true, force: true });
      } else if (entry.type === 'dir') {
        fs.mkdirSync(this.localPath(c.path), { recursive: true });
      } else if (entry.type === 'file') {
        if (this.held.get(c.path)?.hash === entry.hash && fs.existsSync(this.localPath(c.path))) continue;
        (entry.size <= BUNDLE_FILE_MAX ? small : large).push({ path: c.path, entry });
      }
    }
    // A lone small file is one download; more go in bundles, as the client daemon does.
    const direct = small.length === 1 ? [...small, ...large] : large;
    if (small.length > 1) {
      for (let i = 0; i < small.length; ) {
        const group: typeof small = [];
        let bytes = 0;
        while (i < small.length && group.length < MAX_BUNDLE_FILES && bytes + small[i]!.entry.size <= MAX_BUNDLE_BYTES) {
          bytes += small[i]!.entry.size;
          group.push(small[i++]!);
        }
        const made = await peer.request('bundle', { folder: this.options.folder, files: group.map((f) => ({ path: f.path, hash: f.entry.hash })) });
        let data: Buffer | null = null;
        if (made.bundle !== null) {
          const remote = `${info.tmp}/${made.bundle}`;
          const local = path.join(this.options.localRoot!, `.load-bundle-${process.pid}-${++tempCounter}`);
          try {
            await ssh.downloadFile(remote, local);
            data = fs.readFileSync(local);
          } finally {
            fs.rmSync(local, { force: true });
            await ssh.unlink(remote).catch(() => undefined);
          }
        }
        for (const [k, f] of group.entries()) {
          const part = made.parts[k];
          const bytesOf = part != null && data !== null && part.offset + part.length <= data.length ? data.subarray(part.offset, part.offset + part.length) : null;
          if (bytesOf !== null && sha256(bytesOf) === f.entry.hash) this.writeLocal(f.path, bytesOf, f.entry);
          else direct.push(f);
        }
      }
    }
    for (const f of direct) {
      const abs = this.localPath(f.path);
      fs.mkdirSync(path.dirname(abs), { recursive: true });
      const tmp = `${path.dirname(abs)}/.load-${process.pid}-${++tempCounter}.tmp`;
      try {
        await ssh.downloadFile(`${info.root}/${f.path}`, tmp, { expectedHash: f.entry.hash, expectedSize: f.entry.size });
        fs.renameSync(tmp, abs);
      } catch (err) {
        fs.rmSync(tmp, { force: true });
        // Changed again on the hub since this page: a later page brings the newer version.
        if ((err as { code?: string }).code !== 'HASH_MISMATCH' && (err as { code?: string }).code !== 'NO_SUCH_FILE') throw err;
      }
    }
  }

  /**
   * Pushes one file: uploads `content` into the hub's tmp dir over SFTP, then commits a `put`
   * based on the version this session holds. Returns the seq the hub gave it.
   */
  async pushFile(rel: string, content: Buffer, mtime = Date.now()): Promise<number> {
    const info = this.info!;
    const local = path.join(this.options.localRoot ?? '/tmp', `.load-push-${process.pid}-${++tempCounter}`);
    const upload = `load-${process.pid}-${tempCounter}-${Date.now().toString(36)}.part`;
    fs.writeFileSync(local, content);
    try {
      await this.ssh!.uploadFile(local, `${info.tmp}/${upload}`);
    } finally {
      fs.rmSync(local, { force: true });
    }
    const hash = sha256(content);
    const entry: Entry = { type: 'file', size: content.length, mtime: Math.floor(mtime), mode: 0o644, hash };
    const base = this.held.get(rel)?.seq ?? null;
    const { results } = await this.peer!.request('push', { folder: this.options.folder, ops: [{ op: 'put', path: rel, base, entry, upload }] });
    const result = results[0]!;
    if (result.status !== 'ok') throw new Error(`${this.name}: push of ${rel}: ${JSON.stringify(result)}`);
    if (this.options.mode === 'apply') this.writeLocal(rel, content, entry);
    return result.seq;
  }

  /** Waits until the session has applied everything up to `seq`. */
  async waitFor(seq: number, timeoutMs = 60_000): Promise<void> {
    if (this.cursor >= seq && this.pulling === null) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('idle', check);
        reject(new Error(`${this.name}: still at cursor ${this.cursor} after ${timeoutMs} ms waiting for ${seq}`));
      }, timeoutMs);
      const check = (): void => {
        if (this.cursor >= seq) {
          clearTimeout(timer);
          this.off('idle', check);
          resolve();
        }
      };
      this.on('idle', check);
      check();
    });
  }

  async close(): Promise<void> {
    this.peer?.close();
    await this.pulling?.catch(() => undefined);
    await this.ssh?.close();
  }
}

export interface LoadClientOptions extends Omit<LoadSessionOptions, 'node' | 'localRoot'> {
  sessions: number;
  /** Node names are `${prefix}${i}`. Default `load`. */
  prefix?: string;
  /** In apply mode, each session's folder is `${localBase}/${node}`. */
  localBase?: string;
  /** Sessions connecting at once. Default 10 (sshd's MaxStartups is 10 by default). */
  connectConcurrency?: number;
}

/** Many sessions from one process. */
export class LoadClient {
  readonly sessions: LoadSession[] = [];

  constructor(readonly options: LoadClientOptions) {
    const prefix = options.prefix ?? 'load';
    for (let i = 0; i < options.sessions; i++) {
      const node = `${prefix}${i}`;
      this.sessions.push(
        new LoadSession({
          ...options,
          node,
          ...(options.localBase !== undefined ? { localRoot: path.join(options.localBase, node) } : {}),
        }),
      );
    }
  }

  async connect(): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < this.sessions.length) await this.sessions[next++]!.connect();
    };
    await Promise.all(Array.from({ length: Math.min(this.options.connectConcurrency ?? 10, this.sessions.length) }, worker));
  }

  /** Waits until every session has applied everything up to `seq`. */
  async waitAll(seq: number, timeoutMs = 60_000): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.waitFor(seq, timeoutMs)));
  }

  async close(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.close()));
  }
}

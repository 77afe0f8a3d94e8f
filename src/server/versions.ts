/**
 * The versions the server keeps of deleted and replaced files (SPEC promise 8), per folder.
 *
 * Contents stay where the trash always put them: plain files under
 * `<folder>/.systemsync/trash/<stamp>/<path>` (a second version of the same path in the same
 * second gets `<path>.<n>`), hard-linked from the file that was about to go, so that they can be
 * copied back by hand with the daemon stopped. What the layout cannot say (which node's change
 * removed it, the path it belongs to for sure, its directory's contents) is recorded in an index
 * in the state dir, `kept-versions.jsonl`: one JSON line per version added, rewritten whole when
 * versions are pruned. Trash files the index does not know (trash from before the index, or a
 * crash between the link and the index line) are adopted at start, with node null.
 *
 * Every path under `.systemsync/trash` is reached through safefs checks (its parents are real
 * directories in the folder) and read with O_NOFOLLOW: a client with SFTP access can plant
 * symlinks there, and nothing is ever read or written through one.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { formatStamp } from '../core/conflict.js';
import { isSameOrInside, RESERVED_DIR } from '../core/paths.js';
import { SyncError } from '../core/errors.js';
import type { Entry, FileEntry } from '../core/types.js';
import { versionsToPrune, type VersionPolicy } from '../core/versionpolicy.js';
import { newTempName, type BeforeReplace } from '../fs/apply.js';
import { checkPath, recheckPath } from '../fs/safefs.js';
import { mtimeOf } from '../fs/stat.js';
import { writeFileAtomic } from '../persistence.js';
import type { VersionInfoWire } from '../rpc.js';

export const TRASH_DIR = 'trash';
const INDEX_FILE = 'kept-versions.jsonl';
const STAMP = /^\d{8}-\d{6}$/;
/** Files deleted by the same node this long before their directory are taken as deleted with it. */
export const DIR_GROUP_MS = 10 * 60 * 1000;

/** Why a version was kept: its path was deleted, or replaced by other content. */
export type KeptBecause = 'deleted' | 'replaced';

/** One kept version, as the index holds it. */
export interface KeptRecord {
  /** `<stamp>-<n>`: unique in the folder. */
  id: string;
  /** Folder-relative path it was at. */
  path: string;
  /** When it was removed or replaced, ISO 8601 UTC. */
  time: string;
  type: 'file' | 'dir';
  /** Bytes (a directory: the bytes of its files kept with it). */
  size: number;
  /** The node whose change removed or replaced it; null: unknown (adopted trash). */
  node: string | null;
  because: KeptBecause;
  mode: number;
  /** File: mtime in ms; directory: 0. */
  mtime: number;
  /** File: sha256 when known; null: to be computed when restored. */
  hash: string | null;
  /** File: where its content lies under `.systemsync/trash/`; directory: null. */
  stored: string | null;
  /** Directory: ids of the versions of what was inside it when it was deleted. */
  children?: string[];
}

/** A kept version as `versions` lists it (SPEC `versions --json`: id, path, time, size, node; the rest is extra). */
export function toVersionInfo(r: KeptRecord): VersionInfoWire {
  const info: VersionInfoWire = {
    id: r.id,
    path: r.path,
    time: r.time,
    size: r.size,
    node: r.node,
    type: r.type,
    because: r.because,
    mtime: r.type === 'file' ? new Date(r.mtime).toISOString() : null,
    mode: r.mode,
  };
  if (r.children !== undefined) info.entries = r.children.length;
  return info;
}

function isoOfStamp(stamp: string): string {
  const m = /^(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})$/.exec(stamp)!;
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!)).toISOString().replace('.000Z', 'Z');
}

function isoNow(now: Date): string {
  return now.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Newest first; ties by the counter in the id, higher first. */
function newestFirst(a: KeptRecord, b: KeptRecord): number {
  if (a.time !== b.time) return a.time < b.time ? 1 : -1;
  const na = Number(a.id.slice(a.id.lastIndexOf('-') + 1));
  const nb = Number(b.id.slice(b.id.lastIndexOf('-') + 1));
  return nb - na;
}

export class VersionStore {
  private readonly records = new Map<string, KeptRecord>();
  /** Highest counter used per stamp, for new ids. */
  private readonly counters = new Map<string, number>();
  private storedBytes = 0;

  private constructor(
    readonly root: string,
    private readonly indexFile: string,
    /** What the change log holds at a path now (the entry of a file about to be kept). */
    private readonly recorded: (p: string) => Entry | null,
  ) {}

  /** Opens the index in `stateDir` and adopts trash files it does not know. */
  static async open(root: string, stateDir: string, recorded: (p: string) => Entry | null): Promise<VersionStore> {
    const store = new VersionStore(root, path.join(stateDir, INDEX_FILE), recorded);
    await store.load();
    const adopted = await store.adoptUnknown().catch(() => 0);
    if (adopted > 0) await store.rewrite();
    return store;
  }

  get count(): number {
    return this.records.size;
  }

  /** Bytes the kept files take (hard links to files still in use count too). */
  get bytes(): number {
    return this.storedBytes;
  }

  private async load(): Promise<void> {
    let text: string;
    try {
      text = await fsp.readFile(this.indexFile, 'utf8');
    } catch {
      return;
    }
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const r = JSON.parse(line) as KeptRecord;
        if (typeof r.id === 'string' && typeof r.path === 'string' && typeof r.time === 'string') this.add(r);
      } catch {
        // a line torn by a crash: its trash file is adopted below
      }
    }
  }

  private add(r: KeptRecord): void {
    const previous = this.records.get(r.id);
    if (previous !== undefined && previous.type === 'file') this.storedBytes -= previous.size;
    this.records.set(r.id, r);
    if (r.type === 'file') this.storedBytes += r.size;
    const dash = r.id.lastIndexOf('-');
    const stamp = r.id.slice(0, dash);
    const n = Number(r.id.slice(dash + 1));
    if (Number.isSafeInteger(n) && n > (this.counters.get(stamp) ?? 0)) this.counters.set(stamp, n);
  }

  private newId(stamp: string): string {
    const n = (this.counters.get(stamp) ?? 0) + 1;
    this.counters.set(stamp, n);
    return `${stamp}-${n}`;
  }

  private append(r: KeptRecord): void {
    this.add(r);
    try {
      fs.appendFileSync(this.indexFile, `${JSON.stringify(r)}\n`, { mode: 0o600 });
    } catch {
      // The trash file is there; a restart adopts it (without its node).
    }
  }

  private async rewrite(): Promise<void> {
    const lines = [...this.records.values()].map((r) => `${JSON.stringify(r)}\n`);
    await writeFileAtomic(this.indexFile, lines.join(''));
  }

  /** Walks `.systemsync/trash` (never through a link) and records files the index does not know. */
  private async adoptUnknown(): Promise<number> {
    const known = new Set<string>();
    for (const r of this.records.values()) if (r.stored !== null) known.add(r.stored);
    const trash = await checkPath(this.root, `${RESERVED_DIR}/${TRASH_DIR}/x`, { allowReserved: true });
    const trashAbs = path.dirname(trash.abs);
    const top = fs.lstatSync(trashAbs, { throwIfNoEntry: false });
    if (top === undefined || !top.isDirectory()) return 0;
    let adopted = 0;
    for (const stamp of fs.readdirSync(trashAbs).sort()) {
      if (!STAMP.test(stamp)) continue;
      const found: Array<{ stored: string; st: fs.Stats }> = [];
      const walk = (rel: string): void => {
        const abs = path.join(trashAbs, rel);
        const st = fs.lstatSync(abs, { throwIfNoEntry: false });
        if (st === undefined || st.isSymbolicLink()) return;
        if (st.isDirectory()) {
          for (const name of fs.readdirSync(abs)) walk(`${rel}/${name}`);
        } else if (st.isFile() && !known.has(rel)) {
          found.push({ stored: rel, st });
        }
      };
      walk(stamp);
      const storedSet = new Set(found.map((f) => f.stored));
      for (const { stored, st } of found.sort((a, b) => (a.stored < b.stored ? -1 : 1))) {
        let p = stored.slice(stamp.length + 1);
        // `<path>.<n>`: a second version of `<path>` in the same second.
        const m = /^(.*)\.\d+$/.exec(p);
        if (m !== null && (storedSet.has(`${stamp}/${m[1]}`) || known.has(`${stamp}/${m[1]}`))) p = m[1]!;
        this.add({
          id: this.newId(stamp),
          path: p,
          time: isoOfStamp(stamp),
          type: 'file',
          size: st.size,
          node: null,
          because: 'deleted',
          mode: st.mode & 0o777,
          mtime: mtimeOf(st),
          hash: null,
          stored,
        });
        adopted++;
      }
    }
    return adopted;
  }

  /**
   * A BeforeReplace that keeps the file about to be replaced or removed, on behalf of `node`.
   * The file is hard-linked into `.systemsync/trash/<stamp>/<path>`; its metadata goes to the index.
   */
  keeper(node: string, because: KeptBecause, now: () => Date = () => new Date()): BeforeReplace {
    return (absPath, rel) => this.keepFile(absPath, rel, node, because, now());
  }

  private async keepFile(absPath: string, rel: string, node: string, because: KeptBecause, at: Date): Promise<void> {
    const stamp = formatStamp(at);
    let stored = `${stamp}/${rel}`;
    let st: fs.Stats;
    for (let n = 1; ; n++) {
      // Parents created 0o700, none reached through a link (a client may plant one over SFTP).
      const dest = await checkPath(this.root, `${RESERVED_DIR}/${TRASH_DIR}/${stored}`, { allowReserved: true, createParents: 0o700 });
      try {
        // link(2) does not follow a symlink at the source; the caller checked it is a file.
        fs.linkSync(absPath, dest.abs);
        await recheckPath(dest);
        st = fs.lstatSync(dest.abs);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        stored = `${stamp}/${rel}.${n}`;
      }
    }
    const entry = this.recorded(rel);
    const hash = entry?.type === 'file' && entry.size === st.size && entry.mtime === mtimeOf(st) ? entry.hash : null;
    this.append({
      id: this.newId(stamp),
      path: rel,
      time: isoNow(at),
      type: 'file',
      size: st.size,
      node,
      because,
      mode: st.mode & 0o777,
      mtime: mtimeOf(st),
      hash,
      stored,
    });
  }

  /**
   * Records the deletion of directory `p` by `node`: its version brings back the files and
   * directories under it that the same node deleted in the DIR_GROUP_MS before (the newest
   * version of each path).
   */
  keepDir(p: string, mode: number, node: string, at: Date): KeptRecord {
    const since = new Date(at.getTime() - DIR_GROUP_MS).toISOString();
    const newestPerPath = new Map<string, KeptRecord>();
    for (const r of this.records.values()) {
      if (r.path === p || !isSameOrInside(r.path, p) || r.node !== node || r.because !== 'deleted' || r.time < since) continue;
      const seen = newestPerPath.get(r.path);
      if (seen === undefined || newestFirst(r, seen) < 0) newestPerPath.set(r.path, r);
    }
    const children = [...newestPerPath.values()];
    const record: KeptRecord = {
      id: this.newId(formatStamp(at)),
      path: p,
      time: isoNow(at),
      type: 'dir',
      size: children.reduce((sum, c) => sum + (c.type === 'file' ? c.size : 0), 0),
      node,
      because: 'deleted',
      mode,
      mtime: 0,
      hash: null,
      stored: null,
      children: children.map((c) => c.id),
    };
    this.append(record);
    return record;
  }

  /** The versions of `p`, newest first. */
  list(p: string): KeptRecord[] {
    return [...this.records.values()].filter((r) => r.path === p).sort(newestFirst);
  }

  get(id: string): KeptRecord | null {
    return this.records.get(id) ?? null;
  }

  /**
   * Copies the content of a kept file into a fresh temp file under `.systemsync/tmp` (the trash
   * file opened without following links) and returns it with the entry it restores.
   * @throws SyncError VERSION_GONE when the content is missing or is not a regular file.
   */
  async copyOut(r: KeptRecord): Promise<{ tmpAbs: string; entry: FileEntry }> {
    if (r.type !== 'file' || r.stored === null) throw new SyncError('NOT_A_FILE', `version ${r.id} is a directory`);
    const src = await checkPath(this.root, `${RESERVED_DIR}/${TRASH_DIR}/${r.stored}`, { allowReserved: true });
    const tmp = await checkPath(this.root, `${RESERVED_DIR}/tmp/${newTempName('restore')}`, { allowReserved: true, createParents: 0o700 });
    let input: fsp.FileHandle;
    try {
      input = await fsp.open(src.abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    } catch (err) {
      throw new SyncError('VERSION_GONE', `version ${r.id} of ${r.path}: its content is gone from the trash (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
    try {
      const st = await input.stat();
      if (!st.isFile()) throw new SyncError('VERSION_GONE', `version ${r.id} of ${r.path}: not a regular file in the trash`);
      const output = await fsp.open(tmp.abs, 'wx', 0o600);
      const hash = createHash('sha256');
      let size = 0;
      try {
        const buf = Buffer.allocUnsafe(1024 * 1024);
        for (;;) {
          const { bytesRead } = await input.read(buf, 0, buf.length, null);
          if (bytesRead === 0) break;
          hash.update(buf.subarray(0, bytesRead));
          await output.write(buf, 0, bytesRead);
          size += bytesRead;
        }
        await output.sync();
      } finally {
        await output.close();
      }
      await recheckPath(tmp);
      const digest = hash.digest('hex');
      if (r.hash !== null && digest !== r.hash) {
        await fsp.rm(tmp.abs, { force: true });
        throw new SyncError('VERSION_CHANGED', `version ${r.id} of ${r.path}: its content in the trash no longer matches what was kept`);
      }
      return { tmpAbs: tmp.abs, entry: { type: 'file', size, mtime: r.mtime, mode: r.mode, hash: digest } };
    } finally {
      await input.close();
    }
  }

  /**
   * Prunes by `policy` at `now`: removes the trash files of the versions it drops and rewrites
   * the index. A directory's record goes with the policy like any version. Returns how many went.
   */
  async prune(policy: VersionPolicy, now: Date): Promise<number> {
    const all = [...this.records.values()];
    const drop = versionsToPrune(
      all.map((r) => ({ id: r.id, path: r.path, time: Date.parse(r.time), size: r.type === 'file' ? r.size : 0 })),
      policy,
      now.getTime(),
    );
    if (drop.length === 0) return 0;
    for (const id of drop) {
      const r = this.records.get(id)!;
      if (r.stored !== null) {
        try {
          const c = await checkPath(this.root, `${RESERVED_DIR}/${TRASH_DIR}/${r.stored}`, { allowReserved: true });
          const st = fs.lstatSync(c.abs, { throwIfNoEntry: false });
          if (st !== undefined && !st.isDirectory()) fs.unlinkSync(c.abs);
        } catch {
          // already gone, or under a planted link: the record goes anyway, nothing is followed
        }
        this.storedBytes -= r.size;
      }
      this.records.delete(id);
    }
    await this.rewrite();
    await this.removeEmptyDirs();
    return drop.length;
  }

  /** Removes stamp directories (and directories inside them) left empty by pruning. */
  private async removeEmptyDirs(): Promise<void> {
    let trashAbs: string;
    try {
      trashAbs = path.dirname((await checkPath(this.root, `${RESERVED_DIR}/${TRASH_DIR}/x`, { allowReserved: true })).abs);
    } catch {
      return;
    }
    const sweep = (abs: string): boolean => {
      const st = fs.lstatSync(abs, { throwIfNoEntry: false });
      if (st === undefined || !st.isDirectory()) return false;
      let isEmpty = true;
      for (const name of fs.readdirSync(abs)) if (!sweep(path.join(abs, name))) isEmpty = false;
      if (isEmpty && abs !== trashAbs) {
        try {
          fs.rmdirSync(abs);
        } catch {
          return false;
        }
      }
      return isEmpty;
    };
    try {
      sweep(trashAbs);
    } catch {
      // a race with a new version: the next prune sweeps again
    }
  }
}

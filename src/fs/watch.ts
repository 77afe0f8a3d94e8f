/**
 * Live change hints for a synced folder, from @parcel/watcher. Events are hints only: the
 * consumer looks at each hinted path (lstat, hash) and compares with its index; the scan is
 * the truth.
 *
 * Two gaps of @parcel/watcher 2.x (inotify) are covered here:
 * - It reports only the top of a directory tree that appears at once (`mkdir -p a/b/c`, a tree
 *   moved in): every hinted directory is walked and all its descendants are hinted too.
 * - It does not watch the subdirectories of such a tree either: later writes inside `a/b/c` are
 *   never reported. Re-subscribing the root does not help while a subscription is alive (its
 *   directory tree is cached), so a hinted directory that has subdirectories gets a subscription
 *   of its own (which crawls and watches its whole subtree) and is walked again once that is
 *   live. Such extra subscriptions are dropped when their directory goes away.
 */
import { promises as fsp, type Stats } from 'node:fs';
import path from 'node:path';
import watcher from '@parcel/watcher';
import { isReservedPath, type IgnoreMatcher } from '../core/ignore.js';
import { SyncError } from '../core/errors.js';
import { isSameOrInside, RESERVED_DIR } from '../core/paths.js';
import { walkTree } from './scan.js';
import { lstatOrNull } from './stat.js';

export interface FolderWatcher {
  /** Stops watching; no `onHints` call happens after the returned promise resolves. */
  close(): Promise<void>;
}

export interface WatchOptions {
  /** Ignore rules; replace them at runtime with `setIgnore` (when `.syncignore` changes). */
  ignore: IgnoreMatcher;
  /**
   * Folder-relative paths that may have changed (created, modified, deleted), coalesced, each
   * once per call, never "" and never under `.systemsync/`. A deleted directory may be hinted
   * without its children: the consumer checks its index for descendants.
   */
  onHints(paths: string[]): void;
  /** A watcher failure (events may have been lost: the consumer should rescan the folder). */
  onError(err: Error): void;
  /**
   * Coalescing window after the first event of a batch, in ms (default 2). @parcel/watcher already
   * batches: it delivers the first event after 500 ms of quiet at once, later ones after 50 ms of
   * quiet (src/Debounce.cc), so a longer window here only adds latency.
   */
  settleMs?: number;
  /**
   * Called once a burst of at least `burstEvents` events has been quiet for `burstQuietMs`: the
   * kernel's inotify queue (16,384 events by default) may have overflowed during it, and
   * @parcel/watcher drops IN_Q_OVERFLOW without a word. The consumer should rescan the folder.
   */
  onBurstSettled?: (events: number) => void;
  burstEvents?: number;
  burstQuietMs?: number;
}

interface ExtraSubscription {
  sub: watcher.AsyncSubscription;
  ino: number;
}

/**
 * Counts the events of a burst; once a burst of at least `minEvents` has been quiet for
 * `quietMs`, calls `onSettled` with its count.
 */
class BurstCounter {
  private events = 0;
  private timer: NodeJS.Timeout | null = null;
  private isClosed = false;

  constructor(
    private readonly onSettled: (events: number) => void,
    private readonly minEvents: number,
    private readonly quietMs: number,
  ) {}

  count(n: number): void {
    this.events += n;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      const count = this.events;
      this.events = 0;
      if (!this.isClosed && count >= this.minEvents) this.onSettled(count);
    }, this.quietMs);
  }

  close(): void {
    this.isClosed = true;
    if (this.timer !== null) clearTimeout(this.timer);
  }
}

/**
 * The extra subscriptions of hinted directories that have subdirectories (see the file's
 * header), each tied to its directory's inode: dropped when that directory goes or is replaced.
 */
class SubtreeSubscriptions {
  private readonly extra = new Map<string, ExtraSubscription>();

  constructor(
    private readonly root: string,
    private readonly onEvents: watcher.SubscribeCallback,
    private readonly report: (err: unknown) => void,
    private readonly isClosed: () => boolean,
  ) {}

  /** Unsubscribes every directory at or under `rel` that is gone or is another directory now. */
  async dropGoneUnder(rel: string): Promise<void> {
    for (const [dir, x] of [...this.extra]) {
      if (!isSameOrInside(dir, rel)) continue;
      const st = await lstatForHint(path.join(this.root, dir));
      if (st !== null && st.isDirectory() && st.ino === x.ino) continue;
      this.extra.delete(dir);
      await x.sub.unsubscribe().catch(() => undefined);
    }
  }

  /** Subscribes the directory `rel` (whose lstat is `st`) unless it already is. */
  async ensure(rel: string, st: Stats): Promise<void> {
    const existing = this.extra.get(rel);
    if (existing !== undefined && existing.ino === st.ino) return;
    if (existing !== undefined) {
      this.extra.delete(rel);
      await existing.sub.unsubscribe().catch(() => undefined);
    }
    try {
      const sub = await watcher.subscribe(path.join(this.root, rel), this.onEvents);
      if (this.isClosed()) await sub.unsubscribe().catch(() => undefined);
      else this.extra.set(rel, { sub, ino: st.ino });
    } catch (err) {
      // Gone again meanwhile: its delete is hinted anyway. Anything else is worth telling.
      if ((await lstatForHint(path.join(this.root, rel))) !== null) this.report(err);
    }
  }

  async close(): Promise<void> {
    const subs = [...this.extra.values()].map((x) => x.sub);
    this.extra.clear();
    await Promise.all(subs.map((s) => s.unsubscribe().catch(() => undefined)));
  }
}

function toRelative(root: string, abs: string): string | null {
  const rel = path.relative(root, abs);
  // Outside the root is exactly ".." or "../…": a name like "..foo" or "..." is inside it.
  if (rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) return null;
  return path.sep === '/' ? rel : rel.split(path.sep).join('/');
}

/** `lstatOrNull`, where unreadable counts as gone too: the consumer of a hint finds out when it looks. */
function lstatForHint(abs: string): Stats | null {
  try {
    return lstatOrNull(abs);
  } catch {
    return null;
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** What `hintsOf` works with: the watch's root, ignore rules, subtree subscriptions and error report. */
interface HintContext {
  root: string;
  /** The rules in force now (`setIgnore` may replace them during a batch). */
  ignore(): IgnoreMatcher;
  subtrees: SubtreeSubscriptions;
  report(err: unknown): void;
  isClosed(): boolean;
}

/**
 * The hints for a batch of changed paths: each path not ignored, and every descendant of a
 * directory among them (a directory with subdirectories gets its own subscription and is walked
 * again once that is live). Stops early (with what it has) once the watch is closed.
 */
async function hintsOf(batch: readonly string[], ctx: HintContext): Promise<Set<string>> {
  const { root, subtrees, report } = ctx;
  /** Descendants of `rel` (not ignored) and whether any of them is a directory. */
  const descendants = async (rel: string, into: Set<string>): Promise<boolean> => {
    let hasSubdir = false;
    for await (const item of walkTree(root, { ignore: ctx.ignore(), under: rel, onProblem: ({ error }) => report(error) })) {
      into.add(item.path);
      if (item.type === 'dir') hasSubdir = true;
    }
    return hasSubdir;
  };
  const hints = new Set<string>();
  for (const [i, rel] of batch.entries()) {
    if (ctx.isClosed()) return hints;
    if (i > 0 && i % 512 === 0) await new Promise((resolve) => setImmediate(resolve));
    const st = lstatForHint(path.join(root, rel));
    if (st === null) {
      if (!ctx.ignore().isIgnored(rel, false)) hints.add(rel);
      await subtrees.dropGoneUnder(rel);
      continue;
    }
    const isDir = st.isDirectory();
    if (ctx.ignore().isIgnored(rel, isDir)) continue;
    hints.add(rel);
    if (!isDir) continue;
    try {
      if (await descendants(rel, hints)) {
        await subtrees.ensure(rel, st);
        // Walk again now that the whole subtree is watched: catches what changed meanwhile.
        await descendants(rel, hints);
      }
    } catch (err) {
      report(err);
    }
  }
  return hints;
}

/**
 * Watches `root` (absolute) and reports hints through `opts.onHints`. Resolves once the watch
 * is live: any change made after that is hinted. `.systemsync/` is never watched nor hinted;
 * ignored paths are not hinted (a deleted path is matched as a file, so a deleted directory that
 * only a directory pattern ignores may still be hinted). The root itself is never hinted.
 * @throws SyncError 'WATCH_FAILED' when the root cannot be watched.
 */
export async function watchFolder(
  root: string,
  opts: WatchOptions,
): Promise<FolderWatcher & { setIgnore(m: IgnoreMatcher): void }> {
  const settleMs = opts.settleMs ?? 2;
  let ignore = opts.ignore;
  let closed = false;
  let timer: NodeJS.Timeout | null = null;
  let flushing: Promise<void> | null = null;
  const pending = new Set<string>();

  const report = (err: unknown): void => {
    if (closed) return;
    try {
      opts.onError(asError(err));
    } catch {
      // The consumer's handler failed: nothing more we can do with it.
    }
  };

  const burst = opts.onBurstSettled === undefined ? null : new BurstCounter(opts.onBurstSettled, opts.burstEvents ?? 4096, opts.burstQuietMs ?? 500);

  const onEvents = (err: Error | null, events: watcher.Event[]): void => {
    if (closed) return;
    if (err !== null) report(new SyncError('WATCH_FAILED', `watching ${root}: ${err.message}`, { cause: err }));
    burst?.count(events.length);
    for (const event of events) {
      const rel = toRelative(root, event.path);
      if (rel !== null && !isReservedPath(rel)) pending.add(rel);
    }
    schedule();
  };

  const subtrees = new SubtreeSubscriptions(root, onEvents, report, () => closed);

  const schedule = (): void => {
    if (closed || timer !== null || flushing !== null || pending.size === 0) return;
    timer = setTimeout(() => {
      timer = null;
      flushing = flush()
        .catch(report)
        .finally(() => {
          flushing = null;
          schedule();
        });
    }, settleMs);
  };

  const flush = async (): Promise<void> => {
    const batch = [...pending];
    pending.clear();
    const hints = await hintsOf(batch, { root, ignore: () => ignore, subtrees, report, isClosed: () => closed });
    if (closed || hints.size === 0) return;
    try {
      opts.onHints([...hints]);
    } catch (err) {
      report(err);
    }
  };

  let rootSub: watcher.AsyncSubscription;
  try {
    rootSub = await watcher.subscribe(root, onEvents, { ignore: [path.join(root, RESERVED_DIR)] });
  } catch (cause) {
    throw new SyncError('WATCH_FAILED', `cannot watch ${root}: ${asError(cause).message}`, { cause });
  }

  return {
    setIgnore(m: IgnoreMatcher): void {
      ignore = m;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      burst?.close();
      await flushing?.catch(() => undefined);
      await Promise.all([rootSub.unsubscribe().catch(() => undefined), subtrees.close()]);
    },
  };
}

/**
 * Records the state of `root` in `snapshotFile` (its parent directory is created), so that
 * `changesSince` can list what changed while nothing watched. `.systemsync/` is left out.
 */
export async function writeSnapshot(root: string, snapshotFile: string): Promise<void> {
  await fsp.mkdir(path.dirname(snapshotFile), { recursive: true, mode: 0o700 });
  await watcher.writeSnapshot(root, snapshotFile, { ignore: [path.join(root, RESERVED_DIR)] });
  // @parcel/watcher writes it 0644; state files are the owner's only.
  await fsp.chmod(snapshotFile, 0o600);
}

/**
 * Folder-relative paths that changed (created, modified, deleted) in `root` since
 * `snapshotFile` was written, sorted, without ignored paths, `.systemsync/` and the root.
 * Null when there is no snapshot file (the caller then does a full scan).
 */
export async function changesSince(root: string, snapshotFile: string, ignore: IgnoreMatcher): Promise<string[] | null> {
  if ((await lstatForHint(snapshotFile)) === null) return null;
  const events = await watcher.getEventsSince(root, snapshotFile, { ignore: [path.join(root, RESERVED_DIR)] });
  const out = new Set<string>();
  for (const event of events) {
    const rel = toRelative(root, event.path);
    if (rel === null || isReservedPath(rel) || out.has(rel)) continue;
    const st = event.type === 'delete' ? null : await lstatForHint(event.path);
    if (!ignore.isIgnored(rel, st?.isDirectory() ?? false)) out.add(rel);
  }
  return [...out].sort();
}

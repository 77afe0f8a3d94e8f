/**
 * What both roles do to a synced folder, written once (as Syncthing's folder types embed one
 * `folder`): its lock, its ignore rules (the config's patterns and `.syncignore`), its watcher,
 * the presence check that pauses it and resumes it when it comes back, and reading one path
 * without going through a symlinked parent. The client's folder (client.ts) and the server's
 * (server.ts) extend it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { createIgnoreMatcher, type IgnoreMatcher } from '../core/ignore.js';
import type { StatFingerprint } from '../core/types.js';
import { isReachedThroughLink } from '../fs/safefs.js';
import { readLocal, type LocalState } from '../fs/scan.js';
import { watchFolder, type FolderWatcher } from '../fs/watch.js';
import { SerialLock } from '../node/lock.js';
import type { Logger } from '../node/log.js';
import { checkFolderAndMakeMarker } from './presence.js';

/** What the watcher calls back with (see fs/watch.ts). */
export interface WatchHandlers {
  onHints(paths: string[]): void;
  onError(err: Error): void;
  onBurstSettled(events: number): void;
}

type Watcher = FolderWatcher & { setIgnore(m: IgnoreMatcher): void };

/**
 * Read `p` (lstat, and hash when the fingerprint moved): null when it is absent, or when it lies
 * under a symlinked (or non-directory) parent, which puts it outside the folder: never read
 * through one.
 */
export async function readInFolder(
  root: string,
  p: string,
  options: { knownStat?: StatFingerprint | null; knownHash?: string | null; deferHash?: (fp: StatFingerprint) => boolean } = {},
): Promise<LocalState | null | 'unsupported'> {
  return (await isReachedThroughLink(root, p)) ? null : readLocal(root, p, options);
}

export abstract class FolderBase {
  /** One step at a time on this folder: a push batch, a pull page, a commit, a local scan. */
  readonly lock = new SerialLock();
  private ignoreRules: IgnoreMatcher;
  private watcher: Watcher | null = null;
  private pauseReason: string | null = null;
  private resuming: Promise<void> | null = null;

  constructor(
    readonly name: string,
    readonly root: string,
    protected readonly logger: Logger,
    private readonly patterns: string[],
  ) {
    this.ignoreRules = createIgnoreMatcher(patterns, null);
  }

  /** Why the folder is paused (root or marker gone, reserved directory unsafe), or null. */
  get paused(): string | null {
    return this.pauseReason;
  }

  /** The ignore rules in force: the config's patterns and the folder's `.syncignore`. */
  get ignore(): IgnoreMatcher {
    return this.ignoreRules;
  }

  isIgnored(p: string, isDir: boolean): boolean {
    return this.ignoreRules.isIgnored(p, isDir);
  }

  /** Whether this folder has synced before (a base index, a change log): a folder that has not gets its marker made. */
  protected abstract hasHistory(): boolean;

  /**
   * The folder came back after a pause: watch it afresh (the old watcher may be on a directory
   * that is gone) and catch up with what changed meanwhile.
   */
  protected abstract whenBack(): Promise<void>;

  /** Whether a folder that comes back is resumed now (the server's waits for its first start). */
  protected mayResume(): boolean {
    return true;
  }

  /**
   * Pause when the root or its marker is gone (or a reserved directory is unsafe); make the
   * marker for a folder new to us; resume (`whenBack`) when a paused folder is back. Returns why
   * it is paused, or null.
   */
  async refreshPresence(): Promise<string | null> {
    const reason = await checkFolderAndMakeMarker(this.root, this.hasHistory(), this.pauseReason, this.logger);
    const wasPaused = this.pauseReason !== null;
    this.pauseReason = reason;
    if (wasPaused && reason === null && this.mayResume()) void this.resume();
    return reason;
  }

  private resume(): Promise<void> {
    this.resuming ??= this.whenBack()
      .catch((err: unknown) => this.logger.error(`resume: ${(err as Error).message}`))
      .finally(() => (this.resuming = null));
    return this.resuming;
  }

  /** Read `.syncignore` again and give the new rules to the watcher. */
  protected async loadSyncignore(): Promise<void> {
    const text = await fs.readFile(path.join(this.root, '.syncignore'), 'utf8').catch(() => null);
    this.ignoreRules = createIgnoreMatcher(this.patterns, text);
    this.watcher?.setIgnore(this.ignoreRules);
  }

  /** Watch the folder (closing any watcher it had) with the ignore rules in force. */
  protected async watch(handlers: WatchHandlers): Promise<void> {
    await this.closeWatcher();
    this.watcher = await watchFolder(this.root, { ignore: this.ignoreRules, ...handlers });
  }

  protected async closeWatcher(): Promise<void> {
    await this.watcher?.close();
    this.watcher = null;
  }
}

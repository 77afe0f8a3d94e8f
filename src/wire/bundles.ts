/**
 * Small files travel in bundles: many contents concatenated into one temp file, moved by one SFTP
 * transfer instead of an open, a write or read, and a close each (per-file SFTP requests would
 * dominate the CPU of syncing many small files). This file holds the parts that need no disk or
 * socket: how files are grouped, and the prefetcher that fetches a page's bundles ahead of the
 * code that applies its changes one by one.
 */

/**
 * Splits `items`, in order, into groups of at most `maxItems` whose sizes add up to at most
 * `maxBytes` (an item larger than `maxBytes` on its own makes a group of one).
 */
export function groupBySize<T>(items: readonly T[], sizeOf: (item: T) => number, maxItems: number, maxBytes: number): T[][] {
  const groups: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (current.length > 0 && (current.length >= maxItems || bytes + size > maxBytes)) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

/** One file wanted from a bundle: `key` names it to `take`. */
export interface WantedFile {
  key: number;
  path: string;
  hash: string;
}

/**
 * Fetches the contents of a list of files a bundle at a time, at most `ahead` bundles beyond the
 * one being consumed, and hands each content out once (`take`), so memory stays at a few bundles.
 * `fetchGroup` returns the contents it could get, checked against their hashes, by key; a failed
 * fetch counts as empty (the caller then fetches those files one by one).
 */
export class BundlePrefetcher {
  private readonly groups: WantedFile[][];
  private readonly groupOf = new Map<number, number>();
  private readonly fetched: Array<Promise<Map<number, Buffer>> | undefined> = [];

  constructor(
    wanted: readonly WantedFile[],
    sizeOf: (file: WantedFile) => number,
    limits: { maxFiles: number; maxBytes: number },
    private readonly fetchGroup: (group: WantedFile[]) => Promise<Map<number, Buffer>>,
    private readonly ahead = 2,
  ) {
    this.groups = groupBySize(wanted, sizeOf, limits.maxFiles, limits.maxBytes);
    this.groups.forEach((group, i) => group.forEach((file) => this.groupOf.set(file.key, i)));
    this.startThrough(Math.min(this.ahead, this.groups.length) - 1);
  }

  /** The content fetched for `key`, or null (not wanted, or not in its bundle). Each key once. */
  async take(key: number): Promise<Buffer | null> {
    const index = this.groupOf.get(key);
    if (index === undefined) return null;
    this.groupOf.delete(key);
    this.startThrough(index + this.ahead);
    const contents = await (this.fetched[index] as Promise<Map<number, Buffer>>);
    const content = contents.get(key) ?? null;
    contents.delete(key);
    return content;
  }

  private startThrough(last: number): void {
    for (let i = 0; i <= Math.min(last, this.groups.length - 1); i++) {
      this.fetched[i] ??= this.fetchGroup(this.groups[i] as WantedFile[]).catch(() => new Map<number, Buffer>());
    }
  }
}

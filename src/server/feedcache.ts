/**
 * The hub's fan-out of one folder's change feed, so that a client costs the hub no more than its
 * cursor: one `changed` line per new head, serialised once for every client and carrying the
 * new changes inline (a client at the previous head needs no `changes` request), and `changes`
 * pages served from one cache shared by all clients (validated and serialised once per page).
 */
import type { Change } from '../core/types.js';
import type { ChangeLog } from './changelog.js';
import { MAX_INLINE_CHANGES, PreparedResult, prepareNotification, type ChangedParams } from '../rpc.js';

/** Pages kept at once; a new stamp (head, durable head or floor moved) empties the cache. */
const MAX_CACHED_PAGES = 64;

export class FeedCache {
  private stamp = '';
  private readonly pages = new Map<string, PreparedResult>();
  /** The head the last `changed` line announced: the next one carries the changes after it. */
  private announced: number;

  constructor(
    private readonly folder: string,
    private readonly log: ChangeLog,
    durableHead: number,
    /** False for a change that must not go on the wire (it is left out of pages and lines). */
    private readonly isSendable: (change: Change) => boolean = () => true,
  ) {
    this.announced = durableHead;
  }

  /** The answer to `changes(after, limit)`: versions after `after` up to the durable head. */
  page(after: number, limit: number, durableHead: number): PreparedResult {
    const stamp = `${this.log.head}:${durableHead}:${this.log.floor}`;
    if (stamp !== this.stamp) {
      this.pages.clear();
      this.stamp = stamp;
    }
    const key = `${after}:${limit}`;
    let prepared = this.pages.get(key);
    if (prepared === undefined) {
      const page = this.log.changesAfter(after, limit);
      prepared = PreparedResult.of('changes', { ...page, changes: page.changes.filter((c) => c.seq <= durableHead && this.isSendable(c)) });
      if (this.pages.size >= MAX_CACHED_PAGES) this.pages.clear();
      this.pages.set(key, prepared);
    }
    return prepared;
  }

  /**
   * The `changed` line announcing `durableHead`, with the changes since the last announced head
   * inline when they are few enough to be complete. Call once per head, for all clients.
   */
  changedLine(durableHead: number): string {
    const params: ChangedParams = { folder: this.folder, head: durableHead };
    if (durableHead > this.announced) {
      const page = this.log.changesAfter(this.announced, MAX_INLINE_CHANGES);
      if (!page.reset && page.changes.length < MAX_INLINE_CHANGES) {
        params.after = this.announced;
        params.changes = page.changes.filter((c) => c.seq <= durableHead && this.isSendable(c));
      }
      this.announced = durableHead;
    }
    return prepareNotification('changed', params);
  }

  /** No client to tell: the next line carries only what comes after `durableHead`. */
  skipTo(durableHead: number): void {
    if (durableHead > this.announced) this.announced = durableHead;
  }
}

/**
 * Byte budgets for RPC messages. A message is one line of JSON, and a peer drops a connection
 * whose line passes DEFAULT_MAX_LINE_BYTES (8 MiB), so a page bounded by count alone can be cut
 * off forever: 170 symlinks whose 4 KiB names and targets are control characters (each escaped
 * to six bytes, `\u0001`) already pass 8 MiB. Every paged result and every batched request is
 * bounded by its JSON size as well, at half the line limit (room for the envelope and for
 * whatever a field adds around the items).
 */
import { DEFAULT_MAX_LINE_BYTES } from '../rpc.js';

/** The most JSON bytes a page of items (changes, ops, results) may take. */
export const MAX_PAGE_BYTES = DEFAULT_MAX_LINE_BYTES / 2;

/** Bytes of `value` as JSON on the wire (UTF-8), plus one for the comma that separates items. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value), 'utf8') + 1;
}

/**
 * Tracks how many bytes a page holds so far. `fits(item)` is true, and counts the item, while
 * the page stays within `maxBytes`; the first item always fits (a single item is bounded by the
 * schema: paths and targets of at most 4096 bytes), so a page always makes progress.
 */
export class PageBudget {
  private used = 0;
  private items = 0;

  constructor(private readonly maxBytes = MAX_PAGE_BYTES) {}

  fits(item: unknown): boolean {
    const size = jsonBytes(item);
    if (this.items > 0 && this.used + size > this.maxBytes) return false;
    this.used += size;
    this.items++;
    return true;
  }

  /** Counts an item that goes on the page whatever its size (it cannot be left out). */
  count(item: unknown): void {
    this.used += jsonBytes(item);
    this.items++;
  }

  /** Bytes counted so far. */
  get bytes(): number {
    return this.used;
  }
}

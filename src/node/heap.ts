/**
 * Giving the heap of bulk work back once a daemon is quiet again.
 *
 * A daemon's live heap is small (≈ 300 B per indexed file: the packed records and their path
 * keys), but bulk work (a first pull of 100,000 files, a start-up scan) makes garbage fast, and V8
 * lets its old generation grow to up to 4 × the live size between full collections. Once the work
 * stops, nothing allocates, no collection comes, and the heap stays at its high-water mark until
 * V8's memory reducer happens to notice the quiet (seconds to minutes later, or not at all).
 * Measured at 100,000 files (bench/RESULTS.md): a client 2 s after its first pull held 100–170 MiB
 * of heap for 30 MiB of live data.
 *
 * So the daemon looks every second: when V8 holds `growthBytes` (16 MiB) more heap than right
 * after the last such collection, and `heapUsed` has not moved between two looks (nothing is
 * being allocated: the work is over, or waits), it runs one full collection. That costs one pause of a few tens of milliseconds per
 * 100,000 indexed files, only when the daemon is quiet, and at most once per burst of growth.
 *
 * V8 flags were measured too and are not set: `--optimize-for-size` (old generation grows by at
 * most 1.3 × between collections) halved RSS per file but cost ~50 % more CPU during a 100,000-file pull, and
 * `--semi-space-growth-factor=1` (a young generation of 2 × 1 MiB) promoted more garbage into the
 * old generation and made things worse.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

export interface HeapReading {
  /** Bytes of V8 heap in use (live and not yet collected). */
  used: number;
  /** Bytes of V8 heap V8 holds (committed). */
  total: number;
}

export interface HeapTrimmerOptions {
  /** How often to look (ms). */
  intervalMs?: number;
  /** Collect only once the heap holds this much more than right after the last collection (or this much, before the first). */
  growthBytes?: number;
  /** `used` moving less than this between two looks means nothing is being allocated. */
  quietBytes?: number;
  /** Told of each collection. */
  onCollect?: (before: HeapReading, after: HeapReading, ms: number) => void;
}

const MIB = 1024 * 1024;

function readHeap(): HeapReading {
  const { used_heap_size: used, total_heap_size: total } = v8.getHeapStatistics();
  return { used, total };
}

let fullCollection: (() => void) | null | undefined;

/**
 * V8's full collection (`gc()`), taken from a fresh context while `--expose-gc` is on for a moment,
 * or null where that is refused. The flag is turned off again: no other context gets `gc`.
 */
export function fullCollector(): (() => void) | null {
  if (fullCollection !== undefined) return fullCollection;
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as unknown;
    fullCollection = typeof gc === 'function' ? () => (gc as () => void)() : null;
  } catch {
    fullCollection = null;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
  return fullCollection;
}

export class HeapTrimmer {
  private readonly intervalMs: number;
  private readonly growthBytes: number;
  private readonly quietBytes: number;
  private last: HeapReading | null = null;
  /** `total` after the last collection (0 before the first): growth is counted from here. */
  private floor = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly collect: () => void,
    private readonly options: HeapTrimmerOptions = {},
    private readonly read: () => HeapReading = readHeap,
  ) {
    this.intervalMs = options.intervalMs ?? 1000;
    this.growthBytes = options.growthBytes ?? 16 * MIB;
    this.quietBytes = options.quietBytes ?? 1 * MIB;
  }

  /** One look; returns whether it collected. */
  check(): boolean {
    const now = this.read();
    const last = this.last;
    this.last = now;
    if (last === null) return false;
    if (now.total < this.floor) this.floor = now.total; // V8 gave some back itself
    const quiet = Math.abs(now.used - last.used) < this.quietBytes;
    if (!quiet || now.total - this.floor < this.growthBytes) return false;
    const t0 = performance.now();
    this.collect();
    const after = this.read();
    this.options.onCollect?.(now, after, performance.now() - t0);
    this.floor = after.total;
    this.last = after;
    return true;
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

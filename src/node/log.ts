/**
 * One line per event: `2026-11-23T14:05:01.123Z INFO  [docs] pushed a/b.txt`.
 * Written to stderr and to `<state_dir>/systemsync.log` (mode 0600), rotated at a size cap.
 */
import fs from 'node:fs';
import { escapeControls } from '../core/text.js';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  /** A logger whose lines carry `[scope]`, e.g. the folder name. */
  child(scope: string): Logger;
  isEnabled(level: LogLevel): boolean;
}

export interface LogSinkOptions {
  level: LogLevel;
  file: string | null;
  stderr: boolean;
  /** Rotate when the file passes this size; keeps `file.1` … `file.<keep>`. */
  maxBytes?: number;
  keep?: number;
}

class LogSink {
  private fd: number | null = null;
  private size = 0;
  constructor(readonly options: LogSinkOptions) {
    if (options.file !== null) this.open(options.file);
  }

  private open(file: string): void {
    this.fd = fs.openSync(file, 'a', 0o600);
    fs.fchmodSync(this.fd, 0o600);
    this.size = fs.fstatSync(this.fd).size;
  }

  private rotate(file: string): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    const keep = this.options.keep ?? 3;
    for (let i = keep - 1; i >= 1; i--) {
      try {
        fs.renameSync(`${file}.${i}`, `${file}.${i + 1}`);
      } catch {
        /* that generation does not exist yet */
      }
    }
    fs.renameSync(file, `${file}.1`);
    this.open(file);
  }

  write(line: string): void {
    if (this.options.stderr) process.stderr.write(line);
    const file = this.options.file;
    if (file === null || this.fd === null) return;
    try {
      if (this.size + line.length > (this.options.maxBytes ?? 10 * 1024 * 1024)) this.rotate(file);
      fs.writeSync(this.fd, line);
      this.size += Buffer.byteLength(line);
    } catch (err) {
      if (this.options.stderr) process.stderr.write(`log file ${file}: ${(err as Error).message}\n`);
    }
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function makeLogger(sink: LogSink, scope: string | null): Logger {
  const emit = (level: LogLevel, message: string): void => {
    if (RANK[level] > RANK[sink.options.level]) return;
    const tag = level.toUpperCase().padEnd(5);
    const where = scope === null ? '' : `[${escapeControls(scope)}] `;
    // One event, one line, nothing a terminal acts on: a newline, ESC or CSI inside a file name
    // or a peer's error text must neither split the record nor move the cursor.
    const flat = escapeControls(message);
    sink.write(`${new Date().toISOString()} ${tag} ${where}${flat}\n`);
  };
  return {
    error: (m) => emit('error', m),
    warn: (m) => emit('warn', m),
    info: (m) => emit('info', m),
    debug: (m) => emit('debug', m),
    child: (s) => makeLogger(sink, scope === null ? s : `${scope}/${s}`),
    isEnabled: (level) => RANK[level] <= RANK[sink.options.level],
  };
}

export function createLogger(options: LogSinkOptions): Logger & { close(): void } {
  const sink = new LogSink(options);
  return Object.assign(makeLogger(sink, null), { close: () => sink.close() });
}

/** Quote a folder-relative path for a log line so spaces and odd characters stay visible. */
export function showPath(path: string): string {
  return /^[\w./@+-]+$/.test(path) ? path : JSON.stringify(path);
}

export interface ProgressOptions {
  logger: Logger;
  /** Where a TTY progress bar is drawn; null when stderr is not a terminal. */
  tty: NodeJS.WriteStream | null;
  /** Show nothing for transfers shorter than this. */
  afterMs?: number;
  /** Without a TTY, at most one log line per this many ms. */
  everyMs?: number;
}

/**
 * Progress of one long transfer: after `afterMs`, a bar redrawn in place on a TTY, or else a
 * log line at most every `everyMs`.
 */
export function createProgress(label: string, total: number, options: ProgressOptions): { update(done: number): void; end(): void } {
  const started = Date.now();
  const afterMs = options.afterMs ?? 2000;
  const everyMs = options.everyMs ?? 5000;
  let lastShown = 0;
  let drewBar = false;
  const shown = escapeControls(label);
  const describe = (done: number, now: number): string => {
    const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
    const rate = done / Math.max(0.001, (now - started) / 1000) / (1024 * 1024);
    return `${shown}: ${pct}% (${done}/${total} bytes, ${rate.toFixed(1)} MiB/s)`;
  };
  return {
    update(done) {
      const now = Date.now();
      if (now - started < afterMs) return;
      if (options.tty !== null) {
        if (now - lastShown < 200) return;
        lastShown = now;
        const width = 24;
        const filled = total > 0 ? Math.min(width, Math.round((done / total) * width)) : width;
        options.tty.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${describe(done, now)}\x1b[K`);
        drewBar = true;
        return;
      }
      if (now - lastShown < everyMs) return;
      lastShown = now;
      options.logger.info(describe(done, now));
    },
    end() {
      if (drewBar) options.tty?.write('\n');
    },
  };
}

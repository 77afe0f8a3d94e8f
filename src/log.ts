/**
 * One line per event: `2026-11-23T14:05:01.123Z INFO  [docs] pushed a/b.txt`.
 * Written to stderr and to `<state_dir>/systemsync.log` (mode 0600), rotated at a size cap.
 */
import fs from 'node:fs';

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
    const where = scope === null ? '' : `[${scope}] `;
    // One event, one line: a newline inside a file name must not split the record.
    const flat = message.replace(/\n/g, '\\n');
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

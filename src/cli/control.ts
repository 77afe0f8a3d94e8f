/**
 * The CLI side of the control socket: ask the running daemon, and format its answers for people.
 */
import net from 'node:net';
import type { Config } from './config.js';
import { createRpcPeer, type MethodName, type ParamsOf, type ResultOf } from '../rpc.js';
import { controlSocketPath, type StatusReport, type TaskInfo } from '../node.js';
import { SystemsyncError } from '../core/errors.js';
import { escapeControls } from '../core/text.js';

/** Nothing answers on the control socket. code 'NOT_RUNNING'. */
export class DaemonNotRunningError extends SystemsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NOT_RUNNING', message, options);
  }
}

/** Send one request to the daemon of this config and return its result. */
export async function askDaemon<T>(config: Config, method: 'status' | 'tasks' | 'retry' | 'stop', timeoutMs = 10_000): Promise<T> {
  return askDaemonWith(config, method, {} as ParamsOf<typeof method>, timeoutMs) as Promise<T>;
}

/** The same, for methods that take params (versions, restore, conflicts, resolve). */
export async function askDaemonWith<M extends MethodName>(config: Config, method: M, params: ParamsOf<M>, timeoutMs = 10_000): Promise<ResultOf<M>> {
  const socketPath = controlSocketPath(config);
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(socketPath);
    s.once('connect', () => resolve(s));
    s.once('error', (err) =>
      reject(new DaemonNotRunningError(`no daemon answers on ${socketPath} (${(err as NodeJS.ErrnoException).code ?? err.message}): is 'systemsync monitor' running with this config?`, { cause: err })),
    );
  });
  const peer = createRpcPeer(socket, { context: null, handlers: {} });
  try {
    return await peer.request(method, params, timeoutMs);
  } finally {
    peer.close();
  }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function table(header: string[], cells: string[][]): string {
  const rows = cells.map((r) => r.map(escapeControls));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

function bar(done: number, total: number, width = 20): string {
  const fraction = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.floor(fraction * 100)}%`;
}

/** A compact human-readable status. */
export function formatStatus(report: StatusReport, isTty = false): string {
  let out = `${report.role} ${escapeControls(report.node)} (pid ${report.pid}, systemsync ${escapeControls(report.version ?? '?')}) — ${report.connected ? 'connected' : 'not connected'}\n\n`;
  const hasVersions = report.folders.some((f) => f.versions !== undefined);
  out += table(
    ['FOLDER', 'FILES', 'SIZE', 'PUSH', 'PULL', 'CONFLICTS', 'FAILED', ...(hasVersions ? ['VERSIONS'] : []), 'LAST SYNC', 'STATE'],
    report.folders.map((f) => [
      f.name,
      String(f.files),
      formatBytes(f.bytes),
      String(f.pendingPush),
      String(f.pendingPull),
      String(f.conflicts),
      String(f.failed),
      ...(hasVersions ? [f.versions === undefined ? '-' : `${f.versions.count} (${formatBytes(f.versions.bytes)})`] : []),
      f.lastSync ?? 'never',
      f.paused === null ? 'ok' : `PAUSED: ${f.paused}`,
    ]),
  );
  if (report.transfers.length > 0) {
    out += '\n' + table(
      ['TRANSFER', 'FOLDER', 'PATH', 'PROGRESS', 'DONE', 'TOTAL', 'RATE'],
      report.transfers.map((t) => [
        t.direction,
        t.folder,
        t.path,
        isTty ? bar(t.done, t.total) : `${t.total > 0 ? Math.floor((t.done / t.total) * 100) : 100}%`,
        formatBytes(t.done),
        formatBytes(t.total),
        `${formatBytes(t.rate)}/s`,
      ]),
    );
  }
  if (report.clients !== undefined) {
    out += '\n' + table(
      ['CLIENT', 'STATE', 'LAST SEEN', 'BEHIND'],
      report.clients.map((c) => [c.name, c.connected ? 'connected' : 'offline', c.lastSeen ?? 'never', String(c.behind)]),
    );
  }
  return out;
}

export function formatTasks(tasks: TaskInfo[]): string {
  if (tasks.length === 0) return 'no queued or failed tasks\n';
  return table(
    ['STATE', 'OP', 'FOLDER', 'PATH', 'ATTEMPTS', 'SINCE', 'ERROR'],
    tasks.map((t) => [
      t.state + (t.permanent ? ' (permanent)' : ''),
      t.op,
      t.folder,
      t.path,
      String(t.attempts),
      t.since || '-',
      t.lastError ?? '',
    ]),
  );
}

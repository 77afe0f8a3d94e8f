/**
 * `status --watch`: on a terminal, the status redrawn every second with each transfer's bytes,
 * rate and time left; piped, one line each time something other than a byte count changes.
 */
import type { Config } from './config.js';
import { escapeControls } from '../core/text.js';
import type { StatusReport, TransferStatus } from '../node.js';
import { askDaemon, formatBytes, formatStatus } from './control.js';

/** Rate and time left of the transfers, from two successive samples. */
export class TransferRates {
  private previous = new Map<string, { done: number; at: number }>();

  /** Bytes per second over the last interval (the average since its start for a new one) and seconds left (null: unknown). */
  update(transfers: TransferStatus[], now: number): Map<string, { rate: number; eta: number | null }> {
    const out = new Map<string, { rate: number; eta: number | null }>();
    const next = new Map<string, { done: number; at: number }>();
    for (const t of transfers) {
      const key = keyOf(t);
      const before = this.previous.get(key);
      const rate = before !== undefined && now > before.at ? Math.max(0, ((t.done - before.done) * 1000) / (now - before.at)) : t.rate;
      // A file that grew while it was sent has no honest time left.
      out.set(key, { rate, eta: rate > 0 && t.done <= t.total ? Math.ceil((t.total - t.done) / rate) : null });
      next.set(key, { done: t.done, at: now });
    }
    this.previous = next;
    return out;
  }
}

function keyOf(t: TransferStatus): string {
  return `${t.direction}\0${t.folder}\0${t.path}\0${t.startedAt}`;
}

export function formatEta(seconds: number | null): string {
  if (seconds === null) return '?';
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
}

/** The whole screen: the status table, then the transfers with rate and time left. */
export function renderScreen(report: StatusReport, rates: Map<string, { rate: number; eta: number | null }>, at: Date): string {
  const withRates = { ...report, transfers: report.transfers.map((t) => ({ ...t, rate: Math.round(rates.get(keyOf(t))?.rate ?? t.rate) })) };
  let out = `${at.toISOString().replace(/\.\d{3}Z$/, 'Z')}  (every second; Ctrl-C to quit)\n`;
  out += formatStatus(withRates, true);
  if (report.transfers.length > 0) {
    out += '\n' + report.transfers.map((t) => `ETA ${t.direction} ${escapeControls(t.path)}: ${formatEta(rates.get(keyOf(t))?.eta ?? null)}`).join('\n') + '\n';
  }
  return out;
}

/**
 * One line for a pipe. `key` leaves out what moves all the time (bytes done, rate, time left,
 * memory), so that a line is printed when the state changes, not every second.
 */
export function statusLine(report: StatusReport, rates: Map<string, { rate: number; eta: number | null }>, at: Date): { line: string; key: string } {
  const folders = report.folders.map((f) => `${escapeControls(f.name)}: push ${f.pendingPush} pull ${f.pendingPull} conflicts ${f.conflicts} failed ${f.failed}${f.paused !== null ? ` PAUSED (${escapeControls(f.paused)})` : ''}`);
  const clients = (report.clients ?? []).map((c) => `${escapeControls(c.name)} ${c.connected ? 'connected' : 'offline'} behind ${c.behind}`);
  const transfers = report.transfers.map((t) => `${t.direction} ${t.folder}/${escapeControls(t.path)}`);
  const key = [report.connected, ...folders, ...clients, ...transfers].join(' | ');
  const live = report.transfers.map((t) => {
    const r = rates.get(keyOf(t));
    const pct = t.total > 0 ? Math.min(100, Math.floor((t.done / t.total) * 100)) : 100;
    return `${t.direction} ${t.folder}/${escapeControls(t.path)} ${pct}% ${formatBytes(t.done)}/${formatBytes(t.total)} ${formatBytes(Math.round(r?.rate ?? t.rate))}/s ETA ${formatEta(r?.eta ?? null)}`;
  });
  const parts = [`${report.connected ? 'connected' : 'not connected'}`, ...folders, ...(clients.length > 0 ? [`clients: ${clients.join(', ')}`] : []), ...(live.length > 0 ? [`transfers: ${live.join(', ')}`] : [])];
  return { line: `${at.toISOString().replace(/\.\d{3}Z$/, 'Z')} ${parts.join('; ')}`, key };
}

/** Runs until interrupted (SIGINT) or, with `maxTicks`, for that many seconds. */
export async function watchStatus(config: Config, isTty: boolean, write: (s: string) => void, maxTicks = Infinity): Promise<number> {
  const rates = new TransferRates();
  let lastKey: string | null = null;
  for (let tick = 0; tick < maxTicks; tick++) {
    const now = new Date();
    let text: string;
    let key: string;
    try {
      const report = await askDaemon<StatusReport>(config, 'status');
      const r = rates.update(report.transfers, now.getTime());
      if (isTty) {
        text = renderScreen(report, r, now);
        key = text;
      } else {
        ({ line: text, key } = statusLine(report, r, now));
        text += '\n';
      }
    } catch (err) {
      text = `${now.toISOString().replace(/\.\d{3}Z$/, 'Z')} ${escapeControls((err as Error).message)}\n`;
      key = 'error';
    }
    if (isTty) write(`\x1b[H\x1b[2J${text}`);
    else if (key !== lastKey) write(text);
    lastKey = key;
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 1000 - (Date.now() - now.getTime()))));
  }
  return 0;
}

/**
 * Issue 12 finding 9: one escaping function for every name or remote text systemsync prints,
 * and the printers that use it (log lines, progress, `status`, `tasks`).
 */
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { escapeControls, escapeControlsKeepLines, escapeJsonControls } from '../src/core/text.js';
import { createLogger, createProgress, showPath } from '../src/node/log.js';
import { formatStatus, formatTasks } from '../src/cli/control.js';
import type { StatusReport, TaskInfo } from '../src/node.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';
import { RAW_CONTROL } from './helpers/controls.js';

afterAll(cleanupTempDirs);

/** A name that clears the screen, sets the title, rewrites the line and flips text direction. */
const HOSTILE = 'a\x1b[2J\x1b]0;owned\x07\rb\nc\td\x00e\x7ff\x9b31mg\u0085h\u2028i\u202ej\u2066k';

describe('escapeControls', () => {
  it.each([
    ['plain.txt', 'plain.txt'],
    ['naïve 日本 ✓.md', 'naïve 日本 ✓.md'],
    ['back\\slash "quoted"', 'back\\slash "quoted"'],
    ['line\nbreak', 'line\\nbreak'],
    ['carriage\rreturn', 'carriage\\rreturn'],
    ['tab\there', 'tab\\there'],
    ['\x1b[31mred', '\\x1b[31mred'],
    ['bell\x07', 'bell\\x07'],
    ['nul\x00', 'nul\\x00'],
    ['del\x7f', 'del\\x7f'],
    ['csi\x9b2J', 'csi\\x9b2J'],
    ['nel\u0085', 'nel\\x85'],
    ['ls\u2028ps\u2029', 'ls\\u2028ps\\u2029'],
    ['rlo\u202egnp.exe', 'rlo\\u202egnp.exe'],
    ['lri\u2066x\u2069', 'lri\\u2066x\\u2069'],
  ])('%j → %j', (input, expected) => {
    expect(escapeControls(input)).toBe(expected);
  });

  it('leaves nothing a terminal acts on, and keeps one line', () => {
    const out = escapeControls(HOSTILE);
    expect(out).not.toMatch(RAW_CONTROL);
    expect(out).not.toContain('\n');
  });

  it('keepLines keeps only the line breaks', () => {
    expect(escapeControlsKeepLines('one\x1b[K\ntwo\r')).toBe('one\\x1b[K\ntwo\\r');
  });

  it('JSON output: the same value, without raw C1/DEL/bidi characters', () => {
    const value = { path: HOSTILE, list: [1, 2] };
    const json = escapeJsonControls(JSON.stringify(value, null, 2));
    expect(JSON.parse(json)).toEqual(value);
    expect(json.replace(/\n/g, '')).not.toMatch(RAW_CONTROL);
  });
});

describe('printers escape names and remote text', () => {
  it('log lines: message and scope', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'systemsync.log');
    const logger = createLogger({ level: 'info', file, stderr: false });
    logger.child(`docs${HOSTILE}`).info(`pushed ${showPath(HOSTILE)}; server said: ${HOSTILE}`);
    logger.close();
    const text = fs.readFileSync(file, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    expect(text.split('\n')).toHaveLength(2);
    expect(text.replace(/\n$/, '')).not.toMatch(RAW_CONTROL);
    expect(text).toContain('\\x1b[2J');
    expect(text).toContain('\\u202e');
  });

  it('progress lines and the TTY progress bar label', () => {
    const lines: string[] = [];
    const logger = { info: (m: string) => lines.push(m) } as unknown as Parameters<typeof createProgress>[2]['logger'];
    const drawn: string[] = [];
    const tty = { write: (s: string) => drawn.push(s) } as unknown as NodeJS.WriteStream;
    const p = createProgress(`pull ${HOSTILE}`, 100, { logger, tty: null, afterMs: 0, everyMs: 0 });
    p.update(50);
    const bar = createProgress(`pull ${HOSTILE}`, 100, { logger, tty, afterMs: 0 });
    bar.update(50);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).not.toMatch(RAW_CONTROL);
    expect(drawn.length).toBeGreaterThan(0);
    // The bar's own \r (redraw) and ESC[K (clear to end) stay; the label's are escaped.
    for (const d of drawn) expect(d.replace(/^\r/, '').replace(/\x1b\[K$/, '')).not.toMatch(RAW_CONTROL);
  });

  it('status and tasks tables', () => {
    const report: StatusReport = {
      version: `0.1.0${HOSTILE}`,
      node: `hub${HOSTILE}`,
      role: 'client',
      connected: true,
      pid: 1,
      folders: [{ name: 'docs', path: '/x', files: 1, bytes: 1, pendingPush: 0, pendingPull: 0, conflicts: 0, failed: 1, paused: `root gone ${HOSTILE}`, lastSync: null }],
      transfers: [{ folder: 'docs', path: HOSTILE, direction: 'pull', done: 1, total: 2, rate: 1, startedAt: '' }],
      clients: [{ name: `beta${HOSTILE}`, connected: true, lastSeen: null, behind: 0 }],
      memory: { rss: 0, heapTotal: 0, heapUsed: 0, external: 0 },
    };
    for (const tty of [false, true]) {
      const out = formatStatus(report, tty);
      expect(out.replace(/\n/g, '')).not.toMatch(RAW_CONTROL);
      expect(out).toContain('\\x1b]0;owned\\x07\\rb\\nc');
    }
    const tasks: TaskInfo[] = [{ folder: 'docs', path: HOSTILE, op: 'push', state: 'failed', attempts: 1, lastError: `server: ${HOSTILE}`, permanent: true, since: '' }];
    const out = formatTasks(tasks);
    expect(out.replace(/\n/g, '')).not.toMatch(RAW_CONTROL);
    expect(out.split('\n')).toHaveLength(3);
    expect(out).toContain('server: a\\x1b[2J');
  });
});

/**
 * `npm run bench` in quick mode with tiny sizes: the harness starts its sshd and daemons, runs
 * every case and prints the table with a baseline beside each figure. Nothing here looks at the
 * timings: performance is judged by reading the table, not by a test.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('npm run bench (quick mode, tiny sizes)', () => {
  it('prints a markdown table with every case measured beside its baseline', async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'systemsync-bench-smoke-')), 'RESULTS.md');
    const args = ['bench/run.mjs', '--quick', '--reps', '1', '--latency-files', '3', '--latency-interval', '50', '--small-files', '40', '--small-dirs', '4', '--big-mib', '2', '--delta-mib', '2', '--append-mib', '2', '--index-files', '60', '--out', out];
    const { stdout } = await execFileAsync(process.execPath, args, { cwd: ROOT, timeout: 280_000, maxBuffer: 16 << 20 });

    expect(stdout).toMatch(/^## systemsync benchmark \(quick mode\)/m);
    expect(stdout).toContain('| measure | systemsync | baseline (measured in this run) | ratio | target | met |');
    const rows = stdout.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| ---'));
    const expected = [
      'latency p50',
      'latency p99',
      '40 × 4 KiB files in 4 dirs',
      '2 MiB file (A → B)',
      'RSS growth during the 2 MiB transfer',
      '1 MiB rewritten in the middle of a 2 MiB file everywhere',
      'the same edit: time until B has it',
      '4 KiB appended to a 2 MiB file',
      'restart of a client with 60 unchanged files',
      'RSS per indexed file at 60 files, hub',
      'RSS per indexed file at 60 files, alpha',
      'RSS per indexed file at 60 files, beta',
      'one change at 60 files: write on A → committed on the server',
      'longest event-loop stall around one change at 60 files',
    ];
    for (const label of expected) {
      const row = rows.find((line) => line.includes(label));
      expect(row, `a row for "${label}"`).toBeDefined();
      const cells = row!.split('|').map((c) => c.trim());
      // measure | systemsync | baseline | ratio | …: a figure, a measured baseline, a ratio.
      expect(cells[2], `figure of "${label}"`).toMatch(/\d/);
      expect(cells[2]).not.toContain('n/a');
      expect(cells[3], `baseline of "${label}"`).toMatch(/\d/);
      // At tiny sizes a per-file RSS delta is noise and may be negative: the sign is what was measured.
      expect(cells[4], `ratio of "${label}"`).toMatch(/^-?\d+\.\d\d×/);
    }
    // Peak RSS per daemon for each case.
    for (const c of ['latency', 'small', 'big', 'index']) expect(stdout).toMatch(new RegExp(`^\\| ${c} \\| [\\d.]+ MiB \\| [\\d.]+ MiB \\| [\\d.]+ MiB \\|$`, 'm'));
    expect(fs.readFileSync(out, 'utf8')).toBe(stdout);
    // Six cases with fresh daemons each, on a shared machine.
  }, 300_000);
});

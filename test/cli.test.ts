/**
 * The command line's first minute: an unknown command, the version, usage errors of the new
 * commands and `status --watch` piped. `node dist/monitor.js` in real processes, in an empty
 * directory with an empty HOME (so that no config file is found by accident).
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { MONITOR, startCluster, type Cluster } from './helpers/daemons.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';
import { waitFor } from './helpers/wait.js';

const execFileAsync = promisify(execFile);
const pkg = JSON.parse(await fs.readFile(path.resolve(path.dirname(MONITOR), '../package.json'), 'utf8')) as { version: string };

async function cli(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const dir = cwd ?? (await tempDir());
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [MONITOR, ...args], { cwd: dir, env: { ...process.env, HOME: dir }, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

afterAll(cleanupTempDirs);

describe('the command line', () => {
  it('answers an unknown command with its name and the usage, exit 2', async () => {
    const r = await cli(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.startsWith('systemsync: unknown command frobnicate\n\nusage: systemsync <command>')).toBe(true);
    expect(r.stderr).toContain('restore PATH [--version ID] [--as NEWPATH]');
    expect(r.stderr).not.toContain('no config file');
  });

  it.each([['--version'], ['version'], ['-V']])('prints the version for %s, exit 0, without a config', async (flag) => {
    const r = await cli([flag]);
    expect(r).toEqual({ code: 0, stdout: `systemsync ${pkg.version}\n`, stderr: '' });
  });

  it.each([
    { args: ['status', 'extra'], message: 'systemsync: status takes no arguments, got "extra"' },
    { args: ['restore', '--bogus'], message: 'systemsync: unknown option "--bogus"' },
    { args: ['--json'], message: 'systemsync: expected a command first, got the option "--json"' },
  ])('refuses $args with a usage error, exit 2', async ({ args, message }) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe(message);
  });
});

describe('status --watch, piped', () => {
  let cluster: Cluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('prints one line per change, with the connection state and queues', async () => {
    cluster = await startCluster({ clients: 1 });
    const client = cluster.clients[0]!;
    const child = spawn(process.execPath, [MONITOR, 'status', '-w', '--config', client.configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => out.includes('\n'), { what: 'a first line' });
      expect(out.split('\n')[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ connected; docs: push 0 pull 0 conflicts 0 failed 0$/);
      // Nothing changes: no new line for three seconds.
      await new Promise((r) => setTimeout(r, 3000));
      expect(out.trimEnd().split('\n')).toHaveLength(1);
      // The daemon goes away: one line says so.
      await client.stop('SIGTERM');
      await waitFor(() => out.trimEnd().split('\n').length >= 2, { what: 'a line about the stopped daemon' });
      expect(out.trimEnd().split('\n')[1]).toContain('no daemon answers on');
    } finally {
      child.kill('SIGTERM');
    }
  });
});

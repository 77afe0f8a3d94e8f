import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { createLogger, createProgress, showPath } from '../src/node/log.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';

afterAll(cleanupTempDirs);

describe('log', () => {
  it('writes one line per event with timestamp, level and scope, 0600, and honours the level', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'systemsync.log');
    const logger = createLogger({ level: 'info', file, stderr: false });
    logger.child('docs').info(`pushed ${showPath('a b\nc.txt')}`);
    logger.debug('not shown at info');
    logger.close();
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  \[docs\] pushed "a b\\nc\.txt"$/);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it('rotates at the size cap and keeps the configured number of old files', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'systemsync.log');
    const logger = createLogger({ level: 'debug', file, stderr: false, maxBytes: 1000, keep: 2 });
    for (let i = 0; i < 100; i++) logger.info(`line ${i} ${'x'.repeat(50)}`);
    logger.close();
    expect(fs.existsSync(`${file}.1`)).toBe(true);
    expect(fs.existsSync(`${file}.2`)).toBe(true);
    expect(fs.existsSync(`${file}.3`)).toBe(false);
    for (const f of [file, `${file}.1`, `${file}.2`]) expect(fs.statSync(f).size).toBeLessThanOrEqual(1000);
    expect(fs.readFileSync(file, 'utf8')).toMatch(/line 99 /);
  });

  it('reports progress of long transfers: nothing before afterMs, then at most one line per interval', () => {
    const lines: string[] = [];
    const logger = { info: (m: string) => lines.push(m) } as unknown as Parameters<typeof createProgress>[2]['logger'];
    const quiet = createProgress('push big', 100, { logger, tty: null, afterMs: 60_000 });
    quiet.update(50);
    expect(lines).toEqual([]);
    const loud = createProgress('push big', 100, { logger, tty: null, afterMs: 0, everyMs: 60_000 });
    loud.update(25);
    loud.update(50);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^push big: 25% \(25\/100 bytes, [\d.]+ MiB\/s\)$/);
  });
});

/**
 * The embedded endpoint's host key on disk: made when missing (ed25519, 0600, `.pub` 0644 that
 * OpenSSH's ssh-keygen agrees with), reused afterwards, never overwritten, a bad file refused.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { hostKeyKnownHostsLine, HostKeyFileError, loadOrCreateHostKey } from '../src/endpoint/hostkey.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';

const execFileAsync = promisify(execFile);

afterAll(cleanupTempDirs);

describe('loadOrCreateHostKey', () => {
  it('creates a missing key and its directory, then reuses it', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'state', 'ssh_host_ed25519_key');
    const made = await loadOrCreateHostKey(file);
    expect(made.created).toBe(true);
    expect(made.type).toBe('ssh-ed25519');
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect((await fs.stat(`${file}.pub`)).mode & 0o777).toBe(0o644);
    expect((await fs.stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    const { stdout } = await execFileAsync('ssh-keygen', ['-y', '-f', file]);
    const publicKey = stdout.trim().split(' ').slice(0, 2).join(' ');
    expect((await fs.readFile(`${file}.pub`, 'utf8')).startsWith(publicKey)).toBe(true);
    expect(hostKeyKnownHostsLine(made, 'hub.example', 2222)).toBe(`[hub.example]:2222 ${publicKey}`);
    const { stdout: fingerprint } = await execFileAsync('ssh-keygen', ['-lf', `${file}.pub`]);
    expect(fingerprint).toContain(made.fingerprint);

    const before = await fs.readFile(file);
    const again = await loadOrCreateHostKey(file);
    expect(again.created).toBe(false);
    expect(again.blob.equals(made.blob)).toBe(true);
    expect(await fs.readFile(file)).toEqual(before);
  });

  it('uses a key made by ssh-keygen, and writes a missing .pub beside it', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'host_key');
    await execFileAsync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]);
    await fs.rm(`${file}.pub`);
    const key = await loadOrCreateHostKey(file);
    expect(key.created).toBe(false);
    const { stdout } = await execFileAsync('ssh-keygen', ['-y', '-f', file]);
    expect((await fs.readFile(`${file}.pub`, 'utf8')).startsWith(stdout.trim().split(' ').slice(0, 2).join(' '))).toBe(true);
  });

  it('refuses a file that is not a private key, and leaves it alone', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'host_key');
    await fs.writeFile(file, 'not a key\n');
    await expect(loadOrCreateHostKey(file)).rejects.toThrow(HostKeyFileError);
    await expect(loadOrCreateHostKey(file)).rejects.toThrow(/cannot use the host key .*host_key: .*remove it to have a new one made/);
    expect(await fs.readFile(file, 'utf8')).toBe('not a key\n');
  });
});

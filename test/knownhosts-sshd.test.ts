/**
 * Issue 12 finding 8: known_hosts against real OpenSSH sshds.
 * - accept-new under concurrency pins exactly one line (lock + re-check + one O_APPEND write);
 * - a host trusted only through `@cert-authority`: OpenSSH's own ssh accepts its host certificate,
 *   ssh2 cannot even name a certificate host key algorithm (measured here), so systemsync refuses
 *   to pin its plain key, with a clear error, under accept-new and yes alike;
 * - SHA-1 `ssh-rsa` host key signatures are not offered: a server that signs only with ssh-rsa is
 *   refused, one that offers rsa-sha2 connects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import ssh2 from 'ssh2';
import { connectSsh, type SshTarget } from '../src/ssh/transfer.js';
import { generateKey, startSshd, type TestSshd } from './helpers/sshd.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';
import { rejection } from './helpers/wait.js';

const execFileAsync = promisify(execFile);

let work: string;
const started: TestSshd[] = [];

beforeAll(async () => {
  work = await tempDir('systemsync-kh-');
});

afterAll(async () => {
  for (const s of started) await s.stop();
  await cleanupTempDirs();
});

async function sshd(opts: Parameters<typeof startSshd>[0] = {}): Promise<TestSshd> {
  const s = await startSshd({ dir: await tempDir('systemsync-kh-sshd-'), ...opts });
  started.push(s);
  return s;
}

function target(s: TestSshd, overrides: Partial<SshTarget>): SshTarget {
  return { host: '127.0.0.1', port: s.port, username: s.user, privateKey: s.clientKeyPath, knownHostsPath: s.knownHostsPath, hostKeyCheck: 'yes', readyTimeoutMs: 20_000, ...overrides };
}

describe('accept-new is atomic', () => {
  it('12 connections meeting a new host at once pin exactly one line, and all connect', async () => {
    const s = await sshd();
    const knownHostsPath = path.join(work, 'race_known_hosts');
    await writeFile(knownHostsPath, '# empty\n', { mode: 0o600 });
    const sessions = await Promise.all(Array.from({ length: 12 }, () => connectSsh(target(s, { knownHostsPath, hostKeyCheck: 'accept-new' }))));
    for (const session of sessions) await session.close();
    const lines = (await readFile(knownHostsPath, 'utf8')).split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    expect(lines).toEqual([`[127.0.0.1]:${s.port} ${s.hostPublicKey}`]);
  });
});

describe('@cert-authority', () => {
  let s: TestSshd;
  let caLine: string;
  beforeAll(async () => {
    const ca = await generateKey(path.join(work, 'host_ca'), 'ed25519', 'test-host-ca');
    s = await sshd({ hostCertificateCa: ca.privateKeyPath });
    caLine = `@cert-authority [127.0.0.1]:${s.port} ${ca.publicKeyLine}`;
  });

  it('measurement: OpenSSH ssh trusts the host through its certificate alone', async () => {
    const kh = path.join(work, 'ca_only_openssh');
    await writeFile(kh, `${caLine}\n`, { mode: 0o600 });
    const { stdout } = await execFileAsync('ssh', [
      '-F', '/dev/null', '-i', s.clientKeyPath, '-p', String(s.port),
      '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${kh}`, '-o', 'GlobalKnownHostsFile=/dev/null',
      `${s.user}@127.0.0.1`, 'echo', 'cert-ok',
    ]);
    expect(stdout.trim()).toBe('cert-ok');
    expect(await readFile(kh, 'utf8')).toBe(`${caLine}\n`);
  });

  it('measurement: ssh2 cannot negotiate a host certificate algorithm at all', () => {
    const client = new ssh2.Client();
    client.on('error', () => undefined);
    expect(() =>
      client.connect({ host: '127.0.0.1', port: s.port, username: s.user, algorithms: { serverHostKey: ['ssh-ed25519-cert-v01@openssh.com'] as never } }),
    ).toThrow(/Unsupported algorithm/i);
  });

  it.each(['accept-new', 'yes'] as const)('host_key_check = %s: refuses to pin the plain key of a CA-only host, says why, appends nothing', async (check) => {
    const knownHostsPath = path.join(work, `ca_only_${check}`);
    await writeFile(knownHostsPath, `${caLine}\n`, { mode: 0o600 });
    const err = await rejection(connectSsh(target(s, { knownHostsPath, hostKeyCheck: check })));
    expect(err.code).toBe('HOST_KEY_CERT_ONLY');
    expect(err.message).toMatch(/only through @cert-authority/);
    expect(err.message).toMatch(/cannot verify host certificates/);
    expect(err.message).toContain(s.hostPublicKey.split(' ')[1]!);
    expect(await readFile(knownHostsPath, 'utf8')).toBe(`${caLine}\n`);
  });

  it('a plain key line added by hand (after checking it) is used as before', async () => {
    const knownHostsPath = path.join(work, 'ca_and_plain');
    const lines = `${caLine}\n[127.0.0.1]:${s.port} ${s.hostPublicKey}\n`;
    await writeFile(knownHostsPath, lines, { mode: 0o600 });
    const session = await connectSsh(target(s, { knownHostsPath, hostKeyCheck: 'yes' }));
    // A working session: SFTP answers over it.
    expect(await session.realpath('.')).toMatch(/^\//);
    await session.close();
    expect(await readFile(knownHostsPath, 'utf8')).toBe(lines);
  });
});

describe('no SHA-1 ssh-rsa host key signatures', () => {
  it('a server that signs its RSA host key only with ssh-rsa (SHA-1) is refused', async () => {
    const s = await sshd({ hostKeyType: 'rsa', extraConfig: ['HostKeyAlgorithms ssh-rsa'] });
    const err = await rejection(connectSsh(target(s, {})));
    expect(err.code).toBe('CONNECT_FAILED');
    expect(err.message).toMatch(/host key|handshake|algorithm/i);
  });

  it('the same RSA host key with rsa-sha2-256/512 connects', async () => {
    const s = await sshd({ hostKeyType: 'rsa' });
    const session = await connectSsh(target(s, {}));
    expect(await session.realpath('.')).toMatch(/^\//);
    await session.close();
  });
});

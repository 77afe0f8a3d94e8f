import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintSha256 } from '../src/ssh/knownhosts.js';
import {
  AuthFailedError,
  ConnectError,
  connectSsh,
  HashMismatchError,
  SizeExceededError,
  HostKeyChangedError,
  HostKeyRevokedError,
  HostKeyUnknownError,
  IdentityError,
  LocalFileError,
  SessionClosedError,
  SftpError,
  StreamOpenError,
  TransferAbortedError,
  type SshSession,
  type SshTarget,
} from '../src/ssh/transfer.js';
import { freePort, generateKey, startSshd, type TestSshd } from './helpers/sshd.js';

let sshd: TestSshd;
let work: string;
let remote: string;
let session: SshSession;

function target(overrides: Partial<SshTarget> = {}): SshTarget {
  return {
    host: sshd.host,
    port: sshd.port,
    username: sshd.user,
    privateKey: sshd.clientKeyPath,
    knownHostsPath: sshd.knownHostsPath,
    hostKeyCheck: 'yes',
    readyTimeoutMs: 15_000,
    ...overrides,
  };
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hostKeyBlob(): Buffer {
  return Buffer.from(sshd.hostPublicKey.split(' ')[1]!, 'base64');
}

async function connectFails(t: SshTarget): Promise<unknown> {
  try {
    const s = await connectSsh(t);
    await s.close();
  } catch (err) {
    return err;
  }
  throw new Error('connectSsh succeeded but was expected to fail');
}

beforeAll(async () => {
  sshd = await startSshd();
  work = await mkdtemp(path.join(os.tmpdir(), 'systemsync-transfer-'));
  remote = path.join(sshd.dir, 'remote');
  await mkdir(remote);
  session = await connectSsh(target());
});

afterAll(async () => {
  await session?.close();
  await sshd?.stop();
  if (work) await rm(work, { recursive: true, force: true });
  if (sshd) await rm(sshd.dir, { recursive: true, force: true });
});

describe('connecting', () => {
  it('connects with a known host key and opens SFTP', async () => {
    const home = await session.realpath('.');
    expect(path.isAbsolute(home)).toBe(true);
    expect((await session.stat(home))?.type).toBe('dir');
    expect(await session.stat(path.join(remote, 'nothing-here'))).toBeNull();
  });

  it('refuses an unknown host key with host_key_check = yes', async () => {
    const knownHostsPath = path.join(work, 'empty_known_hosts');
    await writeFile(knownHostsPath, '# nothing yet\n');
    const err = await connectFails(target({ knownHostsPath }));
    expect(err).toBeInstanceOf(HostKeyUnknownError);
    const unknown = err as HostKeyUnknownError;
    expect(unknown.code).toBe('HOST_KEY_UNKNOWN');
    expect(unknown.fingerprint).toBe(fingerprintSha256(hostKeyBlob()));
    expect(unknown.message).toContain(fingerprintSha256(hostKeyBlob()));
    expect(unknown.message).toContain(`[127.0.0.1]:${sshd.port}`);
    expect(unknown.message).toContain('accept-new');
    expect(unknown.knownHostsLine).toBe(`[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey}`);
    expect(await readFile(knownHostsPath, 'utf8')).toBe('# nothing yet\n');
  });

  it('treats a missing known_hosts file as empty', async () => {
    const err = await connectFails(target({ knownHostsPath: path.join(work, 'no', 'such', 'known_hosts') }));
    expect(err).toBeInstanceOf(HostKeyUnknownError);
  });

  it('accept-new records an unknown key, and the next connect with yes passes', async () => {
    const knownHostsPath = path.join(work, 'tofu', 'sub', 'known_hosts');
    const first = await connectSsh(target({ knownHostsPath, hostKeyCheck: 'accept-new' }));
    await first.close();
    const text = await readFile(knownHostsPath, 'utf8');
    expect(text).toBe(`[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey}\n`);
    expect((await stat(knownHostsPath)).mode & 0o777).toBe(0o600);
    const second = await connectSsh(target({ knownHostsPath, hostKeyCheck: 'yes' }));
    expect(await second.realpath('.')).toMatch(/^\//);
    await second.close();
    expect(await readFile(knownHostsPath, 'utf8')).toBe(text); // nothing appended twice
  });

  it('accept-new appends after a last line without newline', async () => {
    const knownHostsPath = path.join(work, 'no_newline_known_hosts');
    await writeFile(knownHostsPath, 'other.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMeCZ7XxJf7Xl56xpYT8BZ1X+sbe2EG+2zcP18NWo7YQ');
    const s = await connectSsh(target({ knownHostsPath, hostKeyCheck: 'accept-new' }));
    await s.close();
    const lines = (await readFile(knownHostsPath, 'utf8')).split('\n');
    expect(lines[1]).toBe(`[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey}`);
  });

  it('refuses a changed host key, even with accept-new, naming both fingerprints', async () => {
    const other = await generateKey(path.join(work, 'impostor_host_key'));
    const oldBlob = Buffer.from(other.publicKeyLine.split(' ')[1]!, 'base64');
    const knownHostsPath = path.join(work, 'changed_known_hosts');
    const content = `[127.0.0.1]:${sshd.port} ${other.publicKeyLine.split(' ').slice(0, 2).join(' ')}\n`;
    await writeFile(knownHostsPath, content);
    for (const hostKeyCheck of ['yes', 'accept-new'] as const) {
      const err = await connectFails(target({ knownHostsPath, hostKeyCheck }));
      expect(err).toBeInstanceOf(HostKeyChangedError);
      const changed = err as HostKeyChangedError;
      expect(changed.code).toBe('HOST_KEY_CHANGED');
      expect(changed.message).toContain(fingerprintSha256(oldBlob));
      expect(changed.message).toContain(fingerprintSha256(hostKeyBlob()));
      expect(changed.message).toContain(`ssh-keygen -R "[127.0.0.1]:${sshd.port}" -f ${knownHostsPath}`);
      expect(changed.knownFingerprints).toEqual([fingerprintSha256(oldBlob)]);
      expect(changed.offeredFingerprint).toBe(fingerprintSha256(hostKeyBlob()));
    }
    expect(await readFile(knownHostsPath, 'utf8')).toBe(content);
  });

  it('refuses a host key marked @revoked', async () => {
    const knownHostsPath = path.join(work, 'revoked_known_hosts');
    await writeFile(knownHostsPath, `[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey}\n@revoked * ${sshd.hostPublicKey}\n`);
    const err = await connectFails(target({ knownHostsPath }));
    expect(err).toBeInstanceOf(HostKeyRevokedError);
    expect((err as HostKeyRevokedError).code).toBe('HOST_KEY_REVOKED');
  });

  it('accepts a hashed known_hosts entry', async () => {
    const { execFile } = await import('node:child_process');
    const knownHostsPath = path.join(work, 'hashed_known_hosts');
    await writeFile(knownHostsPath, `[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey}\n`);
    await new Promise<void>((resolve, reject) =>
      execFile('ssh-keygen', ['-H', '-f', knownHostsPath], (err) => (err ? reject(err) : resolve())),
    );
    expect(await readFile(knownHostsPath, 'utf8')).toMatch(/^\|1\|/);
    const s = await connectSsh(target({ knownHostsPath }));
    await s.close();
  });

  it('fails with AuthFailedError for a key the server does not accept', async () => {
    const stranger = await generateKey(path.join(work, 'stranger_key'));
    const err = await connectFails(target({ privateKey: stranger.privateKeyPath }));
    expect(err).toBeInstanceOf(AuthFailedError);
    expect((err as AuthFailedError).code).toBe('AUTH_FAILED');
  });

  it('accepts the private key as a Buffer', async () => {
    const s = await connectSsh(target({ privateKey: await readFile(sshd.clientKeyPath) }));
    // Authenticated for real: the session answers an SFTP request.
    expect(await s.realpath('.')).toMatch(/^\//);
    await s.close();
  });

  it('fails with IdentityError for a missing or malformed key file', async () => {
    const missing = await connectFails(target({ privateKey: path.join(work, 'no_such_key') }));
    expect(missing).toBeInstanceOf(IdentityError);
    expect((missing as IdentityError).message).toContain('no_such_key');
    const garbagePath = path.join(work, 'garbage_key');
    await writeFile(garbagePath, 'this is not a key\n');
    const garbage = await connectFails(target({ privateKey: garbagePath }));
    expect(garbage).toBeInstanceOf(IdentityError);
    expect((garbage as IdentityError).code).toBe('IDENTITY_INVALID');
  });

  it('fails with ConnectError on a closed port', async () => {
    const port = await freePort();
    const err = await connectFails(target({ port }));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe('CONNECT_FAILED');
    expect((err as ConnectError).message).toContain('ECONNREFUSED');
  });

  it('fails with ConnectError when the peer never speaks SSH', async () => {
    const silent = net.createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const err = await connectFails(target({ port, readyTimeoutMs: 1_000 }));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).message).toMatch(/timed out/);
    } finally {
      silent.close();
    }
  });

  it('reports a normal close with null', async () => {
    const s = await connectSsh(target());
    const reasons: Array<unknown> = [];
    s.onClose((reason) => reasons.push(reason));
    await s.close();
    expect(await s.closed).toBeNull();
    expect(s.isClosed).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(reasons).toEqual([null]);
    await s.close(); // twice is fine
  });
});

describe('losing the connection', () => {
  it('reports the loss, fails the running transfer and refuses later requests without hanging', async () => {
    const second = await startSshd();
    try {
      const s = await connectSsh(target({ port: second.port, knownHostsPath: second.knownHostsPath, privateKey: second.clientKeyPath }));
      const reasons: unknown[] = [];
      s.onClose((reason) => reasons.push(reason));
      const remotePath = path.join(second.dir, 'big.bin');
      await writeFile(remotePath, randomBytes(64 * 1024 * 1024));
      const localPath = path.join(work, 'lost.bin');
      let stopping: Promise<void> | null = null;
      const download = s.downloadFile(remotePath, localPath, {
        onProgress: () => {
          stopping ??= second.stop();
        },
      });
      const err = await download.catch((e: unknown) => e);
      await stopping;
      // The sshd is stopped at the first chunk of 64 MiB: the download cannot have finished.
      expect(err).toBeInstanceOf(SftpError);
      expect((err as SftpError).code).toBe('CONNECTION_LOST');
      expect((err as SftpError).permanent).toBe(false);
      expect(existsSync(localPath)).toBe(false);
      const reason = await s.closed;
      expect(reason).toBeInstanceOf(SessionClosedError);
      expect(reasons).toEqual([reason]);
      const later = await s.stat(remotePath).catch((e: unknown) => e);
      expect(later).toBeInstanceOf(SftpError);
      expect((later as SftpError).code).toBe('CONNECTION_LOST');
      const stream = await s.openUnixStream('/nonexistent.sock').catch((e: unknown) => e);
      expect(stream).toBeInstanceOf(SessionClosedError);
    } finally {
      await second.stop();
      await rm(second.dir, { recursive: true, force: true });
    }
  });
});

describe('transfers', () => {
  it('round-trips a 20 MiB random file with matching sha256', async () => {
    const data = randomBytes(20 * 1024 * 1024 + 12345);
    const localPath = path.join(work, 'big.bin');
    await writeFile(localPath, data);
    const remotePath = path.join(remote, 'big.bin');
    let lastProgress: [number, number] = [0, 0];
    const up = await session.uploadFile(localPath, remotePath, { onProgress: (done, total) => (lastProgress = [done, total]) });
    expect(up).toEqual({ hash: sha256(data), size: data.length });
    expect(lastProgress).toEqual([data.length, data.length]);
    expect(sha256(await readFile(remotePath))).toBe(sha256(data));
    expect((await stat(remotePath)).mode & 0o777).toBe(0o600);

    const downPath = path.join(work, 'big.down');
    const down = await session.downloadFile(remotePath, downPath, { expectedHash: sha256(data) });
    expect(down).toEqual({ hash: sha256(data), size: data.length });
    expect((await readFile(downPath)).equals(data)).toBe(true);
  });

  it('uploads and downloads 300 small files concurrently on one session', async () => {
    const dir = path.join(work, 'many');
    await mkdir(dir);
    const remoteDir = path.join(remote, 'many');
    await session.mkdirp(remoteDir);
    // Sizes include the edges: empty, one byte, exactly one and two chunks, one past a chunk.
    const edgeSizes = [0, 1, 65535, 65536, 65537, 131072];
    const files = Array.from({ length: 300 }, (_, i) => {
      const size = edgeSizes[i] ?? (i * 7919) % 150_000;
      return { name: `f${i}.bin`, data: randomBytes(size) };
    });
    await Promise.all(files.map((f) => writeFile(path.join(dir, f.name), f.data)));

    const uploads = await Promise.all(
      files.map((f) => session.uploadFile(path.join(dir, f.name), path.join(remoteDir, f.name))),
    );
    uploads.forEach((result, i) => expect(result).toEqual({ hash: sha256(files[i]!.data), size: files[i]!.data.length }));
    for (const f of files) expect(sha256(await readFile(path.join(remoteDir, f.name)))).toBe(sha256(f.data));

    const downDir = path.join(work, 'many-down');
    await mkdir(downDir);
    const downloads = await Promise.all(
      files.map((f) =>
        session.downloadFile(path.join(remoteDir, f.name), path.join(downDir, f.name), { expectedHash: sha256(f.data) }),
      ),
    );
    downloads.forEach((result, i) => expect(result.size).toBe(files[i]!.data.length));
    for (const f of files) expect((await readFile(path.join(downDir, f.name))).equals(f.data)).toBe(true);
  });

  it('rejects a download whose hash differs and leaves no file', async () => {
    const remotePath = path.join(remote, 'mismatch.txt');
    await writeFile(remotePath, 'actual content\n');
    const localPath = path.join(work, 'mismatch.txt');
    const wrong = sha256(Buffer.from('other content\n'));
    const err = await session.downloadFile(remotePath, localPath, { expectedHash: wrong }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HashMismatchError);
    const mismatch = err as HashMismatchError;
    expect(mismatch.code).toBe('HASH_MISMATCH');
    expect(mismatch.expectedHash).toBe(wrong);
    expect(mismatch.actualHash).toBe(sha256(Buffer.from('actual content\n')));
    expect(existsSync(localPath)).toBe(false);
  });

  it('maps a missing remote file to SftpError NO_SUCH_FILE and leaves no local file', async () => {
    const localPath = path.join(work, 'never.txt');
    const err = await session.downloadFile(path.join(remote, 'never.txt'), localPath).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SftpError);
    expect((err as SftpError).code).toBe('NO_SUCH_FILE');
    expect((err as SftpError).permanent).toBe(true);
    expect(existsSync(localPath)).toBe(false);
  });

  it('refuses to download a directory, permanently', async () => {
    const localPath = path.join(work, 'a-dir');
    const err = await session.downloadFile(remote, localPath).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SftpError);
    expect((err as SftpError).permanent).toBe(true);
    expect((err as SftpError).message).toContain('not a regular file');
    expect(existsSync(localPath)).toBe(false);
  });

  it('maps a missing local file to LocalFileError ENOENT', async () => {
    const err = await session.uploadFile(path.join(work, 'absent'), path.join(remote, 'absent')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LocalFileError);
    expect((err as LocalFileError).errno).toBe('ENOENT');
    expect(existsSync(path.join(remote, 'absent'))).toBe(false);
  });

  it('fails an upload into a missing remote directory with NO_SUCH_FILE', async () => {
    const localPath = path.join(work, 'small.txt');
    await writeFile(localPath, 'small\n');
    const err = await session.uploadFile(localPath, path.join(remote, 'no-dir', 'small.txt')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SftpError);
    expect((err as SftpError).code).toBe('NO_SUCH_FILE');
  });

  it('stops an aborted transfer', async () => {
    const localPath = path.join(work, 'abort.txt');
    await writeFile(localPath, 'abort me\n');
    const controller = new AbortController();
    controller.abort();
    const err = await session.uploadFile(localPath, path.join(remote, 'abort.txt'), { signal: controller.signal }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransferAbortedError);
    expect((err as TransferAbortedError).code).toBe('ABORTED');
  });
});

describe('small files (one-shot path)', () => {
  // Sizes around the chunk (64 KiB) and the small-file limit (256 KiB); the last two take the
  // streaming path.
  const sizes = [0, 1, 4096, 65535, 65536, 65537, 131072, 200_000, 256 * 1024, 256 * 1024 + 1, 300_000];

  it('round-trips small files with hash, size, mode 0600 and progress, with and without expectedSize', async () => {
    const dir = path.join(work, 'small-rt');
    await mkdir(dir);
    const remoteDir = path.join(remote, 'small-rt');
    await mkdir(remoteDir);
    for (const size of sizes) {
      const data = randomBytes(size);
      const localPath = path.join(dir, `f${size}`);
      await writeFile(localPath, data);
      const remotePath = path.join(remoteDir, `f${size}`);
      const upProgress: Array<[number, number]> = [];
      const up = await session.uploadFile(localPath, remotePath, { onProgress: (done, total) => upProgress.push([done, total]) });
      expect(up).toEqual({ hash: sha256(data), size });
      expect((await readFile(remotePath)).equals(data)).toBe(true);
      expect((await stat(remotePath)).mode & 0o777).toBe(0o600);
      if (size > 0) expect(upProgress.at(-1)).toEqual([size, size]);

      for (const expectedSize of [size, undefined]) {
        const downPath = path.join(dir, `f${size}.down.${expectedSize ?? 'none'}`);
        const downProgress: Array<[number, number]> = [];
        const down = await session.downloadFile(remotePath, downPath, {
          expectedHash: sha256(data),
          expectedSize,
          onProgress: (done, total) => downProgress.push([done, total]),
        });
        expect(down).toEqual({ hash: sha256(data), size });
        expect((await readFile(downPath)).equals(data)).toBe(true);
        expect((await stat(downPath)).mode & 0o777).toBe(0o600);
        if (size > 0) expect(downProgress.at(-1)).toEqual([size, size]);
      }
    }
  });

  it('replaces an existing local file and refuses to write through a local symlink', async () => {
    const remotePath = path.join(remote, 'replace.txt');
    await writeFile(remotePath, 'new content\n');
    const localPath = path.join(work, 'replace.txt');
    await writeFile(localPath, 'an older and longer content that must not survive\n');
    const down = await session.downloadFile(remotePath, localPath, { expectedSize: 12 });
    expect(down.size).toBe(12);
    expect(await readFile(localPath, 'utf8')).toBe('new content\n');

    const victim = path.join(work, 'victim.txt');
    await writeFile(victim, 'untouched\n');
    const linkPath = path.join(work, 'link-to-victim.txt');
    await symlink(victim, linkPath);
    const err = await session.downloadFile(remotePath, linkPath, { expectedSize: 12 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LocalFileError);
    expect((err as LocalFileError).errno).toBe('ELOOP');
    expect(await readFile(victim, 'utf8')).toBe('untouched\n');

    const up = await session.uploadFile(linkPath, path.join(remote, 'from-link.txt')).catch((e: unknown) => e);
    expect(up).toBeInstanceOf(LocalFileError);
    expect((up as LocalFileError).errno).toBe('ELOOP');
    expect(existsSync(path.join(remote, 'from-link.txt'))).toBe(false);
  });

  it('with expectedSize, rejects a longer remote file without reading past that size (issue 12 #6)', async () => {
    const data = randomBytes(5000);
    const remotePath = path.join(remote, 'longer.bin');
    await writeFile(remotePath, data);
    const localPath = path.join(work, 'longer.bin');
    // The first 4096 bytes are what the sender recorded: the bytes after them must not go unnoticed.
    const prefixHash = sha256(data.subarray(0, 4096));
    const err = await session
      .downloadFile(remotePath, localPath, { expectedSize: 4096, expectedHash: prefixHash })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SizeExceededError);
    expect(err).toBeInstanceOf(HashMismatchError);
    expect(existsSync(localPath)).toBe(false);
    // Without a hash to check, too: never more than the expected size lands.
    await expect(session.downloadFile(remotePath, localPath, { expectedSize: 4096 })).rejects.toBeInstanceOf(SizeExceededError);
    expect(existsSync(localPath)).toBe(false);
    // One past a whole chunk: the probe byte is a request of its own.
    const chunkData = randomBytes(65536 + 1);
    await writeFile(remotePath, chunkData);
    await expect(session.downloadFile(remotePath, localPath, { expectedSize: 65536 })).rejects.toBeInstanceOf(SizeExceededError);
  });

  it('with expectedSize, rejects a shorter or different remote file by hash and leaves no local file', async () => {
    const expected = randomBytes(4096);
    const localPath = path.join(work, 'shorter.bin');
    const remotePath = path.join(remote, 'shorter.bin');
    const cases: Array<[string, Buffer]> = [
      ['shorter', expected.subarray(0, 3000)],
      ['empty', Buffer.alloc(0)],
      ['same size, other bytes', randomBytes(4096)],
    ];
    for (const [label, actual] of cases) {
      await writeFile(remotePath, actual);
      await writeFile(localPath, 'a file that was there before\n');
      const err = await session
        .downloadFile(remotePath, localPath, { expectedSize: expected.length, expectedHash: sha256(expected) })
        .catch((e: unknown) => e);
      expect(err, label).toBeInstanceOf(HashMismatchError);
      expect((err as HashMismatchError).actualHash, label).toBe(sha256(actual));
      expect(existsSync(localPath), label).toBe(false);
      const down = await session.downloadFile(remotePath, localPath, { expectedSize: expected.length });
      expect(down, label).toEqual({ hash: sha256(actual), size: actual.length });
      expect((await readFile(localPath)).equals(actual), label).toBe(true);
    }
  });

  it('with expectedSize, still names a missing file and a directory as the general path does', async () => {
    const localPath = path.join(work, 'fast-never.txt');
    const missing = await session.downloadFile(path.join(remote, 'fast-never.txt'), localPath, { expectedSize: 10 }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(SftpError);
    expect((missing as SftpError).code).toBe('NO_SUCH_FILE');
    expect(existsSync(localPath)).toBe(false);
    const dir = await session.downloadFile(remote, localPath, { expectedSize: 10 }).catch((e: unknown) => e);
    expect(dir).toBeInstanceOf(SftpError);
    expect((dir as SftpError).permanent).toBe(true);
    expect((dir as SftpError).message).toContain('not a regular file');
    expect(existsSync(localPath)).toBe(false);
  });

  it('reports a failed pipelined write, removes the remote file and keeps the session usable', async () => {
    // The remote path is a symlink to /dev/full: the open succeeds, the write fails (ENOSPC), and the
    // cleanup removes the symlink (not /dev/full).
    const remotePath = path.join(remote, 'full-link');
    await symlink('/dev/full', remotePath);
    const localPath = path.join(work, 'to-full.bin');
    await writeFile(localPath, randomBytes(100_000));
    const err = await session.uploadFile(localPath, remotePath).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SftpError);
    expect((err as SftpError).operation).toBe('write');
    expect(existsSync(remotePath)).toBe(false);
    expect(existsSync('/dev/full')).toBe(true);
    // Every request and file slot was given back: more transfers than the budgets still run.
    const data = randomBytes(1000);
    await writeFile(localPath, data);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => session.uploadFile(localPath, path.join(remote, `after-full-${i}`))),
    );
    for (const result of results) expect(result).toEqual({ hash: sha256(data), size: 1000 });
  });

  it('sends what it read from a file that grows while being read (fstat says 0, the read finds more)', async () => {
    // /proc files report size 0 and yet have content: the one-shot read sees more than fstat said.
    if (!existsSync('/proc/self/status')) return;
    const remotePath = path.join(remote, 'proc-status');
    const up = await session.uploadFile('/proc/self/status', remotePath);
    expect(up.size).toBeGreaterThan(0);
    const sent = await readFile(remotePath);
    expect(up).toEqual({ hash: sha256(sent), size: sent.length });
    expect(sent.toString('utf8')).toMatch(/^Name:/);
  });

  it('coalesces socket writes and many concurrent small transfers still come through', async () => {
    const s = await connectSsh(target());
    try {
      // Count what reaches the socket (ssh2's socket is private: this reaches into it on purpose,
      // so that losing the coalescing shows up as a failing test rather than as CPU time).
      const sock = (s as unknown as { client: { _sock: net.Socket } }).client._sock;
      let singleWrites = 0;
      let batchedWrites = 0;
      const socketWrites = sock as unknown as { _write: (...args: unknown[]) => unknown; _writev: (...args: unknown[]) => unknown };
      const write = socketWrites._write;
      const writev = socketWrites._writev;
      socketWrites._write = function (this: unknown, ...args: unknown[]) {
        singleWrites++;
        return write.apply(this, args);
      };
      socketWrites._writev = function (this: unknown, ...args: unknown[]) {
        batchedWrites++;
        return writev.apply(this, args);
      };

      const dir = path.join(work, 'coalesce');
      await mkdir(dir);
      const remoteDir = path.join(remote, 'coalesce');
      await mkdir(remoteDir);
      const files = Array.from({ length: 1000 }, (_, i) => ({ name: `c${i}`, data: randomBytes((i * 7919) % 20_000) }));
      await Promise.all(files.map((f) => writeFile(path.join(dir, f.name), f.data)));
      // A large file streams on the same session meanwhile.
      const big = randomBytes(8 * 1024 * 1024);
      await writeFile(path.join(dir, 'big'), big);
      const [bigUp, ...ups] = await Promise.all([
        s.uploadFile(path.join(dir, 'big'), path.join(remoteDir, 'big')),
        ...files.map((f) => s.uploadFile(path.join(dir, f.name), path.join(remoteDir, f.name))),
      ]);
      expect(bigUp).toEqual({ hash: sha256(big), size: big.length });
      ups.forEach((result, i) => expect(result).toEqual({ hash: sha256(files[i]!.data), size: files[i]!.data.length }));
      // open + write + close per file at least: far more packets than socket writes.
      expect(batchedWrites).toBeGreaterThan(0);
      expect(singleWrites + batchedWrites).toBeLessThan(files.length);

      const downDir = path.join(work, 'coalesce-down');
      await mkdir(downDir);
      const [bigDown, ...downs] = await Promise.all([
        s.downloadFile(path.join(remoteDir, 'big'), path.join(downDir, 'big'), { expectedHash: sha256(big) }),
        ...files.map((f) =>
          s.downloadFile(path.join(remoteDir, f.name), path.join(downDir, f.name), {
            expectedHash: sha256(f.data),
            expectedSize: f.data.length,
          }),
        ),
      ]);
      expect(bigDown.size).toBe(big.length);
      downs.forEach((result, i) => expect(result.size).toBe(files[i]!.data.length));
      for (const f of files) expect((await readFile(path.join(downDir, f.name))).equals(f.data)).toBe(true);
    } finally {
      await s.close();
    }
    expect(await s.closed).toBeNull();
  });

  it('sends keepalives through the coalesced socket', async () => {
    // Idle for several keepalive intervals: each keepalive goes out (with its turn's uncork) and is
    // answered, or ssh2 would give up after 3 unanswered ones. The session is idle on purpose: ssh2
    // counts a keepalive as answered only by its reply, which queues behind any transfer backlog.
    const s = await connectSsh(target({ keepaliveIntervalMs: 200 }));
    try {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(s.isClosed).toBe(false);
      expect(await s.realpath('.')).toMatch(/^\//);
    } finally {
      await s.close();
    }
    expect(await s.closed).toBeNull();
  });
});

describe('file operations', () => {
  it('posixRename replaces an existing file', async () => {
    const from = path.join(remote, 'rename-from.txt');
    const to = path.join(remote, 'rename-to.txt');
    await writeFile(from, 'new\n');
    await writeFile(to, 'old\n');
    await session.posixRename(from, to);
    expect(await readFile(to, 'utf8')).toBe('new\n');
    expect(existsSync(from)).toBe(false);
  });

  it('mkdirp creates nested directories and tolerates existing ones', async () => {
    const nested = path.join(remote, 'a', 'b', 'c');
    await session.mkdirp(nested);
    await session.mkdirp(nested);
    expect((await session.stat(nested))?.type).toBe('dir');
    await writeFile(path.join(remote, 'a', 'file'), 'x');
    const err = await session.mkdirp(path.join(remote, 'a', 'file', 'd')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SftpError);
  });

  it('stat, lstat, setAttributes and unlink', async () => {
    const file = path.join(remote, 'attrs.txt');
    const link = path.join(remote, 'attrs.link');
    await writeFile(file, 'abc');
    const { symlink } = await import('node:fs/promises');
    await symlink('attrs.txt', link);
    await session.setAttributes(file, { mode: 0o640, mtimeMs: 1_600_000_000_000 });
    expect(await session.stat(file)).toEqual({ type: 'file', size: 3, mode: 0o640, mtimeMs: 1_600_000_000_000 });
    expect((await session.lstat(link))?.type).toBe('symlink');
    expect((await session.stat(link))?.type).toBe('file');
    await session.unlink(link);
    await session.unlink(file);
    expect(await session.lstat(file)).toBeNull();
    const err = await session.unlink(file).catch((e: unknown) => e);
    expect((err as SftpError).code).toBe('NO_SUCH_FILE');
  });
});

describe('openUnixStream', () => {
  it('carries bytes both ways to a Unix socket on the server', async () => {
    const socketPath = path.join(sshd.dir, 'echo.sock');
    const server = net.createServer((conn) => conn.pipe(conn));
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      const stream = await session.openUnixStream(socketPath);
      const payload = randomBytes(300_000);
      const received: Buffer[] = [];
      let length = 0;
      const echoed = new Promise<Buffer>((resolve, reject) => {
        stream.on('data', (chunk: Buffer) => {
          received.push(chunk);
          length += chunk.length;
          if (length >= payload.length) resolve(Buffer.concat(received));
        });
        stream.on('error', reject);
      });
      stream.write(payload);
      expect((await echoed).equals(payload)).toBe(true);
      stream.end();
      stream.destroy();
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('fails with StreamOpenError when nothing listens there', async () => {
    const err = await session.openUnixStream(path.join(sshd.dir, 'nobody.sock')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamOpenError);
    expect((err as StreamOpenError).message).toContain('nobody.sock');
  });
});

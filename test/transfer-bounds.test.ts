/**
 * Issue 12 finding 6 (the transfer part), against a real sshd: a download never reads past the
 * size the client expects (`expectedSize`) or allows (`maxSize`, used for bundles), whatever the
 * file on the server holds. A rogue server that lists a 1000-byte file and serves 24 MiB costs
 * this client 1001 bytes, not 24 MiB.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { connectSsh, SizeExceededError, type SshSession } from '../src/ssh/transfer.js';
import { startSshd, type TestSshd } from './helpers/sshd.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';
import { rejection } from './helpers/wait.js';

let sshd: TestSshd;
let session: SshSession;
let work: string;
const BIG = 24 * 1024 * 1024;

beforeAll(async () => {
  work = await tempDir('systemsync-bounds-');
  sshd = await startSshd({ dir: path.join(work, 'sshd') });
  session = await connectSsh({ host: '127.0.0.1', port: sshd.port, username: sshd.user, privateKey: sshd.clientKeyPath, knownHostsPath: sshd.knownHostsPath, hostKeyCheck: 'yes' });
  await writeFile(path.join(work, 'big.bin'), randomBytes(BIG));
  await writeFile(path.join(work, 'small.bin'), randomBytes(5000));
});

afterAll(async () => {
  await session?.close();
  await sshd?.stop();
  await cleanupTempDirs();
});

describe('downloads stop at the size the client expects', () => {
  it.each([1000, 3 * 1024 * 1024])('expectedSize %i on a 24 MiB file: SizeExceededError after at most that many bytes, local file removed', async (expectedSize) => {
    let most = 0;
    const local = path.join(work, `out-${expectedSize}`);
    const err = await rejection(
      session.downloadFile(path.join(work, 'big.bin'), local, { expectedSize, expectedHash: 'a'.repeat(64), onProgress: (done) => (most = Math.max(most, done)) }),
    );
    expect(err).toBeInstanceOf(SizeExceededError);
    expect(err.code).toBe('HASH_MISMATCH');
    expect(most).toBeLessThanOrEqual(expectedSize);
    expect(existsSync(local)).toBe(false);
  });

  it('maxSize (bundles): a longer file fails after at most maxSize bytes; a shorter one downloads whole', async () => {
    let most = 0;
    const err = await rejection(session.downloadFile(path.join(work, 'big.bin'), path.join(work, 'out-max'), { maxSize: 65536, onProgress: (done) => (most = Math.max(most, done)) }));
    expect(err).toBeInstanceOf(SizeExceededError);
    expect(most).toBeLessThanOrEqual(65536);
    const ok = await session.downloadFile(path.join(work, 'small.bin'), path.join(work, 'out-small'), { maxSize: 65536 });
    expect(ok.size).toBe(5000);
  });

  it('a file of exactly the expected size still downloads and checks its hash', async () => {
    const content = randomBytes(3 * 1024 * 1024);
    await writeFile(path.join(work, 'exact.bin'), content);
    const hash = createHash('sha256').update(content).digest('hex');
    const result = await session.downloadFile(path.join(work, 'exact.bin'), path.join(work, 'out-exact'), { expectedSize: content.length, expectedHash: hash });
    expect(result).toEqual({ hash, size: content.length });
  });
});

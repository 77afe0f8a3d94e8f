import { afterEach, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StreamedHashes } from '../src/fs/streamedhashes.js';

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** An empty file opened for writing, as the endpoint opens an upload; writes go through `put`. */
function upload(registry: StreamedHashes) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'streamed-'));
  dirs.push(dir);
  const file = path.join(dir, 'x.up');
  const fd = fs.openSync(file, 'w', 0o600);
  const writer = registry.beginWrite(fs.fstatSync(fd, { bigint: true }));
  return {
    file,
    writer,
    put(offset: number, data: Buffer) {
      writer.write(offset, data);
      fs.writeSync(fd, data, 0, data.length, offset);
    },
    close() {
      writer.finish(fs.fstatSync(fd, { bigint: true }));
      fs.closeSync(fd);
    },
    stat: () => fs.statSync(file, { bigint: true }),
  };
}

const a = crypto.randomBytes(300_000);
const b = crypto.randomBytes(200_000);

describe('StreamedHashes', () => {
  it('gives the hash of writes made in order once the writer closed, once', () => {
    const registry = new StreamedHashes();
    const u = upload(registry);
    u.put(0, a);
    u.put(a.length, b);
    expect(registry.take(u.stat())).toBeNull(); // still open
    u.close();
    const st = u.stat();
    expect(registry.take(st)).toBe(sha(Buffer.concat([a, b])));
    expect(registry.take(st)).toBeNull();
  });

  it('has nothing for writes out of order, even when the bytes end up complete', () => {
    const registry = new StreamedHashes();
    const u = upload(registry);
    u.put(a.length, b);
    u.put(0, a);
    u.close();
    expect(fs.readFileSync(u.file).equals(Buffer.concat([a, b]))).toBe(true);
    expect(registry.take(u.stat())).toBeNull();
  });

  it('has nothing when a second writer opened the file meanwhile, or after a failed write', () => {
    const registry = new StreamedHashes();
    const u = upload(registry);
    u.put(0, a);
    const second = registry.beginWrite(u.stat());
    u.put(a.length, b);
    u.close();
    second.finish(null);
    expect(registry.take(u.stat())).toBeNull();

    const v = upload(registry);
    v.put(0, a);
    v.writer.abandon();
    v.close();
    expect(registry.take(v.stat())).toBeNull();
  });

  it('has nothing for a file changed after its writer closed it', async () => {
    const registry = new StreamedHashes();
    const u = upload(registry);
    u.put(0, a);
    u.close();
    fs.appendFileSync(u.file, 'more'); // another size, mtime and ctime
    expect(registry.take(u.stat())).toBeNull();

    const v = upload(registry);
    v.put(0, a);
    v.close();
    await new Promise((r) => setTimeout(r, 20)); // past the file system's clock tick
    fs.chmodSync(v.file, 0o644); // only its ctime moves
    expect(registry.take(v.stat())).toBeNull();
  });
});

describe('the server checking a large upload', () => {
  it('takes the hash the endpoint recorded while writing instead of reading the upload again', async () => {
    const { UploadChecks } = await import('../src/server/uploads.js');
    const { streamedHashes } = await import('../src/fs/streamedhashes.js');
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'streamed-root-'));
    dirs.push(root);
    fs.mkdirSync(path.join(root, '.systemsync', 'tmp'), { recursive: true });
    const content = crypto.randomBytes(1024 * 1024);
    const entry = { type: 'file' as const, size: content.length, mtime: Date.now(), mode: 0o644, hash: sha(content) };
    const checks = new UploadChecks(root, null as never, null as never);
    const write = (name: string, streamedAs: Buffer) => {
      const fd = fs.openSync(path.join(root, '.systemsync', 'tmp', name), 'w', 0o600);
      const writer = streamedHashes.beginWrite(fs.fstatSync(fd, { bigint: true }));
      writer.write(0, streamedAs); // what the endpoint was sent…
      fs.writeSync(fd, content); // …and what is on disk
      writer.finish(fs.fstatSync(fd, { bigint: true }));
      fs.closeSync(fd);
    };
    // The bytes hashed as they came are what counts: another content of the same size is refused
    // even though the file on disk has the hash the entry names.
    write('a.up', crypto.randomBytes(content.length));
    await expect(checks.verifyUpload('a.up', entry)).rejects.toMatchObject({ code: 'HASH_MISMATCH' });
    write('b.up', content);
    expect(await checks.verifyUpload('b.up', entry)).toBe(path.join(fs.realpathSync(root), '.systemsync', 'tmp', 'b.up'));
  });
});

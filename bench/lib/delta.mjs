// Delta transfer cases: an edit of a large file that every node already holds. Both clients reach
// the sshd through their own counting TCP proxy, so the bytes A sends up and B receives are
// counted on the wire (SSH framing, RPC and all). The baseline is `rsync -a` of the same edit,
// one hop, over the same sshd, with its own byte counts (--stats).
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { waitIdle, waitFor, sleep } from './cluster.mjs';
import { withCluster, writeRandomFile } from './cases.mjs';
import { median } from './stats.mjs';

const execFileAsync = promisify(execFile);
const now = () => performance.now();

/** A TCP proxy on 127.0.0.1 to `port` that counts bytes each way: up = client → sshd, down = sshd → client. */
async function countingProxy(port) {
  const bytes = { up: 0, down: 0 };
  const sockets = new Set();
  const server = net.createServer((client) => {
    const target = net.connect(port, '127.0.0.1');
    for (const s of [client, target]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        target.destroy();
      });
    }
    client.on('data', (d) => (bytes.up += d.length));
    target.on('data', (d) => (bytes.down += d.length));
    client.pipe(target);
    target.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    bytes: () => ({ ...bytes }),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Points a client's config at `port`, and trusts the sshd's host key there. */
function throughProxy(ctx, client, port) {
  const text = fs.readFileSync(client.configPath, 'utf8').replace(`port = ${ctx.sshd.port}\n`, `port = ${port}\n`);
  fs.writeFileSync(client.configPath, text);
  fs.appendFileSync(ctx.sshd.knownHostsPath, `[127.0.0.1]:${port} ${ctx.sshd.hostPublicKey}\n`);
}

function sha256Of(file) {
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buffer = Buffer.allocUnsafe(8 << 20);
  try {
    for (let n; (n = fs.readSync(fd, buffer, 0, buffer.length, null)) > 0; ) hash.update(buffer.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** `rsync -a --stats` of directory `src` into `dst` over the sshd: ms, and the bytes it sent and received. */
async function rsyncWithStats(sshd, src, dst) {
  const ssh = ['ssh', '-p', String(sshd.port), '-i', sshd.clientKeyPath, '-o', `UserKnownHostsFile=${sshd.knownHostsPath}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'].join(' ');
  const t0 = now();
  const { stdout } = await execFileAsync('rsync', ['-a', '--stats', '-e', ssh, `${src}/`, `${sshd.user}@127.0.0.1:${dst}/`], { maxBuffer: 1 << 20 });
  const ms = now() - t0;
  const count = (label) => Number(new RegExp(`${label}: ([\\d,]+)`).exec(stdout)?.[1]?.replaceAll(',', '') ?? NaN);
  return { ms, bytes: count('Total bytes sent') + count('Total bytes received') };
}

/**
 * One edit case: a file of `sizeMiB` on every node (copied into the server's folder before it
 * starts; the clients pull it), then `edit(fd, size)` on A, timed until B's copy
 * has the new content. Bytes: A's proxy up + B's proxy down, from the edit until all are idle.
 */
async function editCase(ctx, { name, sizeMiB, edit }) {
  const { reps } = ctx.options;
  const size = sizeMiB * 1048576;
  const original = path.join(ctx.workDir, `${name}-original.bin`);
  writeRandomFile(original, size);
  const runs = [];
  for (let rep = 0; rep < reps; rep++) {
    const proxies = [await countingProxy(ctx.sshd.port), await countingProxy(ctx.sshd.port)];
    try {
      const run = await withCluster(ctx, {}, async (cluster) => {
        const [a, b] = cluster.clients;
        throughProxy(ctx, a, proxies[0].port);
        throughProxy(ctx, b, proxies[1].port);
        // In the server's folder before it starts (it indexes it); each client pulls it once.
        fs.copyFileSync(original, path.join(cluster.server.folder, 'big.bin'));
        await cluster.startAll();
        await waitIdle(cluster.all);
        await sleep(500);
        const target = path.join(b.folder, 'big.bin');
        const inoBefore = fs.statSync(target).ino;
        const before = { up: proxies[0].bytes().up, down: proxies[1].bytes().down };
        const t0 = now();
        const fd = fs.openSync(path.join(a.folder, 'big.bin'), 'r+');
        try {
          edit(fd, size);
        } finally {
          fs.closeSync(fd);
        }
        // B's copy is replaced by a rename once it is whole and checked.
        await waitFor(() => fs.statSync(target, { throwIfNoEntry: false })?.ino !== inoBefore, { timeoutMs: 1_800_000, intervalMs: 5, what: `the edit on ${b.name}` });
        const ms = now() - t0;
        await waitIdle(cluster.all);
        await sleep(300);
        const bytes = proxies[0].bytes().up - before.up + (proxies[1].bytes().down - before.down);
        const expected = sha256Of(path.join(a.folder, 'big.bin'));
        if (sha256Of(target) !== expected || sha256Of(path.join(cluster.server.folder, 'big.bin')) !== expected) throw new Error(`${name}: the edit did not arrive byte-identical`);
        // Baseline: the same edit, one hop, with rsync (the destination holds the original).
        const src = path.join(ctx.workDir, `${name}-rsync-src`);
        const dst = path.join(ctx.workDir, `${name}-rsync-dst`);
        fs.mkdirSync(src, { recursive: true });
        fs.mkdirSync(dst, { recursive: true });
        fs.copyFileSync(path.join(a.folder, 'big.bin'), path.join(src, 'big.bin'));
        fs.copyFileSync(original, path.join(dst, 'big.bin'));
        // An older mtime, as the copy there would have: rsync's quick check must see a change.
        fs.utimesSync(path.join(dst, 'big.bin'), new Date('2001-01-01T00:00:00Z'), new Date('2001-01-01T00:00:00Z'));
        const rsync = await rsyncWithStats(ctx.sshd, src, dst);
        if (sha256Of(path.join(dst, 'big.bin')) !== expected) throw new Error('rsync copied something else');
        fs.rmSync(src, { recursive: true, force: true });
        fs.rmSync(dst, { recursive: true, force: true });
        return { ms, bytes, rsyncMs: rsync.ms, rsyncBytes: rsync.bytes };
      });
      runs.push(run);
      ctx.log(`${name} rep ${rep + 1}: systemsync ${run.ms.toFixed(0)} ms, ${(run.bytes / 1048576).toFixed(2)} MiB on the wire; rsync ${run.rsyncMs.toFixed(0)} ms, ${(run.rsyncBytes / 1048576).toFixed(2)} MiB`);
    } finally {
      for (const p of proxies) await p.close();
    }
  }
  fs.rmSync(original, { force: true });
  const pick = (k) => median(runs.map((r) => r[k]));
  return { sizeMiB, ms: pick('ms'), bytes: pick('bytes'), rsyncMs: pick('rsyncMs'), rsyncBytes: pick('rsyncBytes'), runs };
}

/** 1 MiB of random bytes rewritten in the middle of a `--delta-mib` file (default 1 GiB). */
export function deltaCase(ctx) {
  return editCase(ctx, {
    name: 'delta',
    sizeMiB: ctx.options.deltaMiB,
    edit: (fd, size) => fs.writeSync(fd, crypto.randomBytes(1 << 20), 0, 1 << 20, Math.floor(size / 2) + 12_345),
  });
}

/** 4 KiB appended to a `--append-mib` file (default 256 MiB). */
export function appendCase(ctx) {
  return editCase(ctx, {
    name: 'append',
    sizeMiB: ctx.options.appendMiB,
    edit: (fd, size) => fs.writeSync(fd, crypto.randomBytes(4096), 0, 4096, size),
  });
}

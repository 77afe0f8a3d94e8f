// The benchmark cases. Each one starts fresh daemons (so each daemon's peak RSS belongs to one
// case), measures systemsync, and measures its baseline on the same sshd in the same run.
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeCluster, waitIdle, waitFor, sleep, isIdle, cpuOfTree, cpuOfReapedChildren } from './cluster.mjs';
import { median, percentile, max } from './stats.mjs';

const execFileAsync = promisify(execFile);
const now = () => performance.now();

function sshArgs(sshd) {
  return ['-i', sshd.clientKeyPath, '-o', `UserKnownHostsFile=${sshd.knownHostsPath}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes'];
}

/** One `scp` of `src` to `dst` on the sshd; returns ms. */
export async function timeScp(sshd, src, dst) {
  const t0 = now();
  await execFileAsync('scp', ['-q', '-P', String(sshd.port), ...sshArgs(sshd), src, `${sshd.user}@127.0.0.1:${dst}`], { maxBuffer: 1 << 20 });
  return now() - t0;
}

/** One `rsync -a` over ssh of directory `src` into `dst` on the sshd; returns ms. */
export async function timeRsync(sshd, src, dst, extra = []) {
  const ssh = ['ssh', '-p', String(sshd.port), ...sshArgs(sshd)].join(' ');
  const t0 = now();
  await execFileAsync('rsync', ['-a', ...extra, '-e', ssh, `${src}/`, `${sshd.user}@127.0.0.1:${dst}/`], { maxBuffer: 1 << 20 });
  return now() - t0;
}

/**
 * Writes `total` random bytes to `file` (no two blocks alike at any block size, so delta transfer
 * finds nothing to reuse within the file); returns their sha256.
 */
export function writeRandomFile(file, total) {
  const chunk = Buffer.allocUnsafe(8 << 20);
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'w');
  try {
    for (let done = 0; done < total; ) {
      const n = Math.min(chunk.length, total - done);
      crypto.randomFillSync(chunk, 0, n);
      fs.writeSync(fd, chunk, 0, n);
      hash.update(chunk.subarray(0, n));
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** Peak RSS (VmHWM) of each running daemon, by name. */
export function peaks(cluster) {
  return Object.fromEntries(cluster.all.filter((d) => d.isRunning).map((d) => [d.name, d.memory().hwm]));
}

function mergePeaks(into, more) {
  for (const [name, bytes] of Object.entries(more)) into[name] = Math.max(into[name] ?? 0, bytes);
}

/** Content for file `i`: a header naming it, then pseudo-random bytes, `size` bytes in all. */
export function fileContent(pool, i, size) {
  const header = Buffer.from(`file ${i} ${crypto.randomUUID()}\n`);
  const out = Buffer.allocUnsafe(size);
  header.copy(out, 0, 0, Math.min(size, header.length));
  if (size > header.length) {
    const offset = (i * 7919) % Math.max(1, pool.length - size);
    pool.copy(out, header.length, offset, offset + size - header.length);
  }
  return out;
}

/** Writes `files` files of `size` bytes into `root`, `perDir` to a directory `dirNNNN`; returns ms. */
export function fillFolder(root, files, perDir, size) {
  const pool = crypto.randomBytes(1 << 16);
  const t0 = now();
  for (let i = 0; i < files; i++) {
    const dir = path.join(root, `dir${String(Math.floor(i / perDir)).padStart(4, '0')}`);
    if (i % perDir === 0) fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `file${String(i).padStart(7, '0')}.txt`), fileContent(pool, i, size));
  }
  return now() - t0;
}

/** CPU seconds spent while `fn` runs by each daemon and by the sshd with all its connections. */
async function cpuDuring(ctx, cluster, fn) {
  const read = () => ({ ...Object.fromEntries(cluster.all.map((d) => [d.name, cpuOfTree(d.pid)])), sshd: cpuOfTree(ctx.sshd.pid) });
  const before = read();
  const result = await fn();
  const after = read();
  return { result, cpu: Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]])) };
}

/** CPU seconds a baseline command uses: here (rsync or scp, and ssh) and in the sshd. */
async function baselineCpu(ctx, fn) {
  const before = { local: cpuOfReapedChildren(), sshd: cpuOfTree(ctx.sshd.pid) };
  const result = await fn();
  return { result, cpu: { local: cpuOfReapedChildren() - before.local, sshd: cpuOfTree(ctx.sshd.pid) - before.sshd } };
}

/** Per-key medians of a list of {name: seconds} readings. */
function medianCpu(readings) {
  const keys = [...new Set(readings.flatMap((r) => Object.keys(r)))];
  return Object.fromEntries(keys.map((k) => [k, median(readings.map((r) => r[k]))]));
}

export async function withCluster(ctx, options, fn) {
  const cluster = makeCluster(ctx.sshd, ctx.workDir, { logLevel: ctx.logLevel, nodeArgs: ctx.nodeArgs, endpoint: ctx.endpoint ?? null, ...options });
  try {
    return await fn(cluster);
  } catch (err) {
    for (const d of cluster.all) ctx.log(`--- ${d.name} log tail:\n${d.log().slice(-3000)}`);
    throw err;
  } finally {
    await cluster.stop();
    if (!ctx.keep) cluster.remove();
  }
}

// -------------------------------------------------------------------------------------------------

/** 1. Latency: files written on A one at a time, each timed until its content is on B. */
export async function latencyCase(ctx) {
  const { reps, latencyFiles, latencyIntervalMs } = ctx.options;
  const runs = [];
  const rss = {};
  let idleRss = {};
  for (let rep = 0; rep < reps; rep++) {
    const run = await withCluster(ctx, {}, async (cluster) => {
      await cluster.startAll();
      await waitIdle(cluster.all);
      await sleep(300);
      idleRss = Object.fromEntries(cluster.all.map((d) => [d.name, d.memory().rss]));
      const [a, b] = cluster.clients;
      const expected = new Map();
      const arrived = new Map();
      const check = (name) => {
        const want = expected.get(name);
        if (want === undefined || arrived.has(name)) return;
        let got;
        try {
          got = fs.readFileSync(path.join(b.folder, name));
        } catch {
          return;
        }
        if (got.equals(want.content)) arrived.set(name, now() - want.t0);
      };
      const watcher = fs.watch(b.folder, (_event, name) => name && check(String(name)));
      // A slow fallback in case the watcher drops an event.
      const poller = setInterval(() => {
        for (const name of expected.keys()) check(name);
      }, 50);
      try {
        for (let i = 0; i < latencyFiles; i++) {
          const name = `latency-${rep}-${i}.txt`;
          const content = Buffer.from(`latency probe ${i} ${crypto.randomUUID()}\n`);
          const t0 = now();
          expected.set(name, { t0, content });
          fs.writeFileSync(path.join(a.folder, name), content);
          await sleep(Math.max(0, latencyIntervalMs - (now() - t0)));
        }
        await waitFor(() => arrived.size === latencyFiles, { timeoutMs: 60_000, what: `all ${latencyFiles} latency files on ${b.name}` });
      } finally {
        watcher.close();
        clearInterval(poller);
      }
      mergePeaks(rss, peaks(cluster));
      const times = [...arrived.values()];
      return { p50: percentile(times, 50), p90: percentile(times, 90), p99: percentile(times, 99), max: max(times) };
    });
    ctx.log(`latency rep ${rep + 1}: p50 ${run.p50.toFixed(0)} ms, p99 ${run.p99.toFixed(0)} ms, max ${run.max.toFixed(0)} ms`);
    runs.push(run);
  }
  // Baseline: one scp of a small file (a new SSH connection each time, as a script would do).
  const small = path.join(ctx.workDir, 'latency-small.txt');
  fs.writeFileSync(small, 'small file\n');
  const dstDir = fs.mkdtempSync(path.join(ctx.workDir, 'scp-small-'));
  const scpTimes = [];
  for (let i = 0; i < Math.max(reps, 5); i++) scpTimes.push(await timeScp(ctx.sshd, small, path.join(dstDir, `s${i}.txt`)));
  fs.rmSync(dstDir, { recursive: true, force: true });
  return {
    p50: median(runs.map((r) => r.p50)),
    p90: median(runs.map((r) => r.p90)),
    p99: median(runs.map((r) => r.p99)),
    max: median(runs.map((r) => r.max)),
    scp: median(scpTimes),
    rss,
    idleRss,
    runs,
  };
}

/** 2. Small files: N × 4 KiB in D directories written on A, until all are on B. Baseline rsync -a. */
export async function smallFilesCase(ctx) {
  const { reps, smallFiles, smallDirs, smallSize } = ctx.options;
  const pool = crypto.randomBytes(1 << 20);
  const staging = fs.mkdtempSync(path.join(ctx.workDir, 'small-src-'));
  const plan = [];
  for (let i = 0; i < smallFiles; i++) plan.push({ rel: `d${String(i % smallDirs).padStart(3, '0')}/f${String(i).padStart(6, '0')}.bin`, content: fileContent(pool, i, smallSize) });
  const dirs = [...new Set(plan.map((f) => path.dirname(f.rel)))];
  const writeTree = async (root) => {
    for (const d of dirs) fs.mkdirSync(path.join(root, d), { recursive: true });
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < plan.length) {
          const f = plan[next++];
          await fsp.writeFile(path.join(root, f.rel), f.content);
        }
      }),
    );
  };
  await writeTree(staging);
  const countOn = (root) => {
    let n = 0;
    for (const d of dirs) {
      try {
        n += fs.readdirSync(path.join(root, d)).length;
      } catch {
        // not there yet
      }
    }
    return n;
  };
  const times = [];
  const rsyncTimes = [];
  const rss = {};
  const cpu = [];
  const rsyncCpu = [];
  for (let rep = 0; rep < reps; rep++) {
    const ms = await withCluster(ctx, {}, async (cluster) => {
      await cluster.startAll();
      await waitIdle(cluster.all);
      const [a, b] = cluster.clients;
      const t0 = now();
      const measured = await cpuDuring(ctx, cluster, async () => {
        await writeTree(a.folder);
        await waitFor(() => countOn(b.folder) >= plan.length, { timeoutMs: 1_800_000, intervalMs: 20, what: `${plan.length} files on ${b.name}` });
      });
      const elapsed = now() - t0;
      cpu.push(measured.cpu);
      mergePeaks(rss, peaks(cluster));
      // Untimed: every file arrived whole.
      for (const f of plan) if (!fs.readFileSync(path.join(b.folder, f.rel)).equals(f.content)) throw new Error(`${f.rel} differs on ${b.name}`);
      return elapsed;
    });
    times.push(ms);
    const dst = path.join(ctx.workDir, `rsync-dst-${rep}`);
    const baseline = await baselineCpu(ctx, () => timeRsync(ctx.sshd, staging, dst));
    rsyncTimes.push(baseline.result);
    rsyncCpu.push(baseline.cpu);
    if (countOn(dst) !== plan.length) throw new Error(`rsync copied ${countOn(dst)} of ${plan.length} files`);
    fs.rmSync(dst, { recursive: true, force: true });
    ctx.log(`small files rep ${rep + 1}: systemsync ${ms.toFixed(0)} ms, rsync ${rsyncTimes.at(-1).toFixed(0)} ms`);
  }
  fs.rmSync(staging, { recursive: true, force: true });
  return { ms: median(times), rsync: median(rsyncTimes), rss, times, rsyncTimes, cpu: medianCpu(cpu), baselineCpu: medianCpu(rsyncCpu) };
}

/** 3. Big file: one file of M MiB linked into A's folder, until it is whole on B. Baseline scp. */
export async function bigFileCase(ctx) {
  const { reps, bigMiB } = ctx.options;
  const staging = path.join(ctx.workDir, 'big.bin');
  const total = bigMiB * 1048576;
  const expectedHash = writeRandomFile(staging, total);
  const times = [];
  const scpTimes = [];
  const rss = {};
  const growth = {};
  const cpu = [];
  const scpCpu = [];
  for (let rep = 0; rep < reps; rep++) {
    const ms = await withCluster(ctx, {}, async (cluster) => {
      await cluster.startAll();
      await waitIdle(cluster.all);
      await sleep(200);
      const before = Object.fromEntries(cluster.all.map((d) => [d.name, d.memory().rss]));
      const [a, b] = cluster.clients;
      const target = path.join(b.folder, 'big.bin');
      const t0 = now();
      const measured = await cpuDuring(ctx, cluster, async () => {
        fs.linkSync(staging, path.join(a.folder, 'big.bin'));
        await waitFor(() => fs.statSync(target, { throwIfNoEntry: false })?.size === total, { timeoutMs: 1_800_000, intervalMs: 10, what: `big.bin on ${b.name}` });
      });
      const elapsed = now() - t0;
      cpu.push(measured.cpu);
      const after = peaks(cluster);
      mergePeaks(rss, after);
      for (const [name, peak] of Object.entries(after)) growth[name] = Math.max(growth[name] ?? 0, peak - before[name]);
      const got = crypto.createHash('sha256');
      for await (const c of fs.createReadStream(target, { highWaterMark: 1 << 20 })) got.update(c);
      if (got.digest('hex') !== expectedHash) throw new Error(`big.bin differs on ${b.name}`);
      return elapsed;
    });
    times.push(ms);
    const dst = path.join(ctx.workDir, `scp-big-${rep}.bin`);
    const baseline = await baselineCpu(ctx, () => timeScp(ctx.sshd, staging, dst));
    scpTimes.push(baseline.result);
    scpCpu.push(baseline.cpu);
    if (fs.statSync(dst).size !== total) throw new Error('scp copied a short file');
    fs.rmSync(dst, { force: true });
    ctx.log(`big file rep ${rep + 1}: systemsync ${ms.toFixed(0)} ms, scp ${scpTimes.at(-1).toFixed(0)} ms`);
  }
  fs.rmSync(staging, { force: true });
  return { ms: median(times), scp: median(scpTimes), rss, growth, times, scpTimes, cpu: medianCpu(cpu), baselineCpu: medianCpu(scpCpu) };
}

/**
 * 4–6. A folder of N indexed files: restart time of a client, RSS per indexed file, and the cost
 * of one change (time to commit on the server, time to reach B, longest event-loop stall).
 * The index is built by filling the server's folder before its first start (it indexes what is
 * there) and letting both clients pull everything once.
 */
export async function indexCase(ctx) {
  const { reps, indexFiles, indexFileSize } = ctx.options;
  // Base RSS: the same daemons, idle, with an empty folder.
  const baseRss = await withCluster(ctx, {}, async (cluster) => {
    await cluster.startAll();
    await waitIdle(cluster.all);
    await sleep(500);
    return Object.fromEntries(cluster.all.map((d) => [d.name, d.memory().rss]));
  });
  return withCluster(ctx, {}, async (cluster) => {
    const [a, b] = cluster.clients;
    const fillMs = fillFolder(cluster.server.folder, indexFiles, 1000, indexFileSize);
    const t1 = now();
    await cluster.startServer();
    const serverIndexMs = now() - t1;
    const t2 = now();
    await cluster.startClient(a);
    await cluster.startClient(b);
    await waitFor(async () => (await a.status()).folders[0].files >= indexFiles && (await b.status()).folders[0].files >= indexFiles, {
      timeoutMs: 3_600_000,
      intervalMs: 500,
      what: `both clients to index ${indexFiles} files`,
    });
    await waitIdle(cluster.all, 3_600_000);
    const initialPullMs = now() - t2;
    ctx.log(`index: filled ${indexFiles} files in ${fillMs.toFixed(0)} ms, server indexed them in ${serverIndexMs.toFixed(0)} ms, both clients pulled them in ${initialPullMs.toFixed(0)} ms`);
    await sleep(1000);
    const rssAtIndex = Object.fromEntries(cluster.all.map((d) => [d.name, d.memory().rss]));
    // How much of that RSS is V8's live heap and external buffers, as each daemon reports it.
    const heapAtIndex = {};
    for (const d of cluster.all) {
      const memory = (await d.status().catch(() => null))?.memory;
      if (memory) heapAtIndex[d.name] = memory;
    }
    const peakAtIndex = peaks(cluster);

    // 4. Restart B with the index unchanged: until it is connected and idle.
    const restartTimes = [];
    for (let rep = 0; rep < reps; rep++) {
      await b.stop();
      const t = now();
      await cluster.startClient(b);
      await waitFor(() => isIdle(b), { timeoutMs: 600_000, intervalMs: 20, what: `${b.name} idle after restart` });
      restartTimes.push(now() - t);
      ctx.log(`restart rep ${rep + 1}: ${restartTimes.at(-1).toFixed(0)} ms`);
    }
    await waitIdle(cluster.all);
    const restartPeak = b.memory().hwm;
    // Baseline: rsync finding that nothing changed between B's folder and the server's (one hop,
    // a dry run: the same question a restarted client answers).
    const rsyncNoopTimes = [];
    for (let rep = 0; rep < reps; rep++) rsyncNoopTimes.push(await timeRsync(ctx.sshd, b.folder, cluster.server.folder, ['-n', '--exclude=/.systemsync']));

    // 6. One change at N files. The status call that opens a window is itself work on the event
    // loop; its cost is measured alone first (a window with no change) and shown beside.
    const statusCost = {};
    for (const d of cluster.all) await d.status();
    await sleep(500);
    for (const d of cluster.all) statusCost[d.name] = (await d.status()).eventLoop?.windowMaxStallMs ?? NaN;
    const changes = Math.max(reps, 5);
    const commitTimes = [];
    const deliverTimes = [];
    const stalls = {};
    const p99s = {};
    for (let i = 0; i < changes; i++) {
      await sleep(500);
      for (const d of cluster.all) await d.status(); // open a window
      await sleep(300);
      for (const d of cluster.all) await d.status(); // the window above held the status call; start clean
      const name = `change-${i}.txt`;
      const content = Buffer.from(`one change ${i} ${crypto.randomUUID()}\n`);
      const onServer = path.join(cluster.server.folder, name);
      const onB = path.join(b.folder, name);
      const t = now();
      fs.writeFileSync(path.join(a.folder, name), content);
      let committed = NaN;
      const watcher = fs.watch(cluster.server.folder, () => {
        if (Number.isNaN(committed) && fs.existsSync(onServer)) committed = now() - t;
      });
      try {
        await waitFor(() => fs.existsSync(onServer), { timeoutMs: 60_000, intervalMs: 2, what: `${name} on the server` });
        if (Number.isNaN(committed)) committed = now() - t;
        await waitFor(() => fs.readFileSync(onB, { flag: 'r' }).equals(content), { timeoutMs: 60_000, intervalMs: 2, what: `${name} on ${b.name}` });
      } finally {
        watcher.close();
      }
      deliverTimes.push(now() - t);
      commitTimes.push(committed);
      await sleep(300);
      for (const d of cluster.all) {
        const el = (await d.status()).eventLoop;
        (stalls[d.name] ??= []).push(el?.windowMaxStallMs ?? NaN);
        (p99s[d.name] ??= []).push(el?.windowP99Ms ?? NaN);
      }
    }
    // Baseline for one change: one scp of the same small file (one hop, new connection).
    const scpSmallTimes = [];
    const small = path.join(ctx.workDir, 'change-small.txt');
    fs.writeFileSync(small, 'one change\n');
    for (let i = 0; i < changes; i++) scpSmallTimes.push(await timeScp(ctx.sshd, small, path.join(ctx.workDir, `scp-change-${i}.txt`)));
    const names = cluster.all.map((d) => d.name);
    return {
      files: indexFiles,
      fillMs,
      serverIndexMs,
      initialPullMs,
      restartMs: median(restartTimes),
      restartTimes,
      rsyncNoop: median(rsyncNoopTimes),
      restartPeak,
      baseRss,
      rssAtIndex,
      heapAtIndex,
      peakAtIndex,
      perFile: Object.fromEntries(names.map((n) => [n, (rssAtIndex[n] - baseRss[n]) / indexFiles])),
      commitMs: median(commitTimes),
      scpSmall: median(scpSmallTimes),
      deliverMs: median(deliverTimes),
      commitTimes,
      maxStall: Object.fromEntries(names.map((n) => [n, max(stalls[n])])),
      medianStall: Object.fromEntries(names.map((n) => [n, median(stalls[n])])),
      p99: Object.fromEntries(names.map((n) => [n, median(p99s[n])])),
      statusCost,
      rss: peaks(cluster),
    };
  });
}

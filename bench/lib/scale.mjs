// The two big cases, behind flags so that the default run stays short:
//   --only fanout   one real hub and a load client of N sessions (default 100), each a real SSH
//                   connection speaking the real RPC (dist/load/loadclient.js): how long a small
//                   change pushed by one session takes to reach all the others, and the hub's CPU
//                   while they are connected and idle.
//   --only scale    N files (default 1,000,000) of 256 B in 1,000 directories: first sync of
//                   one client, restart of an unchanged client until idle, one change from one
//                   client to another, and every daemon's peak RSS.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { MONITOR, cpuOfTree, isIdle, sleep, waitFor, waitIdle } from './cluster.mjs';
import { fillFolder, peaks, timeRsync, timeScp, withCluster } from './cases.mjs';
import { median, percentile, max } from './stats.mjs';

const now = () => performance.now();

async function loadClientModule() {
  return import(pathToFileURL(path.join(path.dirname(MONITOR), 'load', 'loadclient.js')).href);
}

function targetOf(sshd) {
  return { host: '127.0.0.1', port: sshd.port, username: sshd.user, privateKey: sshd.clientKeyPath, knownHostsPath: sshd.knownHostsPath, hostKeyCheck: 'yes' };
}

/** CPU seconds the process tree of `pid` uses over `ms`, as a fraction of one core. */
async function cpuShare(pid, ms) {
  const before = cpuOfTree(pid);
  const t0 = now();
  await sleep(ms);
  return (cpuOfTree(pid) - before) / ((now() - t0) / 1000);
}

/**
 * Pushes `changes` small files from `sender`, one every `intervalMs`, and times each until every
 * other session of `load` has applied it (its content written, in apply mode). Returns every
 * (change, receiver) delay in ms, and the hub's CPU seconds over the whole run.
 */
async function timeFanout(ctx, load, hubPid, { changes, intervalMs, tag }) {
  const [sender, ...receivers] = load.sessions;
  const delays = [];
  const perChange = [];
  const cpu0 = cpuOfTree(hubPid);
  const sshd0 = cpuOfTree(ctx.sshd.pid);
  const self0 = process.cpuUsage();
  for (let i = 0; i < changes; i++) {
    const rel = `fanout/${tag}-${i}.txt`;
    const content = Buffer.from(`fan-out probe ${tag} ${i} ${crypto.randomUUID()}\n`);
    const arrived = new Map();
    const onApplied = (e) => {
      if (e.change.path === rel && e.change.entry !== null && !arrived.has(e.session.name)) arrived.set(e.session.name, e.at);
    };
    for (const r of receivers) r.on('applied', onApplied);
    const t0 = now();
    try {
      await sender.pushFile(rel, content);
      await waitFor(() => arrived.size === receivers.length, { timeoutMs: 120_000, intervalMs: 5, what: `${rel} on all ${receivers.length} receivers (${arrived.size} so far)` });
    } finally {
      for (const r of receivers) r.off('applied', onApplied);
    }
    const times = [...arrived.values()].map((at) => at - t0);
    delays.push(...times);
    perChange.push(max(times));
    await sleep(Math.max(0, intervalMs - (now() - t0)));
  }
  const hubCpu = cpuOfTree(hubPid) - cpu0;
  const sshdCpu = cpuOfTree(ctx.sshd.pid) - sshd0;
  const self = process.cpuUsage(self0);
  const loadCpu = (self.user + self.system) / 1e6;
  // Untimed: a receiver in apply mode holds the last probe's bytes.
  const last = receivers.at(-1);
  if (last.options.localRoot !== undefined) {
    const got = fs.readFileSync(path.join(last.options.localRoot, 'fanout', `${tag}-${changes - 1}.txt`), 'utf8');
    if (!got.startsWith(`fan-out probe ${tag} ${changes - 1} `)) throw new Error(`${last.name} holds the wrong content: ${got}`);
  }
  return { delays, perChange, hubCpu, sshdCpu, loadCpu };
}

/** 7. One hub, N load sessions: fan-out latency of one small change, and idle hub CPU. */
export async function fanoutCase(ctx) {
  const { fanoutClients, fanoutChanges, latencyIntervalMs, quick } = ctx.options;
  const { LoadClient } = await loadClientModule();
  const idleMs = quick ? 3000 : 10_000;
  return withCluster(ctx, { clients: 0 }, async (cluster) => {
    await cluster.startServer();
    const hub = cluster.server;
    const common = { folder: 'data', target: targetOf(ctx.sshd), rpcSocket: path.join(hub.stateDir, 'rpc.sock'), mode: 'apply', connectConcurrency: 8 };
    await sleep(1000);
    const idleAlone = await cpuShare(hub.pid, idleMs);

    // Baseline in the same run: the same change reaching one other session (2 sessions in all).
    const pair = new LoadClient({ ...common, sessions: 2, prefix: 'pair', localBase: path.join(cluster.dir, 'pair') });
    await pair.connect();
    const one = await timeFanout(ctx, pair, hub.pid, { changes: fanoutChanges, intervalMs: latencyIntervalMs, tag: 'pair' });
    await pair.close();
    ctx.log(`fanout to 1: p50 ${percentile(one.delays, 50).toFixed(0)} ms, p99 ${percentile(one.delays, 99).toFixed(0)} ms`);

    const load = new LoadClient({ ...common, sessions: fanoutClients, prefix: 'load', localBase: path.join(cluster.dir, 'load') });
    const tc = now();
    await load.connect();
    const connectMs = now() - tc;
    await waitFor(() => load.sessions.every((s) => s.isCaughtUp), { timeoutMs: 300_000, what: 'every session caught up' });
    ctx.log(`fanout: ${fanoutClients} sessions connected in ${connectMs.toFixed(0)} ms`);
    await sleep(2000);
    const idleConnected = await cpuShare(hub.pid, idleMs);
    const idleSshd = await cpuShare(ctx.sshd.pid, idleMs);
    const many = await timeFanout(ctx, load, hub.pid, { changes: fanoutChanges, intervalMs: latencyIntervalMs, tag: 'many' });
    ctx.log(`fanout to ${fanoutClients - 1}: p50 ${percentile(many.delays, 50).toFixed(0)} ms, p99 ${percentile(many.delays, 99).toFixed(0)} ms`);
    const rss = peaks(cluster);
    await load.close();
    // Baseline for the latency: one scp of a small file (one hop, new connection).
    const small = path.join(cluster.dir, 'fanout-small.txt');
    fs.writeFileSync(small, 'small file\n');
    const scp = [];
    for (let i = 0; i < 5; i++) scp.push(await timeScp(ctx.sshd, small, path.join(cluster.dir, `scp-fanout-${i}.txt`)));
    return {
      clients: fanoutClients,
      changes: fanoutChanges,
      connectMs,
      p50: percentile(many.delays, 50),
      p99: percentile(many.delays, 99),
      max: max(many.delays),
      lastPerChangeP50: median(many.perChange),
      oneP50: percentile(one.delays, 50),
      oneP99: percentile(one.delays, 99),
      hubCpuPerChangeMs: (many.hubCpu / fanoutChanges) * 1000,
      hubCpuPerChangeOneMs: (one.hubCpu / fanoutChanges) * 1000,
      sshdCpuPerChangeMs: (many.sshdCpu / fanoutChanges) * 1000,
      loadCpuPerChangeMs: (many.loadCpu / fanoutChanges) * 1000,
      idleAlone,
      idleConnected,
      idleSshd,
      scp: median(scp),
      rss,
    };
  });
}

/** Removes a big tree in a niced child process (a million files take a while), without blocking. */
function removeLater(dir) {
  return new Promise((resolve) => {
    const child = spawn('nice', ['-n', '19', 'rm', '-rf', dir], { stdio: 'ignore' });
    child.once('exit', resolve);
    child.once('error', resolve);
  });
}

/** 8. A million files: first sync to one client, restart until idle, one change A → B, peak RSS. */
export async function scaleCase(ctx) {
  const { scaleFiles, scaleDirs, indexFileSize } = ctx.options;
  const perDir = Math.ceil(scaleFiles / scaleDirs);
  // A million files take minutes to remove: the cluster goes in a niced child, after the report.
  let clusterDir = null;
  // Log level warn: at info the hub writes one line per file it indexes.
  const result = await withCluster({ ...ctx, keep: true }, { logLevel: 'warn' }, async (cluster) => {
    clusterDir = cluster.dir;
    const [a, b] = cluster.clients;
    let fillMs;
    if (ctx.options.scaleFrom !== undefined) {
      // A tree written by an earlier run's fill (same layout), moved into place: saves the fill.
      fs.rmSync(cluster.server.folder, { recursive: true });
      fs.renameSync(ctx.options.scaleFrom, cluster.server.folder);
      const count = fs.readdirSync(cluster.server.folder).reduce((n, d) => n + fs.readdirSync(path.join(cluster.server.folder, d)).length, 0);
      if (count !== scaleFiles) throw new Error(`--scale-from holds ${count} files, not ${scaleFiles}`);
      fillMs = NaN;
    } else {
      fillMs = fillFolder(cluster.server.folder, scaleFiles, perDir, indexFileSize);
    }
    ctx.log(`scale: ${scaleFiles} files in place (${Number.isNaN(fillMs) ? 'moved from --scale-from' : `written in ${(fillMs / 1000).toFixed(0)} s`})`);

    const t1 = now();
    await cluster.startServer();
    // The hub answers status at once, but opens rpc.sock only once it has indexed the folder.
    await waitFor(() => fs.existsSync(path.join(cluster.server.stateDir, 'rpc.sock')), { timeoutMs: 7_200_000, intervalMs: 200, what: 'the hub to index the folder' });
    const serverIndexMs = now() - t1;
    ctx.log(`scale: hub indexed in ${(serverIndexMs / 1000).toFixed(1)} s`);

    // First sync to one client: start → every file there and idle.
    const t2 = now();
    await cluster.startClient(a);
    await waitFor(async () => (await a.status()).folders[0].files >= scaleFiles && (await isIdle(a)), { timeoutMs: 7_200_000, intervalMs: 500, what: `${a.name} to pull ${scaleFiles} files` });
    const firstSyncMs = now() - t2;
    ctx.log(`scale: first sync of ${a.name} ${(firstSyncMs / 1000).toFixed(1)} s`);
    await sleep(1000);
    const heapA = (await a.status()).memory;
    const rssA = a.memory().rss;

    // Restart of the unchanged client until idle, beside `rsync -a -n` finding nothing to do.
    await a.stop();
    const t3 = now();
    await cluster.startClient(a);
    await waitFor(() => isIdle(a), { timeoutMs: 3_600_000, intervalMs: 50, what: `${a.name} idle after restart` });
    const restartMs = now() - t3;
    ctx.log(`scale: restart of ${a.name} until idle ${(restartMs / 1000).toFixed(1)} s`);
    const rsyncNoopMs = await timeRsync(ctx.sshd, a.folder, cluster.server.folder, ['-n', '--exclude=/.systemsync']);
    ctx.log(`scale: rsync -a -n ${(rsyncNoopMs / 1000).toFixed(1)} s`);

    // Baseline of the first sync: rsync of the whole tree, one hop over the same sshd, into an
    // empty directory (after the daemons' figures: they come first in a long run).
    const rsyncDst = path.join(ctx.workDir, 'scale-rsync');
    const rsyncMs = await timeRsync(ctx.sshd, cluster.server.folder, rsyncDst, ['--exclude=/.systemsync']);
    ctx.log(`scale: rsync one hop ${(rsyncMs / 1000).toFixed(1)} s`);
    const removing = removeLater(rsyncDst);

    // Another client (untimed first sync), then single changes A → B.
    const t4 = now();
    await cluster.startClient(b);
    await waitFor(async () => (await b.status()).folders[0].files >= scaleFiles && (await isIdle(b)), { timeoutMs: 7_200_000, intervalMs: 500, what: `${b.name} to pull ${scaleFiles} files` });
    const secondSyncMs = now() - t4;
    ctx.log(`scale: ${b.name} pulled in ${(secondSyncMs / 1000).toFixed(1)} s`);
    await waitIdle(cluster.all, 3_600_000);
    await sleep(1000);
    const changeTimes = [];
    for (let i = 0; i < 5; i++) {
      await sleep(500);
      const name = `scale-change-${i}.txt`;
      const content = Buffer.from(`one change ${i} ${crypto.randomUUID()}\n`);
      const onB = path.join(b.folder, name);
      const t = now();
      fs.writeFileSync(path.join(a.folder, name), content);
      await waitFor(() => fs.readFileSync(onB).equals(content), { timeoutMs: 60_000, intervalMs: 2, what: `${name} on ${b.name}` });
      changeTimes.push(now() - t);
    }
    const small = path.join(ctx.workDir, 'scale-small.txt');
    fs.writeFileSync(small, 'one change\n');
    const scp = [];
    for (let i = 0; i < 5; i++) scp.push(await timeScp(ctx.sshd, small, path.join(ctx.workDir, `scp-scale-${i}.txt`)));
    const rss = peaks(cluster);
    const heap = {};
    const rssNow = {};
    for (const d of cluster.all) {
      heap[d.name] = (await d.status()).memory;
      rssNow[d.name] = d.memory().rss;
    }
    await removing;
    return { files: scaleFiles, dirs: scaleDirs, fillMs, rsyncMs, serverIndexMs, firstSyncMs, heapA, rssA, restartMs, rsyncNoopMs, secondSyncMs, changeMs: median(changeTimes), changeMax: max(changeTimes), changeTimes, scp: median(scp), rss, heap, rssNow };
  }).finally(() => {
    if (clusterDir !== null && !ctx.keep) spawn('nice', ['-n', '19', 'rm', '-rf', clusterDir], { stdio: 'ignore', detached: true }).unref();
  });
  return result;
}

// A client's memory at N indexed files, on real daemons: the hub's folder is filled before its
// start, one client pulls everything, then (after idle) its RSS, V8 heap and /proc figures are
// printed, and with --snapshot DIR a heap snapshot of the client is written there (SIGUSR2,
// --heapsnapshot-signal). The client is then restarted with its index unchanged and measured again.
//
//   node bench/profile-index.mjs [--files N] [--per-dir N] [--snapshot DIR] [--node-args "..."] [--keep]
//
// Summarise a snapshot with `node bench/heap-summary.mjs FILE`.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startSshd } from '../scripts/private-sshd.mjs';
import { makeCluster, waitFor, waitIdle, sleep, memoryOf, cpuOfTree } from './lib/cluster.mjs';
import { fillFolder } from './lib/cases.mjs';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const files = Number(value('--files', '100000'));
const perDir = Number(value('--per-dir', '1000'));
const snapDir = value('--snapshot', null);
const extra = value('--node-args', '').split(' ').filter(Boolean);
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'systemsync-profidx-'));
const sshd = await startSshd({ dir: path.join(workDir, 'sshd') });
const nodeArgs = [...extra, ...(snapDir === null ? [] : ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${path.resolve(snapDir)}`])];
if (snapDir !== null) fs.mkdirSync(snapDir, { recursive: true });
const cluster = makeCluster(sshd, workDir, { clients: 1, logLevel: value('--log-level', 'warn'), nodeArgs });
const [a] = cluster.clients;

function procFigures(pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) / 1024;
  return `RSS ${kib('VmRSS').toFixed(1)} MiB (anon ${kib('RssAnon').toFixed(1)}, file ${kib('RssFile').toFixed(1)}), HWM ${kib('VmHWM').toFixed(1)} MiB`;
}

async function report(label, d) {
  const st = await d.status();
  const m = st.memory;
  const f = (x) => (x / 1048576).toFixed(1);
  console.log(`${label} ${d.name}: files ${st.folders?.[0]?.files ?? '?'}; ${procFigures(d.pid)}; heap used ${f(m.heapUsed)} of ${f(m.heapTotal)} MiB, external ${f(m.external)} MiB; load ${load()}`);
  return memoryOf(d.pid).rss;
}

try {
  await cluster.startAll();
  await waitIdle(cluster.all);
  await sleep(500);
  const base = { hub: await report('idle, empty', cluster.server), alpha: await report('idle, empty', a) };
  await cluster.stop();
  const fillMs = fillFolder(cluster.server.folder, files, perDir, 256);
  console.log(`filled ${files} files in ${fillMs.toFixed(0)} ms`);
  const t0 = Date.now();
  await cluster.startServer();
  console.log(`hub indexed in ${Date.now() - t0} ms`);
  const t1 = Date.now();
  const hubCpu0 = cpuOfTree(cluster.server.pid);
  await cluster.startClient(a);
  await waitFor(async () => (await a.status()).folders[0].files >= files, { timeoutMs: 3_600_000, intervalMs: 1000, what: 'alpha pulled all' });
  await waitIdle(cluster.all, 3_600_000);
  console.log(`alpha pulled ${files} in ${Date.now() - t1} ms; CPU alpha ${cpuOfTree(a.pid).toFixed(2)} s, hub ${(cpuOfTree(cluster.server.pid) - hubCpu0).toFixed(2)} s`);
  await sleep(2000);
  for (const d of cluster.all) {
    const rss = await report('after pull', d);
    console.log(`  per file above idle base: ${((rss - base[d.name]) / files).toFixed(0)} B`);
  }
  if (snapDir !== null) {
    process.kill(a.pid, 'SIGUSR2');
    await sleep(20000);
    await report('after snapshot', a);
  }
  await a.stop();
  const t2 = Date.now();
  await cluster.startClient(a);
  await waitIdle([a], 600_000);
  console.log(`restart until idle: ${Date.now() - t2} ms; CPU alpha ${cpuOfTree(a.pid).toFixed(2)} s`);
  await sleep(2000);
  let rss = await report('after restart', a);
  console.log(`  per file above idle base: ${((rss - base.alpha) / files).toFixed(0)} B`);
  await sleep(15000);
  rss = await report('after restart +17 s', a);
  console.log(`  per file above idle base: ${((rss - base.alpha) / files).toFixed(0)} B`);
  if (snapDir !== null) {
    process.kill(a.pid, 'SIGUSR2');
    await sleep(20000);
  }
  // --variants "ARGS|ARGS|...": restart alpha with each set of node args (ENV=VALUE words are set
  // in its environment instead), unchanged index, and measure it idle after 2 s and after 15 s.
  for (const variant of value('--variants', '').split('|').filter((v) => v.trim() !== '')) {
    const words = variant.split(' ').filter(Boolean);
    const env = words.filter((w) => /^[A-Z_]+=/.test(w));
    const saved = { ...process.env };
    for (const e of env) process.env[e.slice(0, e.indexOf('='))] = e.slice(e.indexOf('=') + 1);
    await a.stop();
    const t = Date.now();
    a.start({ logLevel: value('--log-level', 'warn'), nodeArgs: words.filter((w) => !env.includes(w)) });
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    await waitFor(async () => (await a.status().catch(() => null))?.connected === true, { timeoutMs: 600_000, intervalMs: 20, what: 'alpha connected' });
    await waitIdle([a], 600_000);
    console.log(`variant [${variant}]: restart until idle ${Date.now() - t} ms; CPU alpha ${cpuOfTree(a.pid).toFixed(2)} s`);
    await sleep(2000);
    let r = await report(`  +2 s [${variant}]`, a);
    console.log(`    per file above idle base: ${((r - base.alpha) / files).toFixed(0)} B`);
    await sleep(15000);
    r = await report(`  +17 s [${variant}]`, a);
    console.log(`    per file above idle base: ${((r - base.alpha) / files).toFixed(0)} B`);
  }
} finally {
  await cluster.stop().catch(() => undefined);
  await sshd.stop();
  if (!flag('--keep')) fs.rmSync(workDir, { recursive: true, force: true });
  else console.log(`kept ${workDir}`);
}

// One big file A → server → B on real daemons, with their per-phase timeline and (optionally)
// CPU profiles, to see where a large transfer spends its time.
//
//   node bench/profile-big.mjs [--mib N] [--cpu-prof DIR] [--endpoint] [--keep]
//
// Prints, for each daemon, its CPU seconds during the transfer and the debug log lines of the
// transfer with their offsets from the moment the file appeared on A, then scp of the same file
// (one hop, same sshd) and the load average before and after. With --cpu-prof, each daemon
// writes a .cpuprofile into DIR when it stops (open them in Chrome's DevTools, or summarise them
// with `node bench/profile-summary.mjs DIR`).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startSshd, freePort } from '../scripts/private-sshd.mjs';
import { makeCluster, prepareEndpoint, waitFor, waitIdle, sleep, cpuOfTree } from './lib/cluster.mjs';
import { writeRandomFile, timeScp } from './lib/cases.mjs';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const mib = Number(value('--mib', '1024'));
const profDir = value('--cpu-prof', null);
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'systemsync-profile-'));
const sshd = await startSshd({ dir: path.join(workDir, 'sshd') });
const endpoint = flag('--endpoint') ? await prepareEndpoint(path.join(workDir, 'endpoint'), await freePort()) : null;
const nodeArgs = profDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${path.resolve(profDir)}`, '--cpu-prof-interval=500'];
const cluster = makeCluster(sshd, workDir, { logLevel: 'debug', nodeArgs, endpoint });
const staging = path.join(workDir, 'big.bin');
const total = mib * 1048576;
const expected = writeRandomFile(staging, total);
try {
  await cluster.startAll();
  await waitIdle(cluster.all);
  await sleep(300);
  const [a, b] = cluster.clients;
  const target = path.join(b.folder, 'big.bin');
  const cpu0 = Object.fromEntries([...cluster.all.map((d) => [d.name, cpuOfTree(d.pid)]), ['sshd', cpuOfTree(sshd.pid)]]);
  const load0 = load();
  const t0 = Date.now();
  fs.linkSync(staging, path.join(a.folder, 'big.bin'));
  await waitFor(() => fs.statSync(target, { throwIfNoEntry: false })?.size === total, { timeoutMs: 1_800_000, intervalMs: 10, what: 'big.bin on beta' });
  const ms = Date.now() - t0;
  const cpu = Object.fromEntries([...cluster.all.map((d) => [d.name, cpuOfTree(d.pid) - cpu0[d.name]]), ['sshd', cpuOfTree(sshd.pid) - cpu0.sshd]]);
  const load1 = load();
  await waitIdle(cluster.all);
  await cluster.stop();
  const scpLoad0 = load();
  const scpMs = await timeScp(sshd, staging, path.join(workDir, 'scp.bin'));
  const scpLoad1 = load();
  const got = fs.readFileSync(target);
  const { createHash } = await import('node:crypto');
  if (createHash('sha256').update(got).digest('hex') !== expected) throw new Error('big.bin differs on beta');
  console.log(`${mib} MiB A → B: ${ms} ms (${(mib / (ms / 1000)).toFixed(1)} MiB/s), load ${load0} → ${load1}`);
  console.log(`scp one hop: ${scpMs.toFixed(0)} ms (${(mib / (scpMs / 1000)).toFixed(1)} MiB/s), load ${scpLoad0} → ${scpLoad1}`);
  console.log(`CPU s during the transfer: ${Object.entries(cpu).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`);
  for (const d of cluster.all) {
    console.log(`--- ${d.name}`);
    for (const line of d.log().split('\n')) {
      const at = Date.parse(line.slice(0, 24));
      if (!Number.isFinite(at) || at < t0 - 50) continue;
      if (/stopping|stopped|disconnected|keepalive/.test(line)) continue;
      console.log(`  +${String(at - t0).padStart(6)} ms ${line.slice(25, 220)}`);
    }
  }
} finally {
  await cluster.stop().catch(() => undefined);
  await sshd.stop();
  if (!flag('--keep')) fs.rmSync(workDir, { recursive: true, force: true });
  else console.log(`kept ${workDir}`);
}

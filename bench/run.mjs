#!/usr/bin/env node
// `npm run bench`: systemsync against rsync and scp on a private sshd on 127.0.0.1.
// Starts a real server and two clients (dist/monitor.js) per case, prints a markdown table and
// writes it to bench/RESULTS.md (or --out FILE). Every figure is the median of --reps runs, each
// measured beside its baseline on the same sshd in the same run.
//
//   node bench/run.mjs [--quick] [--reps N] [--small-files N] [--small-dirs N] [--big-mib N] [--delta-mib N] [--append-mib N]
//                      [--index-files N] [--latency-files N] [--latency-interval MS]
//                      [--only latency,small,big,index,fanout,scale] [--out FILE] [--keep] [--log-level L]
//                      [--fanout-clients N] [--fanout-changes N] [--scale-files N] [--scale-dirs N]
//                      [--scale-from DIR]  (a tree an earlier scale run wrote, moved into place)
//
// `fanout` (100 load sessions on one hub) and `scale` (a million files) run only when named in
// --only: the default run is the first four cases. Latency, small and big run twice: through the
// system sshd, then through the server's embedded endpoint ([listen]); the second table sets
// them side by side (--no-embedded skips the second run).
//
// The sshd is started by scripts/private-sshd.mjs, the same starter the tests use.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync, spawnSync } from 'node:child_process';
import { latencyCase, smallFilesCase, bigFileCase, indexCase } from './lib/cases.mjs';
import { fanoutCase, scaleCase } from './lib/scale.mjs';
import { MONITOR, prepareEndpoint } from './lib/cluster.mjs';
import { deltaCase, appendCase } from './lib/delta.mjs';
import { ms, mib, ratio } from './lib/stats.mjs';
import { freePort, startSshd } from '../scripts/private-sshd.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CASES = ['latency', 'small', 'big', 'delta', 'append', 'index', 'fanout', 'scale'];
/** The cases also run against the server's embedded endpoint, for the side-by-side table. */
const EMBEDDED_CASES = ['latency', 'small', 'big'];
/** The cases run when --only is not given. */
const DEFAULT_CASES = ['latency', 'small', 'big', 'delta', 'append', 'index'];

const USAGE = `usage: node bench/run.mjs [--quick] [--reps N] [--small-files N] [--small-dirs N] [--big-mib N] [--delta-mib N] [--append-mib N]
       [--index-files N] [--latency-files N] [--latency-interval MS] [--only ${CASES.join(',')}]
       [--out FILE] [--keep] [--log-level debug|info|warn] [--no-embedded]
       [--fanout-clients N] [--fanout-changes N] [--scale-files N] [--scale-dirs N] [--scale-from DIR]
fanout and scale run only when named in --only.`;

function parseArgs(argv) {
  const quick = argv.includes('--quick');
  const options = {
    quick,
    reps: 3,
    latencyFiles: quick ? 15 : 100,
    latencyIntervalMs: 200,
    smallFiles: quick ? 500 : 10_000,
    smallDirs: quick ? 10 : 100,
    smallSize: 4096,
    bigMiB: quick ? 64 : 1024,
    deltaMiB: quick ? 64 : 1024,
    appendMiB: quick ? 32 : 256,
    indexFiles: quick ? 2000 : 100_000,
    indexFileSize: 256,
    fanoutClients: quick ? 10 : 100,
    fanoutChanges: quick ? 5 : 20,
    scaleFiles: quick ? 20_000 : 1_000_000,
    scaleDirs: quick ? 100 : 1000,
    only: DEFAULT_CASES,
    out: path.join(HERE, 'RESULTS.md'),
    keep: false,
    logLevel: 'info',
  };
  const numeric = {
    '--reps': 'reps',
    '--small-files': 'smallFiles',
    '--small-dirs': 'smallDirs',
    '--big-mib': 'bigMiB',
    '--delta-mib': 'deltaMiB',
    '--append-mib': 'appendMiB',
    '--index-files': 'indexFiles',
    '--latency-files': 'latencyFiles',
    '--latency-interval': 'latencyIntervalMs',
    '--fanout-clients': 'fanoutClients',
    '--fanout-changes': 'fanoutChanges',
    '--scale-files': 'scaleFiles',
    '--scale-dirs': 'scaleDirs',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--quick') continue;
    if (arg === '--no-embedded') {
      options.noEmbedded = true;
      continue;
    }
    else if (arg === '--keep') options.keep = true;
    else if (arg === '--out') options.out = path.resolve(value());
    else if (arg === '--log-level') options.logLevel = value();
    else if (arg === '--scale-from') options.scaleFrom = path.resolve(value());
    else if (arg === '--only') {
      options.only = value().split(',').map((s) => s.trim()).filter(Boolean);
      const unknown = options.only.filter((c) => !CASES.includes(c));
      if (unknown.length > 0) throw new Error(`--only: unknown case(s) ${unknown.join(', ')}; expected some of ${CASES.join(', ')}`);
    } else if (arg in numeric) {
      const v = Number(value());
      if (!Number.isInteger(v) || v < 1) throw new Error(`${arg}: expected a positive whole number, got ${argv[i]}`);
      options[numeric[arg]] = v;
    } else if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
      process.exit(0);
    } else throw new Error(`unknown argument ${arg}`);
  }
  options.smallDirs = Math.min(options.smallDirs, options.smallFiles);
  return options;
}

const ok = (met) => (met ? 'yes' : '**no**');

function buildReport(o, r, env) {
  const L = [];
  const row = (...cells) => L.push(`| ${cells.join(' | ')} |`);
  L.push(`## systemsync benchmark${o.quick ? ' (quick mode)' : ''}`);
  L.push('');
  L.push(`${env.when} · ${env.cpus} × ${env.cpu} · Node ${process.version} · ${env.ssh} · ${env.rsync} · loopback sshd on 127.0.0.1.`);
  L.push(`Each figure is the median of ${o.reps} run(s); systemsync goes two hops (client A → server → client B), the baseline one hop, both through the same sshd in the same run.`);
  L.push('');
  row('measure', 'systemsync', 'baseline (measured in this run)', 'ratio', 'target', 'met');
  row('---', '---:', '---', '---:', '---', '---');
  if (r.latency) {
    const x = r.latency;
    const base = `one \`scp\` of a small file: ${ms(x.scp)}`;
    row(`latency p50 (${o.latencyFiles} files, ${o.latencyIntervalMs} ms apart, A → B)`, ms(x.p50), base, ratio(x.p50, x.scp), '≤ 100 ms', ok(x.p50 <= 100));
    row('latency p90', ms(x.p90), base, ratio(x.p90, x.scp), '', '');
    row('latency p99', ms(x.p99), base, ratio(x.p99, x.scp), '≤ 300 ms', ok(x.p99 <= 300));
    row('latency max', ms(x.max), base, ratio(x.max, x.scp), '', '');
  }
  if (r.small) {
    const x = r.small;
    row(`${o.smallFiles} × ${o.smallSize / 1024} KiB files in ${o.smallDirs} dirs (write on A → all on B)`, ms(x.ms), `\`rsync -a\` over ssh: ${ms(x.rsync)}`, ratio(x.ms, x.rsync), '≤ 1.5 × rsync', ok(x.ms <= 1.5 * x.rsync));
  }
  if (r.big) {
    const x = r.big;
    row(`${o.bigMiB} MiB file (A → B)`, ms(x.ms), `\`scp\` (one hop): ${ms(x.scp)}`, ratio(x.ms, x.scp), '≤ 1.5 × scp', ok(x.ms <= 1.5 * x.scp));
    const worst = Math.max(...Object.values(x.growth));
    row(`RSS growth during the ${o.bigMiB} MiB transfer (worst daemon)`, mib(worst), Object.entries(x.growth).map(([n, b]) => `${n} ${mib(b)}`).join(', '), ratio(worst, 64 * 1048576) + ' of target', '≤ 64 MB', ok(worst <= 64e6));
  }
  const small = (bytes) => (bytes < 1048576 ? `${(bytes / 1024).toFixed(0)} KiB` : mib(bytes));
  if (r.delta) {
    const x = r.delta;
    const base = `\`rsync -a\` one hop: ${small(x.rsyncBytes)}`;
    row(`1 MiB rewritten in the middle of a ${x.sizeMiB} MiB file everywhere: bytes up by A + down to B, on the wire`, small(x.bytes), base, ratio(x.bytes, x.rsyncBytes), '≤ 8 MiB', ok(x.bytes <= 8 * 1048576));
    row('the same edit: time until B has it', ms(x.ms), `\`rsync -a\` one hop: ${ms(x.rsyncMs)}`, ratio(x.ms, x.rsyncMs), '≤ 1.5 × rsync', ok(x.ms <= 1.5 * x.rsyncMs));
  }
  if (r.append) {
    const x = r.append;
    row(`4 KiB appended to a ${x.sizeMiB} MiB file: bytes up by A + down to B, on the wire`, small(x.bytes), `\`rsync -a\` one hop: ${small(x.rsyncBytes)}`, ratio(x.bytes, x.rsyncBytes), '≤ 1 MiB', ok(x.bytes <= 1048576));
    row('the same append: time until B has it', ms(x.ms), `\`rsync -a\` one hop: ${ms(x.rsyncMs)}`, ratio(x.ms, x.rsyncMs), '', '');
  }
  if (r.index) {
    const x = r.index;
    row(`restart of a client with ${x.files} unchanged files (start → connected and idle)`, ms(x.restartMs), `\`rsync -a -n\` finding nothing to do: ${ms(x.rsyncNoop)}`, ratio(x.restartMs, x.rsyncNoop), '≤ 5 s', ok(x.restartMs <= 5000));
    for (const [name, perFile] of Object.entries(x.perFile)) {
      const base = x.baseRss[name];
      const heap = x.heapAtIndex?.[name];
      const split = heap ? `; of it V8 heap in use ${mib(heap.heapUsed)} (of ${mib(heap.heapTotal)} reserved), external ${mib(heap.external)}` : '';
      row(`RSS per indexed file at ${x.files} files, ${name}`, `${perFile.toFixed(0)} B/file`, `idle, empty folder: ${mib(base)}; at ${x.files}: ${mib(x.rssAtIndex[name])}${split}`, ratio(perFile, 1024) + ' of target', '≤ 1 KiB/file + ≤ 80 MB base', ok(perFile <= 1024 && base <= 80e6));
    }
    row(`one change at ${x.files} files: write on A → committed on the server`, ms(x.commitMs), `one \`scp\` of a small file: ${ms(x.scpSmall)}`, ratio(x.commitMs, x.scpSmall), '≤ 20 ms', ok(x.commitMs <= 20));
    row(`one change at ${x.files} files: write on A → on B`, ms(x.deliverMs), `one \`scp\` of a small file: ${ms(x.scpSmall)}`, ratio(x.deliverMs, x.scpSmall), '', '');
    const worstStall = Math.max(...Object.values(x.maxStall));
    row(
      `longest event-loop stall around one change at ${x.files} files (worst over changes)`,
      Object.entries(x.maxStall).map(([n, v]) => `${n} ${ms(v)}`).join(', '),
      `one \`status\` call alone: ${Object.entries(x.statusCost).map(([n, v]) => `${n} ${ms(v)}`).join(', ')}`,
      ratio(worstStall, 50) + ' of target',
      '≤ 50 ms',
      ok(worstStall <= 50),
    );
  }
  if (r.fanout) {
    const x = r.fanout;
    const base = `the same change to 1 other session: p50 ${ms(x.oneP50)}, p99 ${ms(x.oneP99)}; one \`scp\`: ${ms(x.scp)}`;
    row(`${x.clients} load sessions on one hub: a small change pushed by one reaches all ${x.clients - 1} others, p50 (${x.changes} changes)`, ms(x.p50), base, ratio(x.p50, x.oneP50), '≤ 300 ms', ok(x.p50 <= 300));
    row(`the same, p99`, ms(x.p99), base, ratio(x.p99, x.oneP99), '≤ 1000 ms', ok(x.p99 <= 1000));
    row(`hub CPU per change fanned out to ${x.clients - 1} sessions`, ms(x.hubCpuPerChangeMs), `to 1 session: ${ms(x.hubCpuPerChangeOneMs)}`, ratio(x.hubCpuPerChangeMs, x.hubCpuPerChangeOneMs), '', '');
    const pct = (v) => `${(v * 100).toFixed(2)}%`;
    row(`CPU per change fanned out to ${x.clients - 1} sessions: the load client, sshd`, `${ms(x.loadCpuPerChangeMs)}, ${ms(x.sshdCpuPerChangeMs)}`, `the hub: ${ms(x.hubCpuPerChangeMs)}`, '', '', '');
    row(`hub peak RSS with ${x.clients} sessions`, mib(x.rss.hub), '', '', '', '');
    row(`hub CPU with ${x.clients} sessions connected and idle`, `${pct(x.idleConnected)} of a core`, `the hub with no client: ${pct(x.idleAlone)}; sshd with the ${x.clients} connections: ${pct(x.idleSshd)}`, '', '≤ 1% of a core', ok(x.idleConnected <= 0.01));
  }
  if (r.scale) {
    const x = r.scale;
    const n = x.files.toLocaleString('en-US');
    row(`${n} files of ${o.indexFileSize} B in ${x.dirs} dirs: first sync to one client (start → all there, idle)`, ms(x.firstSyncMs), `\`rsync -a\` one hop: ${ms(x.rsyncMs)}`, ratio(x.firstSyncMs, x.rsyncMs), '≤ 2 × rsync', ok(x.firstSyncMs <= 2 * x.rsyncMs));
    row(`${n} files: restart of an unchanged client until idle`, ms(x.restartMs), `\`rsync -a -n\`: ${ms(x.rsyncNoopMs)}`, ratio(x.restartMs, x.rsyncNoopMs), '≤ 1.5 × rsync -n', ok(x.restartMs <= 1.5 * x.rsyncNoopMs));
    row(`${n} files: one change A → B (median of 5; max ${ms(x.changeMax)})`, ms(x.changeMs), `one \`scp\` of a small file: ${ms(x.scp)}`, ratio(x.changeMs, x.scp), '≤ 50 ms', ok(x.changeMs <= 50));
    for (const [name, peak] of Object.entries(x.rss)) {
      const h = x.heap[name];
      row(`${n} files: peak RSS, ${name}`, mib(peak), `RSS now ${mib(x.rssNow[name])} (${(x.rssNow[name] / x.files).toFixed(0)} B/file); V8 heap in use ${mib(h?.heapUsed)} of ${mib(h?.heapTotal)}`, ratio(peak, 1.2 * 1073741824) + ' of target', '≤ 1.2 GiB', ok(peak <= 1.2 * 1073741824));
    }
  }
  const e = r.embedded ?? {};
  if (e.latency || e.small || e.big) {
    L.push('');
    L.push('The embedded endpoint (`[listen]`: the server daemon is its own SSH server) beside the system sshd, same sizes, same run (systemsync both times; ratio = endpoint ÷ sshd):');
    L.push('');
    row('measure', 'through the system sshd', 'through the embedded endpoint', 'ratio', 'target', 'met');
    row('---', '---:', '---:', '---:', '---', '---');
    const side = (what, a, b) => row(what, ms(a), ms(b), ratio(b, a), '≤ 1 × sshd', ok(b <= a));
    if (e.latency && r.latency) {
      side('latency p50', r.latency.p50, e.latency.p50);
      side('latency p99', r.latency.p99, e.latency.p99);
    }
    if (e.small && r.small) side(`${o.smallFiles} × ${o.smallSize / 1024} KiB files`, r.small.ms, e.small.ms);
    if (e.big && r.big) side(`${o.bigMiB} MiB file`, r.big.ms, e.big.ms);
    if ((e.small?.cpu && r.small?.cpu) || (e.big?.cpu && r.big?.cpu)) {
      const secs = (x) => (Number.isFinite(x) ? `${x.toFixed(2)} s` : 'n/a');
      const all = (c) => Object.values(c).reduce((a, b) => a + b, 0);
      L.push('');
      L.push('CPU seconds of the same two runs (every daemon; with the sshd, the sshd and its per-connection processes too):');
      L.push('');
      row('case', 'sshd mode: hub', 'sshd mode: sshd', 'sshd mode: total', 'endpoint mode: hub', 'endpoint mode: total');
      row('---', '---:', '---:', '---:', '---:', '---:');
      for (const c of ['small', 'big']) {
        if (!e[c]?.cpu || !r[c]?.cpu) continue;
        row(c, secs(r[c].cpu.hub), secs(r[c].cpu.sshd), secs(all(r[c].cpu)), secs(e[c].cpu.hub), secs(all(e[c].cpu) - (e[c].cpu.sshd ?? 0)));
      }
    }
  }
  const withRss = CASES.filter((c) => c !== 'fanout' && r[c]?.rss);
  if (withRss.length > 0) {
    L.push('');
    L.push('Peak RSS (VmHWM) of each daemon, per case:');
    L.push('');
    row('case', 'hub (server)', 'alpha (client A)', 'beta (client B)');
    row('---', '---:', '---:', '---:');
    for (const c of withRss) row(c, mib(r[c].rss.hub), mib(r[c].rss.alpha), mib(r[c].rss.beta));
  }
  if (r.small?.cpu || r.big?.cpu) {
    const secs = (x) => (Number.isFinite(x) ? `${x.toFixed(2)} s` : 'n/a');
    const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
    L.push('');
    L.push('CPU time spent during each transfer (medians; sshd counts all its per-connection processes; the machine has ' + os.cpus().length + ' cores):');
    L.push('');
    row('case', 'hub', 'alpha', 'beta', 'sshd', 'systemsync total', 'baseline here (rsync/scp + ssh)', 'baseline sshd', 'baseline total');
    row('---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:');
    for (const c of ['small', 'big']) {
      const x = r[c];
      if (!x?.cpu) continue;
      row(c, secs(x.cpu.hub), secs(x.cpu.alpha), secs(x.cpu.beta), secs(x.cpu.sshd), secs(sum(x.cpu)), secs(x.baselineCpu.local), secs(x.baselineCpu.sshd), secs(sum(x.baselineCpu)));
    }
  }
  if (r.latency) {
    L.push('');
    L.push('Latency anchors from the issue, **not measured here** (typical defaults): Syncthing ≈ 10 s, lsyncd ≈ 15 s, Unison (repeat watch) ≈ 0.5 s.');
  }
  if (r.scale) {
    const x = r.scale;
    L.push('');
    L.push(
      `How the ${x.files}-file case ran: the files were ${Number.isNaN(x.fillMs) ? 'moved into the server\'s folder (--scale-from)' : `written into the server's folder (${ms(x.fillMs)})`} before its first start; the server indexed them in ${ms(x.serverIndexMs)}; ` +
        `alpha pulled them alone (the first-sync row), then beta pulled them (${ms(x.secondSyncMs)}) before the single changes.`,
    );
  }
  if (r.fanout) {
    const x = r.fanout;
    L.push('');
    L.push(
      `How the fan-out case ran: one real hub (dist/monitor.js) and one load client process (dist/load/loadclient.js) holding ${x.clients} sessions, each its own SSH connection, SFTP session and RPC stream, ` +
        `applying every pull to its own folder (connected in ${ms(x.connectMs)}). Each change is uploaded and pushed by one session; the time runs until each other session has written it. ` +
        `The load client shares the 2 cores with the hub and sshd.`,
    );
  }
  if (r.index) {
    const x = r.index;
    L.push('');
    L.push(
      `How the ${x.files}-file index was built: the files (${o.indexFileSize} B each, 1000 per directory) were written into the server's folder before its first start ` +
        `(${ms(x.fillMs)}); the server indexed them in ${ms(x.serverIndexMs)}; both clients then pulled all of them (${ms(x.initialPullMs)}). ` +
        `The stall figures include one \`status\` call (which opens and closes the measuring window); its cost alone is in the baseline column.`,
    );
  }
  return L.join('\n') + '\n';
}

/** One result of a case from several single-rep results: medians of numbers (per key for objects of numbers), arrays joined. */
function mergeRuns(runs) {
  const merge = (values) => {
    const first = values[0];
    if (typeof first === 'number') {
      const sorted = [...values].sort((a, b) => a - b);
      const mid = sorted.length >> 1;
      return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
    if (Array.isArray(first)) return values.flat();
    if (first !== null && typeof first === 'object') {
      const keys = [...new Set(values.flatMap((v) => Object.keys(v)))];
      return Object.fromEntries(keys.map((k) => [k, merge(values.map((v) => v[k]).filter((x) => x !== undefined))]));
    }
    return first;
  };
  return merge(runs);
}

function versionOf(cmd, args) {
  const result = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n')[0] || `${cmd} (version unknown)`;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(MONITOR)) throw new Error(`${MONITOR} is missing: run npm run build first`);
  for (const tool of ['rsync', 'scp', 'ssh']) {
    try {
      execFileSync('which', [tool], { stdio: 'ignore' });
    } catch {
      throw new Error(`${tool} is not installed; the benchmark needs it for its baseline`);
    }
  }
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'systemsync-bench-'));
  const started = Date.now();
  const log = (line) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
  const nodeArgs = (process.env.SYSTEMSYNC_TEST_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const sshd = await startSshd({ dir: path.join(workDir, 'sshd') });
  const ctx = { sshd, workDir, options, log, logLevel: options.logLevel, nodeArgs, keep: options.keep };
  const results = { embedded: {} };
  const runners = { latency: latencyCase, small: smallFilesCase, big: bigFileCase, delta: deltaCase, append: appendCase, index: indexCase, fanout: fanoutCase, scale: scaleCase };
  const endpoint = await prepareEndpoint(path.join(workDir, 'endpoint'), await freePort());
  try {
    for (const name of CASES) {
      if (!options.only.includes(name)) continue;
      if (!EMBEDDED_CASES.includes(name) || options.noEmbedded) {
        log(`case ${name}…`);
        results[name] = await runners[name](ctx);
        continue;
      }
      // Both modes rep by rep, one right after the other, so that the load of a shared machine
      // weighs on both alike; medians over the reps as for the other cases.
      const viaSshd = [];
      const viaEndpoint = [];
      const once = { ...options, reps: 1 };
      for (let rep = 0; rep < options.reps; rep++) {
        log(`case ${name} rep ${rep + 1} through the sshd…`);
        viaSshd.push(await runners[name]({ ...ctx, options: once }));
        log(`case ${name} rep ${rep + 1} through the embedded endpoint…`);
        viaEndpoint.push(await runners[name]({ ...ctx, options: once, endpoint }));
      }
      results[name] = mergeRuns(viaSshd);
      results.embedded[name] = mergeRuns(viaEndpoint);
    }
  } finally {
    await sshd.stop();
    if (!options.keep) fs.rmSync(workDir, { recursive: true, force: true });
    else log(`kept ${workDir}`);
  }
  const cpu = os.cpus()[0]?.model?.trim() ?? 'cpu';
  const report = buildReport(options, results, {
    when: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    cpus: os.cpus().length,
    cpu,
    ssh: versionOf('ssh', ['-V']),
    rsync: versionOf('rsync', ['--version']).replace(/\s+protocol.*/, ''),
  });
  process.stdout.write(report);
  fs.writeFileSync(options.out, report);
  log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s; table written to ${options.out}`);
}

main().catch((err) => {
  process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
  process.exit(1);
});

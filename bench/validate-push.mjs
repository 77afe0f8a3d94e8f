// The validation cost of one 1,000-op push request (params) and its answer (result), against
// dist/ (build first: npx tsc -p tsconfig.build.json). Prints the median of 7 runs, each the
// mean CPU time over 200 calls. Usage: node bench/validate-push.mjs
const dist = process.env.RPC_DIST ?? new URL('../dist/', import.meta.url).pathname;
const { validateParams, validateResult } = await import(`${dist}/rpc.js`);

const hash = (i) => i.toString(16).padStart(64, '0');
const file = (i) => ({ type: 'file', size: 1000 + i, mtime: 1_700_000_000_000 + i, mode: 0o644, hash: hash(i) });
const ops = Array.from({ length: 1000 }, (_, i) => {
  const path = `projects/app-${i % 17}/src/module-${i % 53}/file-${i}.ts`;
  if (i % 10 === 8) return { op: 'delete', path, base: i };
  if (i % 10 === 9) return { op: 'rename', from: path, to: `${path}.moved`, base: i, toBase: null, entry: file(i) };
  if (i % 10 === 7) return { op: 'put', path: `dir-${i}`, base: null, entry: { type: 'dir', mode: 0o755 }, upload: null };
  return { op: 'put', path, base: i % 3 === 0 ? null : i, entry: file(i), upload: `lq2x-${i}.part` };
});
const params = { folder: 'docs', ops };
const result = { results: ops.map((_, i) => (i % 5 === 4 ? { status: 'conflict', copy: `c-${i}.txt`, copySeq: i, current: { seq: i, entry: file(i), origin: 'laptop' } } : { status: 'ok', seq: i + 1 })) };

function timeOne(fn, calls) {
  const t0 = process.cpuUsage();
  for (let i = 0; i < calls; i++) fn();
  const used = process.cpuUsage(t0);
  return (used.user + used.system) / calls; // CPU µs per call (time off the CPU, on a busy machine, not counted)
}
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}
function bench(name, fn, calls = 200) {
  for (let i = 0; i < 50; i++) fn(); // warm up
  const runs = Array.from({ length: 7 }, () => timeOne(fn, calls));
  console.log(`${name}: median ${median(runs).toFixed(0)} µs per call (runs: ${runs.map((r) => r.toFixed(0)).join(', ')})`);
}
bench('push params, 1000 ops', () => validateParams('push', params));
bench('push result, 1000 results', () => validateResult('push', result));

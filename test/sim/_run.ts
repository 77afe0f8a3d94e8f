import { runSim } from './world.js';
const from = Number(process.argv[2] ?? 1), n = Number(process.argv[3] ?? 50);
const counts = new Map<string, number>();
const t0 = Date.now();
for (let s = from; s < from + n; s++) {
  const t = Date.now();
  const gen = JSON.parse(process.env.GEN ?? '{}');
  const r = runSim({ seed: s, keepLog: true, gen });
  if (r.violation) {
    counts.set(r.violation.kind, (counts.get(r.violation.kind) ?? 0) + 1);
    const race = r.log.filter((l) => l.includes('racing')).map((l) => l.replace(/^t=\d+ /, '')).join('; ');
    console.log(`seed ${s} (${Date.now() - t} ms, ${r.steps} steps): ${r.violation.kind}: ${r.violation.detail.split('\n').slice(0, 2).join(' / ').slice(0, 250)} ${race ? `[race: ${race}]` : ''}`);
  }
}
console.log(`${n} seeds in ${Date.now() - t0} ms`, Object.fromEntries(counts));

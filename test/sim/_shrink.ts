import { runSim } from './world.js';
import { shrinkFailure, formatFailure } from './report.js';
const s = Number(process.argv[2]);
const t0 = Date.now();
const r = runSim({ seed: s });
if (!r.violation) { console.log('passes'); process.exit(0); }
const f = shrinkFailure(r);
console.log(formatFailure(f));
console.log(`shrunk in ${Date.now() - t0} ms`);

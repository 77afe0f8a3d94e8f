import { runSim } from './world.js';
import { showEvent } from './ops.js';
const s = Number(process.argv[2]);
const t0 = Date.now();
const gen = JSON.parse(process.env.GEN ?? '{}');
const r = runSim({ seed: s, keepLog: true, gen });
console.log(`seed ${s}: ${Date.now() - t0} ms, steps ${r.steps}, simTime ${r.simTime}, ended ${r.ended}`);
console.log(r.violation ? `${r.violation.kind}: ${r.violation.detail}` : 'ok');
if (process.argv[3] === 'v') { console.log([...r.trace].sort((a, b) => a.at - b.at).map(showEvent).join('\n')); console.log(r.log.join('\n')); }

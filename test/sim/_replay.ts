import { runSim } from './world.js';
let bad = 0;
for (let s = 1; s <= 40; s++) {
  const a = runSim({ seed: s });
  const b = runSim({ seed: s, trace: a.trace });
  if (a.steps !== b.steps || a.violation?.detail !== b.violation?.detail) { bad++; console.log(`seed ${s}: gen ${a.steps} ${a.violation?.kind} vs replay ${b.steps} ${b.violation?.kind}`); }
}
console.log('mismatches', bad);

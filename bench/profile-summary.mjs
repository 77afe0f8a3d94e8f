// Summarises the .cpuprofile files `node --cpu-prof` wrote (bench/profile-big.mjs --cpu-prof DIR):
// for each, the busy time, and the functions with the most self time, grouped by where they live.
//
//   node bench/profile-summary.mjs DIR [--top N]
import fs from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
const top = Number(process.argv.includes('--top') ? process.argv[process.argv.indexOf('--top') + 1] : 25);
if (dir === undefined) throw new Error('usage: node bench/profile-summary.mjs DIR [--top N]');

/** Where a function lives, in a few words: ssh2, our dist/ file, node's internals, native. */
function placeOf(url) {
  if (url === '') return '(native)';
  const mod = /node_modules\/([^/]+)\/(.*)$/.exec(url);
  if (mod) return `${mod[1]}/${mod[2].split('/').slice(-1)[0]}`;
  const ours = /dist\/(.*)$/.exec(url);
  if (ours) return ours[1];
  return url.replace(/^node:/, '');
}

for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort()) {
  const profile = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const hits = new Map();
  const deltas = profile.timeDeltas;
  profile.samples.forEach((id, i) => hits.set(id, (hits.get(id) ?? 0) + (deltas[i + 1] ?? deltas[i] ?? 0)));
  const self = new Map();
  const byPlace = new Map();
  let busy = 0;
  let all = 0;
  for (const [id, us] of hits) {
    const node = byId.get(id);
    const { functionName, url, lineNumber } = node.callFrame;
    all += us;
    if (functionName === '(idle)' || functionName === '(program)') {
      self.set(functionName, (self.get(functionName) ?? 0) + us);
      continue;
    }
    busy += us;
    const key = `${functionName || '(anonymous)'} ${placeOf(url)}:${lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + us);
    const place = functionName === '(garbage collector)' ? '(gc)' : placeOf(url).split(/[/:]/)[0];
    byPlace.set(place, (byPlace.get(place) ?? 0) + us);
  }
  const s = (us) => `${(us / 1e6).toFixed(2)} s`;
  console.log(`== ${file}: sampled ${s(all)}, busy ${s(busy)} (idle ${s(self.get('(idle)') ?? 0)}, program ${s(self.get('(program)') ?? 0)})`);
  console.log('  by place: ' + [...byPlace].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([k, v]) => `${k} ${s(v)} (${((100 * v) / busy).toFixed(0)}%)`).join(', '));
  for (const [k, v] of [...self].filter(([k]) => !k.startsWith('(idle)') && !k.startsWith('(program)')).sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`  ${s(v).padStart(8)} ${((100 * v) / busy).toFixed(1).padStart(5)}%  ${k}`);
  }
}

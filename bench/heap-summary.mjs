// Sums a V8 .heapsnapshot by node type and constructor/name: count and self size, largest first.
//
//   node bench/heap-summary.mjs FILE [--top N]
//
// Strings are grouped by kind (string, concatenated string, sliced string) and, for the largest
// groups of objects, by constructor name. Self sizes only (no retained sizes).
import fs from 'node:fs';

const [file, ...rest] = process.argv.slice(2);
const top = rest.includes('--top') ? Number(rest[rest.indexOf('--top') + 1]) : 40;
const snap = JSON.parse(fs.readFileSync(file, 'utf8'));
const meta = snap.snapshot.meta;
const fields = meta.node_fields;
const types = meta.node_types[0];
const nf = fields.length;
const iType = fields.indexOf('type');
const iName = fields.indexOf('name');
const iSize = fields.indexOf('self_size');
const nodes = snap.nodes;
const strings = snap.strings;
const groups = new Map();
let total = 0;
for (let i = 0; i < nodes.length; i += nf) {
  const type = types[nodes[i + iType]];
  const size = nodes[i + iSize];
  total += size;
  let key;
  if (type === 'string' || type === 'concatenated string' || type === 'sliced string') key = type;
  else if (type === 'object' || type === 'closure' || type === 'native') key = `${type}: ${strings[nodes[i + iName]]}`;
  else key = `${type}: ${String(strings[nodes[i + iName]]).slice(0, 60)}`;
  const g = groups.get(key) ?? { count: 0, size: 0 };
  g.count++;
  g.size += size;
  groups.set(key, g);
}
console.log(`${file}: ${nodes.length / nf} nodes, ${(total / 1048576).toFixed(1)} MiB self size in all`);
const sorted = [...groups].sort((a, b) => b[1].size - a[1].size).slice(0, top);
for (const [key, g] of sorted) {
  console.log(`${(g.size / 1048576).toFixed(2).padStart(9)} MiB ${String(g.count).padStart(9)} × ${(g.size / g.count).toFixed(0).padStart(6)} B  ${key}`);
}

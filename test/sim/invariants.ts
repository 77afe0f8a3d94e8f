/**
 * What must hold after a run (once the faults are healed and the nodes have gone quiet). Never
 * a fixed expected tree: all nodes equal, each writer's own area as it left it, every version
 * no user destroyed present somewhere (at a path, as a conflict copy, or in the server's
 * trash), no temp file outside `.systemsync/`.
 */
import type { MemFs } from './fs.js';

export interface Violation {
  /** A short class name: the shrinker keeps a trace only if it fails with the same class. */
  kind: 'diverged' | 'own-area' | 'lost' | 'temp-file' | 'stuck' | 'crash';
  detail: string;
}

/** A tree as text lines: type, content or target, mode (and mtime for files). */
export function describeTree(fs: MemFs, under = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of fs.walk(under)) {
    const st = fs.lstat(p)!;
    if (st.kind === 'file') out.set(p, `file ${JSON.stringify(fs.readFile(p))} mode=${st.mode.toString(8)} mtime=${st.mtime}`);
    else if (st.kind === 'dir') out.set(p, `dir mode=${st.mode.toString(8)}`);
    else out.set(p, `link -> ${fs.readlink(p)}`);
  }
  return out;
}

export function diffTrees(a: Map<string, string>, b: Map<string, string>, limit = 6): string[] {
  const lines: string[] = [];
  for (const p of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    if (a.get(p) === b.get(p)) continue;
    lines.push(`  ${p}: ${a.get(p) ?? '(absent)'}  vs  ${b.get(p) ?? '(absent)'}`);
    if (lines.length >= limit) break;
  }
  return lines;
}

export function checkConverged(server: MemFs, clients: Array<[string, MemFs]>): Violation | null {
  const ref = describeTree(server);
  for (const [name, fs] of clients) {
    const diff = diffTrees(ref, describeTree(fs));
    if (diff.length > 0) return { kind: 'diverged', detail: `server vs ${name}:\n${diff.join('\n')}` };
  }
  return null;
}

export function checkOwnAreas(expected: Map<string, Map<string, string>>, nodes: Array<[string, MemFs]>, areaOf: (node: string) => string): Violation | null {
  for (const [writer, want] of expected) {
    for (const [name, fs] of nodes) {
      const diff = diffTrees(want, describeTree(fs, areaOf(writer)));
      if (diff.length > 0) return { kind: 'own-area', detail: `${writer}'s own area on ${name} (left by ${writer} vs now):\n${diff.join('\n')}` };
    }
  }
  return null;
}

/** Every content that some user created and no user destroyed is somewhere: a tree, or the server's trash. */
export function checkNothingLost(created: Set<string>, destroyed: Set<string>, nodes: Array<[string, MemFs]>, trash: Set<string>): Violation | null {
  const present = new Set<string>(trash);
  for (const [, fs] of nodes) {
    for (const p of fs.walk()) if (fs.lstat(p)?.kind === 'file') present.add(fs.readFile(p));
  }
  const lost = [...created].filter((c) => !destroyed.has(c) && !present.has(c));
  if (lost.length === 0) return null;
  return { kind: 'lost', detail: `versions no user destroyed are nowhere (not at a path, not a conflict copy, not in the trash): ${lost.slice(0, 5).map((c) => JSON.stringify(c)).join(', ')}` };
}

const TEMP_NAME = /^t\d+\.(up|down|link|part|bundle)$/;

export function checkNoStrayTemp(nodes: Array<[string, MemFs]>): Violation | null {
  for (const [name, fs] of nodes) {
    for (const p of fs.allPaths()) {
      if (p.startsWith('.systemsync/')) continue;
      if (TEMP_NAME.test(p.slice(p.lastIndexOf('/') + 1))) return { kind: 'temp-file', detail: `${name}: temp file ${p} outside .systemsync/` };
    }
  }
  return null;
}

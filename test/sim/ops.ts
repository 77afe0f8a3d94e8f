/**
 * Random user operations: generated from a node's current tree with the op stream's PRNG,
 * recorded as concrete, replayable events, and applied to the node's file system. An op that
 * no longer fits the tree when replayed (a shrunk trace) does nothing.
 */
import { FsError, isUnder, parentPath, type MemFs } from './fs.js';
import type { Rng } from './prng.js';

export type UserOp =
  | { kind: 'write'; path: string; mode: number }
  | { kind: 'append'; path: string }
  | { kind: 'delete'; path: string }
  | { kind: 'mkdir'; path: string }
  | { kind: 'rmrf'; path: string }
  | { kind: 'rename'; from: string; to: string }
  | { kind: 'link'; from: string; to: string }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'chmod'; path: string; mode: number }
  | { kind: 'retype'; path: string; to: 'file' | 'dir' | 'symlink' };

export type Fault =
  | { kind: 'cut' }
  | { kind: 'kill'; down: number }
  /** The next window (pull check/replace, conflict rename, ...) on this node gets a local write. */
  | { kind: 'race' };

export interface TraceEvent {
  at: number;
  node: string;
  op: UserOp | Fault;
}

export function showEvent(e: TraceEvent): string {
  const op = e.op;
  const args = Object.entries(op)
    .filter(([k]) => k !== 'kind')
    .map(([k, v]) => (typeof v === 'number' && k === 'mode' ? `${k}=${v.toString(8)}` : `${k}=${String(v)}`))
    .join(' ');
  return `t=${e.at} ${e.node.padEnd(6)} ${op.kind}${args === '' ? '' : ` ${args}`}`;
}

/** The areas a node may write: its own (only it writes there) and the shared one. */
export function areasOf(node: string): string[] {
  return [`${node}-own`, 'shared'];
}

const NAMES = ['a', 'b', 'c', 'A', 'x.txt', 'X.txt', 'n'];

/** Kinds of op that can be left out (to tell bug classes apart while their fixes land). */
export interface GenOptions {
  hardLinks?: boolean;
  symlinks?: boolean;
  retype?: boolean;
  /** Faults: local writes racing a pull or conflict rename, and kill-and-restart. */
  races?: boolean;
  kills?: boolean;
}

/** One random op for `node`, against its tree as it is now. */
export function generateOp(rng: Rng, fs: MemFs, node: string, gen: GenOptions = {}): UserOp {
  const area = rng.chance(0.5) ? areasOf(node)[0]! : 'shared';
  const inArea = fs.walk().filter((p) => p !== area && isUnder(p, area));
  const dirs = [area, ...inArea.filter((p) => fs.lstat(p)?.kind === 'dir')];
  const files = inArea.filter((p) => fs.lstat(p)?.kind === 'file');
  const any = inArea;
  const newPath = (): string => `${rng.pick(dirs)}/${rng.pick(NAMES)}`;
  const roll = rng.int(100);
  if (!fs.exists(area)) return { kind: 'mkdir', path: area };
  if (roll < 22 || files.length === 0) return { kind: 'write', path: rng.chance(0.4) && files.length > 0 ? rng.pick(files) : newPath(), mode: 0o644 };
  if (roll < 32) return { kind: 'append', path: rng.pick(files) };
  if (roll < 42) return { kind: 'mkdir', path: newPath() };
  if (roll < 48) return { kind: 'delete', path: rng.pick(files) };
  if (roll < 52 && any.length > 0) return { kind: 'rmrf', path: rng.pick(any) };
  if (roll < 70 && any.length > 0) {
    const from = rng.pick(any);
    // Case-only renames, renames into a sibling directory, and out to the area's top.
    const base = from.slice(from.lastIndexOf('/') + 1);
    const choice = rng.int(3);
    const to =
      choice === 0 && base.toLowerCase() !== base.toUpperCase()
        ? `${parentPath(from)}/${base === base.toLowerCase() ? base.toUpperCase() : base.toLowerCase()}`
        : choice === 1
          ? `${rng.pick(dirs)}/${base}`
          : newPath();
    return { kind: 'rename', from, to };
  }
  if (roll < 76 && gen.hardLinks !== false) return { kind: 'link', from: rng.pick(files), to: newPath() };
  if (roll < 81 && gen.symlinks !== false) return { kind: 'symlink', path: newPath(), target: rng.pick(['x.txt', '../a', 'nowhere']) };
  if (roll < 90 && any.length > 0) return { kind: 'chmod', path: rng.pick(any), mode: rng.pick([0o644, 0o600, 0o755, 0o700]) };
  if (any.length > 0 && gen.retype !== false) {
    return { kind: 'retype', path: rng.pick(any), to: gen.symlinks === false ? rng.pick(['file', 'dir'] as const) : rng.pick(['file', 'dir', 'symlink'] as const) };
  }
  return { kind: 'write', path: newPath(), mode: 0o644 };
}

/** What a user op did, for the watcher's hints and the "nothing lost" bookkeeping. */
export interface Applied {
  hints: string[];
  /** File contents the user deliberately destroyed (overwritten, appended to, deleted). */
  destroyed: string[];
  /** File contents the user created. */
  created: string[];
}

/** Contents that disappear with the names under `p` (a content survives while another name holds it). */
function contentsLostWith(fs: MemFs, p: string): string[] {
  const doomed = fs.allPaths().filter((q) => isUnder(q, p));
  const out: string[] = [];
  for (const q of doomed) {
    const st = fs.lstat(q);
    if (st?.kind !== 'file') continue;
    const otherNames = fs.allPaths().some((r) => !isUnder(r, p) && fs.lstat(r)?.ino === st.ino);
    if (!otherNames) out.push(fs.readFile(q));
  }
  return out;
}

export function applyUserOp(fs: MemFs, op: UserOp, fresh: () => string): Applied {
  const out: Applied = { hints: [], destroyed: [], created: [] };
  const dirMode = 0o755;
  try {
    switch (op.kind) {
      case 'write': {
        const st = fs.lstat(op.path);
        if (st !== null && st.kind !== 'file') return out;
        if (st !== null) out.destroyed.push(fs.readFile(op.path));
        const data = fresh();
        fs.writeFile(op.path, data, op.mode);
        out.created.push(data);
        out.hints.push(op.path);
        return out;
      }
      case 'append': {
        if (fs.lstat(op.path)?.kind !== 'file') return out;
        const old = fs.readFile(op.path);
        const data = `${old}+${fresh()}`;
        fs.writeFile(op.path, data);
        out.destroyed.push(old);
        out.created.push(data);
        out.hints.push(op.path);
        return out;
      }
      case 'delete':
        if (fs.lstat(op.path)?.kind !== 'file' && fs.lstat(op.path)?.kind !== 'symlink') return out;
        out.destroyed.push(...contentsLostWith(fs, op.path));
        fs.unlink(op.path);
        out.hints.push(op.path);
        return out;
      case 'mkdir':
        fs.mkdir(op.path, dirMode);
        out.hints.push(op.path);
        return out;
      case 'rmrf':
        if (!fs.exists(op.path)) return out;
        out.destroyed.push(...contentsLostWith(fs, op.path));
        out.hints.push(...fs.walk(op.path), op.path);
        fs.removeTree(op.path);
        return out;
      case 'rename': {
        const dst = fs.lstat(op.to);
        const src = fs.lstat(op.from);
        if (src === null) return out;
        if (dst !== null && dst.kind === 'file' && dst.ino !== src.ino) out.destroyed.push(...contentsLostWith(fs, op.to));
        fs.rename(op.from, op.to);
        out.hints.push(op.from, op.to);
        return out;
      }
      case 'link':
        fs.link(op.from, op.to);
        out.hints.push(op.to);
        return out;
      case 'symlink':
        fs.symlink(op.target, op.path);
        out.hints.push(op.path);
        return out;
      case 'chmod':
        if (fs.lstat(op.path)?.kind === 'symlink') return out;
        fs.chmod(op.path, op.mode);
        out.hints.push(op.path);
        return out;
      case 'retype': {
        const st = fs.lstat(op.path);
        if (st === null || st.kind === op.to) return out;
        out.destroyed.push(...contentsLostWith(fs, op.path));
        out.hints.push(...fs.walk(op.path), op.path);
        fs.removeTree(op.path);
        if (op.to === 'dir') fs.mkdir(op.path, dirMode);
        else if (op.to === 'symlink') fs.symlink('x.txt', op.path);
        else {
          const data = fresh();
          fs.writeFile(op.path, data);
          out.created.push(data);
        }
        return out;
      }
    }
  } catch (err) {
    if (err instanceof FsError) return { hints: [], destroyed: [], created: [] };
    throw err;
  }
}

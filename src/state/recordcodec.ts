/**
 * Compact in-memory forms of the per-path records the daemons keep for every indexed path (the
 * client's base index, the server's versions), for `ShardedMap`'s `codec` option.
 *
 * A record as objects costs ~370 bytes on Node's heap (three or four objects, a boxed number
 * for every millisecond time, the hash string); the same record as one JSON array text costs
 * ~170. The shard files are unchanged: the map writes `JSON.stringify(decode(s))`, and `decode`
 * rebuilds the objects with their keys in the order they are always built in.
 *
 * Compact form: a JSON array, `[seq, tag, ...]` with tag `f` (file: size, mtime, mode, hash),
 * `d` (dir: mode), `l` (symlink: target) or, on the server, `x` (tombstone, no entry fields), then
 * the stat fingerprint as four numbers (ino, size, mtimeMs, ctimeMs) or `null`. The server's
 * record puts its `origin` right after the tag and its optional `from` last.
 * A record of any other shape (an unexpected key, key order or value) is kept as its JSON object
 * text instead, so that every value round-trips exactly.
 *
 * The commonest record, a regular file with its sha256, is packed tighter still: a string of
 * bytes (Latin-1, which V8 keeps at one byte per character) with the integers as varints, the
 * hash as its 32 bytes and the two stat times as float64: ~70 bytes instead of ~155 characters.
 * It starts with byte 1 (client) or 2 (server), which neither JSON form can start with.
 */
import type { BaseRecord, Entry, ServerRecord, StatFingerprint } from '../core/types.js';
import type { ValueCodec } from '../persistence.js';

const OPEN_BRACKET = 0x5b; // '['
const TOMBSTONE_TAG = 0x78; // 'x'
const BINARY_BASE = 0x01;
const BINARY_SERVER = 0x02;
const HEX_SHA256 = /^[0-9a-f]{64}$/;

/** Scratch space for packing and unpacking binary records (one at a time: no await in between). */
const scratch = Buffer.allocUnsafe(1024);
/** Longest origin (in characters) packed in binary: the record stays far below the scratch size. */
const MAX_BINARY_ORIGIN = 255;

const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function putUint(pos: number, v: number): number {
  while (v >= 0x80) {
    scratch[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  scratch[pos++] = v;
  return pos;
}

function getUint(at: { pos: number }): number {
  let v = 0;
  let scale = 1;
  for (;;) {
    const byte = scratch[at.pos++] as number;
    v += (byte & 0x7f) * scale;
    if (byte < 0x80) return v;
    scale *= 0x80;
  }
}

/**
 * The binary form of compact fields `[seq, 'f', size, mtime, mode, hash, ...stat]` (with the
 * server's origin after the seq when `origin` is given), or null when they do not fit it.
 */
function packFile(kind: number, seq: unknown, origin: string | null, f: unknown[]): string | null {
  const [size, mtime, mode, hash] = f;
  const statFields = f.slice(4);
  if (!isUint(seq) || !isUint(size) || !isUint(mtime) || !isUint(mode) || typeof hash !== 'string' || !HEX_SHA256.test(hash)) return null;
  const withStat = statFields.length === 4;
  if (withStat && (!isUint(statFields[0]) || !isUint(statFields[1]))) return null;
  if (origin !== null) {
    if (origin.length > MAX_BINARY_ORIGIN) return null;
    for (let i = 0; i < origin.length; i++) if (origin.charCodeAt(i) > 0xff) return null;
  }
  scratch[0] = kind;
  let pos = putUint(1, seq);
  if (origin !== null) {
    pos = putUint(pos, origin.length);
    pos += scratch.write(origin, pos, 'latin1');
  }
  pos = putUint(pos, size);
  pos = putUint(pos, mtime);
  pos = putUint(pos, mode);
  pos += scratch.write(hash, pos, 'hex');
  scratch[pos++] = withStat ? 1 : 0;
  if (withStat) {
    pos = putUint(pos, statFields[0] as number);
    pos = putUint(pos, statFields[1] as number);
    pos = scratch.writeDoubleLE(statFields[2] as number, pos);
    pos = scratch.writeDoubleLE(statFields[3] as number, pos);
  }
  return scratch.toString('latin1', 0, pos);
}

/** Unpacks a binary record into its seq, origin (server) and file entry and stat. */
function unpackFile(packed: string): { seq: number; origin: string | null; entry: Entry; stat: StatFingerprint | null } {
  const length = scratch.write(packed, 0, 'latin1');
  const at = { pos: 1 };
  const seq = getUint(at);
  let origin: string | null = null;
  if (scratch[0] === BINARY_SERVER) {
    const n = getUint(at);
    origin = scratch.toString('latin1', at.pos, at.pos + n);
    at.pos += n;
  }
  const size = getUint(at);
  const mtime = getUint(at);
  const mode = getUint(at);
  const hash = scratch.toString('hex', at.pos, at.pos + 32);
  at.pos += 32;
  let stat: StatFingerprint | null = null;
  if (scratch[at.pos++] === 1) {
    const ino = getUint(at);
    const statSize = getUint(at);
    const mtimeMs = scratch.readDoubleLE(at.pos);
    const ctimeMs = scratch.readDoubleLE(at.pos + 8);
    at.pos += 16;
    stat = { ino, size: statSize, mtimeMs, ctimeMs };
  }
  if (at.pos !== length) throw new Error(`record codec: ${length - at.pos} stray byte(s) in a packed record`);
  return { seq, origin, entry: { type: 'file', size, mtime, mode, hash }, stat };
}

function hasKeys(value: object, keys: readonly string[]): boolean {
  const actual = Object.keys(value);
  if (actual.length !== keys.length) return false;
  for (let i = 0; i < keys.length; i++) if (actual[i] !== keys[i]) return false;
  return true;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const FILE_KEYS = ['type', 'size', 'mtime', 'mode', 'hash'];
const DIR_KEYS = ['type', 'mode'];
const LINK_KEYS = ['type', 'target'];
const STAT_KEYS = ['ino', 'size', 'mtimeMs', 'ctimeMs'];

/** Appends the compact fields of `entry` (tag first) to `out`; false if its shape is not the usual one. */
function pushEntry(out: unknown[], entry: unknown): boolean {
  if (!isObj(entry)) return false;
  if (entry.type === 'file' && hasKeys(entry, FILE_KEYS) && isNum(entry.size) && isNum(entry.mtime) && isNum(entry.mode) && typeof entry.hash === 'string') {
    out.push('f', entry.size, entry.mtime, entry.mode, entry.hash);
    return true;
  }
  if (entry.type === 'dir' && hasKeys(entry, DIR_KEYS) && isNum(entry.mode)) {
    out.push('d', entry.mode);
    return true;
  }
  if (entry.type === 'symlink' && hasKeys(entry, LINK_KEYS) && typeof entry.target === 'string') {
    out.push('l', entry.target);
    return true;
  }
  return false;
}

/** Appends the stat fingerprint (four numbers, or null) to `out`; false if its shape is not the usual one. */
function pushStat(out: unknown[], stat: unknown): boolean {
  if (stat === null) {
    out.push(null);
    return true;
  }
  if (!isObj(stat) || !hasKeys(stat, STAT_KEYS) || !isNum(stat.ino) || !isNum(stat.size) || !isNum(stat.mtimeMs) || !isNum(stat.ctimeMs)) return false;
  out.push(stat.ino, stat.size, stat.mtimeMs, stat.ctimeMs);
  return true;
}

/** Any other value: its JSON text, never starting with `[` (a leading space keeps an array apart). */
function fallback(value: unknown): string {
  const text = JSON.stringify(value) ?? 'null';
  return text.charCodeAt(0) === OPEN_BRACKET ? ` ${text}` : text;
}

/** The entry whose tag is at `a[i]`, and the index after its fields. */
function readEntry(a: unknown[], i: number): [Entry | null, number] {
  switch (a[i]) {
    case 'f':
      return [{ type: 'file', size: a[i + 1] as number, mtime: a[i + 2] as number, mode: a[i + 3] as number, hash: a[i + 4] as string }, i + 5];
    case 'd':
      return [{ type: 'dir', mode: a[i + 1] as number }, i + 2];
    case 'l':
      return [{ type: 'symlink', target: a[i + 1] as string }, i + 2];
    case 'x':
      return [null, i + 1];
    default:
      throw new Error(`record codec: unknown entry tag ${JSON.stringify(a[i])}`);
  }
}

/** The stat fingerprint at `a[i]`, and the index after it. */
function readStat(a: unknown[], i: number): [StatFingerprint | null, number] {
  if (a[i] === null) return [null, i + 1];
  return [{ ino: a[i] as number, size: a[i + 1] as number, mtimeMs: a[i + 2] as number, ctimeMs: a[i + 3] as number }, i + 4];
}

const BASE_KEYS = ['seq', 'entry', 'stat'];

/** The client's base record: `{ seq, entry, stat }`. */
export const baseRecordCodec: ValueCodec<BaseRecord> = {
  encode(record: BaseRecord): string {
    const out: unknown[] = [];
    const compact = isObj(record) && hasKeys(record, BASE_KEYS) && isNum(record.seq) && out.push(record.seq) > 0 && pushEntry(out, record.entry) && pushStat(out, record.stat);
    if (!compact) return fallback(record);
    return (out[1] === 'f' ? packFile(BINARY_BASE, out[0], null, out.slice(2)) : null) ?? JSON.stringify(out);
  },
  decode(packed: string): BaseRecord {
    const first = packed.charCodeAt(0);
    if (first === BINARY_BASE) {
      const { seq, entry, stat } = unpackFile(packed);
      return { seq, entry, stat };
    }
    if (first !== OPEN_BRACKET) return JSON.parse(packed) as BaseRecord;
    const a = JSON.parse(packed) as unknown[];
    const [entry, i] = readEntry(a, 1);
    const [stat] = readStat(a, i);
    return { seq: a[0] as number, entry: entry as Entry, stat };
  },
};

const SERVER_KEYS = ['seq', 'entry', 'origin', 'stat'];
const SERVER_KEYS_FROM = ['seq', 'entry', 'origin', 'stat', 'from'];

/** The server's record of one path: `{ seq, entry, origin, stat }` and maybe `from`. */
export const serverRecordCodec: ValueCodec<ServerRecord> = {
  encode(record: ServerRecord): string {
    const out: unknown[] = [];
    const compact =
      isObj(record) &&
      (hasKeys(record, SERVER_KEYS) || (hasKeys(record, SERVER_KEYS_FROM) && typeof record.from === 'string')) &&
      isNum(record.seq) &&
      typeof record.origin === 'string' &&
      encodeServerFields(out, record);
    if (!compact) return fallback(record);
    const binary = out[1] === 'f' && record.from === undefined ? packFile(BINARY_SERVER, out[0], record.origin, out.slice(3)) : null;
    return binary ?? JSON.stringify(out);
  },
  decode(packed: string): ServerRecord {
    const first = packed.charCodeAt(0);
    if (first === BINARY_SERVER) {
      const { seq, origin, entry, stat } = unpackFile(packed);
      return { seq, entry, origin: origin as string, stat };
    }
    if (first !== OPEN_BRACKET) return JSON.parse(packed) as ServerRecord;
    const a = JSON.parse(packed) as unknown[];
    // [seq, tag, origin, ...entry fields, ...stat, from?]: the tag sits before the origin.
    const tag = a[1];
    const origin = a[2] as string;
    a[2] = tag;
    const [entry, i] = readEntry(a, 2);
    const [stat, j] = readStat(a, i);
    const record: ServerRecord = { seq: a[0] as number, entry, origin, stat };
    if (j < a.length) record.from = a[j] as string;
    return record;
  },
};

function encodeServerFields(out: unknown[], record: ServerRecord): boolean {
  const fields: unknown[] = [];
  if (record.entry === null) fields.push('x');
  else if (!pushEntry(fields, record.entry)) return false;
  if (!pushStat(fields, record.stat)) return false;
  out.push(record.seq, fields[0], record.origin, ...fields.slice(1));
  if (record.from !== undefined) out.push(record.from);
  return true;
}

/** Index of the first comma of a compact server record (after its seq). */
function afterSeq(packed: string): number {
  return packed.indexOf(',');
}

/** True when the server record stored as `packed` is a tombstone, without decoding it. */
export function isTombstonePacked(packed: string): boolean {
  const first = packed.charCodeAt(0);
  if (first === BINARY_SERVER) return false; // always a file
  if (first !== OPEN_BRACKET) return serverRecordCodec.decode(packed).entry === null;
  // `[seq,"x",…`
  return packed.charCodeAt(afterSeq(packed) + 2) === TOMBSTONE_TAG;
}

/**
 * A test of "was the server record stored as `packed` made by `node`?" that reads the origin
 * from the stored form without decoding the record (for counting over many records).
 */
export function originTest(node: string): (packed: string) => boolean {
  const quoted = JSON.stringify(node);
  return (packed: string): boolean => {
    const first = packed.charCodeAt(0);
    if (first === BINARY_SERVER) {
      // byte 2, varint seq, varint length, the origin's bytes
      let pos = 1;
      while (packed.charCodeAt(pos) >= 0x80) pos++;
      pos++;
      let length = 0;
      let scale = 1;
      for (;;) {
        const byte = packed.charCodeAt(pos++);
        length += (byte & 0x7f) * scale;
        if (byte < 0x80) break;
        scale *= 0x80;
      }
      return length === node.length && packed.startsWith(node, pos);
    }
    if (first !== OPEN_BRACKET) return serverRecordCodec.decode(packed).origin === node;
    // `[seq,"t","origin",…`: the origin starts 5 characters after the first comma.
    const start = afterSeq(packed) + 5;
    const end = start + quoted.length;
    return packed.startsWith(quoted, start) && (packed.charCodeAt(end) === 0x2c || packed.charCodeAt(end) === 0x5d);
  };
}

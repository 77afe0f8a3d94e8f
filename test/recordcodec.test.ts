import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { BaseRecord, Entry, StatFingerprint } from '../src/core/types.js';
import type { ServerRecord } from '../src/server/changelog.js';
import { baseRecordCodec, isTombstonePacked, originTest, serverRecordCodec } from '../src/state/recordcodec.js';

const num = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(0, 1.5, 1763942400123.4568, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2));
const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('', ' ', '"', '\\', ',', ']', '[', 'a"b,c]'));
const hash = fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), fc.constant(''));
const entry: fc.Arbitrary<Entry> = fc.oneof(
  fc.record({ type: fc.constant('file' as const), size: num, mtime: num, mode: num, hash }),
  fc.record({ type: fc.constant('dir' as const), mode: num }),
  fc.record({ type: fc.constant('symlink' as const), target: text }),
);
const stat: fc.Arbitrary<StatFingerprint | null> = fc.option(fc.record({ ino: num, size: num, mtimeMs: num, ctimeMs: num }), { nil: null });

/** JSON-equal and with keys in the same order: what the shard files compare. */
const sameJson = (a: unknown, b: unknown): void => expect(JSON.stringify(a)).toBe(JSON.stringify(b));

describe('baseRecordCodec', () => {
  it('round-trips every base record exactly, compactly', () => {
    fc.assert(
      fc.property(num, entry, stat, (seq, e, s) => {
        const record: BaseRecord = { seq, entry: e, stat: s };
        const packed = baseRecordCodec.encode(record);
        sameJson(baseRecordCodec.decode(packed), record);
        expect(packed.startsWith('[') || packed.startsWith('\x01')).toBe(true);
        expect(packed.length).toBeLessThan(JSON.stringify(record).length);
      }),
    );
  });

  it('packs a file with a sha256 and whole-number fields in binary, in well under 100 bytes', () => {
    const uint = fc.oneof(fc.nat(), fc.maxSafeNat(), fc.constantFrom(0, 127, 128, 16383, 16384, 1763942400123, Number.MAX_SAFE_INTEGER));
    const sha = fc.stringMatching(/^[0-9a-f]{64}$/);
    fc.assert(
      fc.property(uint, uint, uint, uint, sha, fc.option(fc.record({ ino: uint, size: uint, mtimeMs: num, ctimeMs: num }), { nil: null }), (seq, size, mtime, mode, hash, stat) => {
        const record: BaseRecord = { seq, entry: { type: 'file', size, mtime, mode, hash }, stat };
        const packed = baseRecordCodec.encode(record);
        expect(packed.charCodeAt(0)).toBe(1);
        sameJson(baseRecordCodec.decode(packed), record);
        expect(baseRecordCodec.decode(packed)).toEqual(record); // -0 and all: the bytes of the doubles are kept
      }),
    );
    const typical = baseRecordCodec.encode({
      seq: 100_000,
      entry: { type: 'file', size: 256, mtime: 1763942400123, mode: 0o644, hash: 'ab'.repeat(32) },
      stat: { ino: 12_345_678, size: 256, mtimeMs: 1763942400123.4568, ctimeMs: 1763942400223.1234 },
    });
    expect(typical.length).toBeLessThan(72);
  });

  it('keeps a record of another shape as its JSON, exactly', () => {
    const odd: unknown[] = [
      { entry: { type: 'dir', mode: 0o755 }, seq: 1, stat: null }, // key order
      { seq: 1, entry: { type: 'file', size: 1, mtime: 2, mode: 3, hash: 'h', extra: true }, stat: null },
      { seq: 1, entry: { type: 'dir', mode: NaN }, stat: null },
      { seq: 1, entry: { type: 'socket' }, stat: null },
      { seq: 1, entry: { type: 'dir', mode: 1 }, stat: { ino: 1, size: 2, mtimeMs: 3 } },
      { seq: 1, entry: { type: 'dir', mode: 1 }, stat: { ino: 1, size: 2, mtimeMs: 3, ctimeMs: Infinity } },
      ['an', 'array'],
      42,
      null,
    ];
    for (const value of odd) sameJson(baseRecordCodec.decode(baseRecordCodec.encode(value as BaseRecord)), value);
  });
});

describe('serverRecordCodec', () => {
  const record = fc
    .record({ seq: num, entry: fc.option(entry, { nil: null }), origin: text, stat, from: fc.option(text, { nil: undefined }) })
    .map(({ from, ...rest }) => {
      const r: ServerRecord = { seq: rest.seq, entry: rest.entry, origin: rest.origin, stat: rest.stat };
      if (from !== undefined) r.from = from;
      return r;
    });

  it('round-trips every server record exactly, and reads tombstone and origin without decoding', () => {
    fc.assert(
      fc.property(record, text, (r, other) => {
        const packed = serverRecordCodec.encode(r);
        sameJson(serverRecordCodec.decode(packed), r);
        expect(packed.startsWith('[') || packed.startsWith('\x02')).toBe(true);
        expect(isTombstonePacked(packed)).toBe(r.entry === null);
        expect(originTest(r.origin)(packed)).toBe(true);
        expect(originTest(other)(packed)).toBe(other === r.origin);
        expect(originTest(`${r.origin}x`)(packed)).toBe(false);
      }),
    );
  });

  it('answers the same for a record kept as JSON', () => {
    const odd = { seq: 3, origin: 'hub', entry: null, stat: null }; // key order
    const packed = serverRecordCodec.encode(odd as ServerRecord);
    expect(packed.startsWith('{')).toBe(true);
    sameJson(serverRecordCodec.decode(packed), odd);
    expect(isTombstonePacked(packed)).toBe(true);
    expect(originTest('hub')(packed)).toBe(true);
    expect(originTest('hu')(packed)).toBe(false);
  });

  it('tells an origin from a longer one that starts with it, packed in binary or not', () => {
    const file = { type: 'file' as const, size: 1, mtime: 2, mode: 0o644, hash: 'cd'.repeat(32) };
    for (const record of [
      { seq: 1, entry: null, origin: 'alphabet', stat: null },
      { seq: 300, entry: file, origin: 'alphabet', stat: null },
      { seq: 300, entry: file, origin: 'alphabet', stat: { ino: 5, size: 1, mtimeMs: 2.5, ctimeMs: 3.5 } },
      { seq: 300, entry: file, origin: 'été', stat: null },
      { seq: 300, entry: file, origin: '節点', stat: null },
      { seq: 300, entry: file, origin: 'x'.repeat(300), stat: null },
    ]) {
      const packed = serverRecordCodec.encode(record);
      expect(packed.charCodeAt(0)).toBe(record.entry !== null && record.origin.length < 256 && record.origin !== '節点' ? 2 : 0x5b);
      sameJson(serverRecordCodec.decode(packed), record);
      expect(originTest(record.origin.slice(0, -1))(packed)).toBe(false);
      expect(originTest(record.origin)(packed)).toBe(true);
      expect(originTest(`${record.origin}x`)(packed)).toBe(false);
      expect(isTombstonePacked(packed)).toBe(record.entry === null);
    }
  });
});

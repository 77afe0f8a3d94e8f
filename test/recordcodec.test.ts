import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { BaseRecord, Entry, StatFingerprint } from '../src/core/types.js';
import type { ServerRecord } from '../src/changelog.js';
import { baseRecordCodec, hasOriginPacked, isTombstonePacked, serverRecordCodec } from '../src/recordcodec.js';

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
        expect(packed.startsWith('[')).toBe(true);
        expect(packed.length).toBeLessThan(JSON.stringify(record).length);
      }),
    );
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
        expect(packed.startsWith('[')).toBe(true);
        expect(isTombstonePacked(packed)).toBe(r.entry === null);
        expect(hasOriginPacked(packed, JSON.stringify(r.origin))).toBe(true);
        expect(hasOriginPacked(packed, JSON.stringify(other))).toBe(other === r.origin);
      }),
    );
  });

  it('answers the same for a record kept as JSON', () => {
    const odd = { seq: 3, origin: 'hub', entry: null, stat: null }; // key order
    const packed = serverRecordCodec.encode(odd as ServerRecord);
    expect(packed.startsWith('{')).toBe(true);
    sameJson(serverRecordCodec.decode(packed), odd);
    expect(isTombstonePacked(packed)).toBe(true);
    expect(hasOriginPacked(packed, '"hub"')).toBe(true);
    expect(hasOriginPacked(packed, '"hu"')).toBe(false);
  });

  it('tells an origin from a longer one that starts with it', () => {
    const packed = serverRecordCodec.encode({ seq: 1, entry: null, origin: 'alphabet', stat: null });
    expect(hasOriginPacked(packed, '"alpha"')).toBe(false);
    expect(hasOriginPacked(packed, '"alphabet"')).toBe(true);
  });
});

import { describe, expect, it } from 'vitest';
import { SchemaError, validateParams, validateResult } from '../src/rpc.js';

const folder = (root: string) => ({ root, tmp: `${root}/.systemsync/tmp`, head: 1, cursor: 0, floor: 0 });

function reasonOf(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(SchemaError);
    return (err as SchemaError).message;
  }
  throw new Error('expected a SchemaError, got none');
}

describe('wire schemas (valibot)', () => {
  it('a map keeps every legal key, "constructor" included (valibot record would drop it)', () => {
    const hello = validateResult('hello', { server: 'hub', folders: { docs: folder('/d'), constructor: folder('/c'), prototype: folder('/p') }, missing: [] });
    expect(Object.keys(hello.folders)).toEqual(['docs', 'constructor', 'prototype']);
    expect(new Map(Object.entries(hello.folders)).get('constructor')?.root).toBe('/c');
  });

  it('a map names the bad key or value by its field, and counts keys before looking at them', () => {
    expect(reasonOf(() => validateResult('hello', { server: 'hub', folders: { '.hidden': folder('/h') }, missing: [] }))).toMatch(/^result\.folders\["\.hidden"\]: expected letters/);
    expect(reasonOf(() => validateResult('hello', { server: 'hub', folders: { docs: { ...folder('/d'), head: -1 } }, missing: [] }))).toBe('result.folders.docs.head: expected an integer 0..9007199254740991, got -1');
    const many = Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`f${i}`, null]));
    expect(reasonOf(() => validateResult('hello', { server: 'hub', folders: many, missing: [] }))).toBe('result.folders: expected at most 1000 keys, got 1001');
  });

  it('a moved child carries its seq before the move; an older server\'s pair is still accepted; anything else is refused', () => {
    const pushed = validateResult('push', { results: [{ status: 'ok', seq: 7, moved: [['e/x', 8, 5], ['e/y', 9]] }] });
    expect(pushed.results[0]).toEqual({ status: 'ok', seq: 7, moved: [['e/x', 8, 5], ['e/y', 9]] });
    expect(reasonOf(() => validateResult('push', { results: [{ status: 'ok', seq: 7, moved: [['e/x', 8, 5, 1]] }] }))).toMatch(/^result\.results\[0\]\.moved\[0\]/);
    expect(reasonOf(() => validateResult('push', { results: [{ status: 'ok', seq: 7, moved: [['e/x', 8, -1]] }] }))).toMatch(/^result\.results\[0\]\.moved\[0\]/);
    expect(reasonOf(() => validateResult('push', { results: [{ status: 'ok', seq: 7, moved: [['../x', 8, 5]] }] }))).toMatch(/^result\.results\[0\]\.moved\[0\]/);
  });

  it('strings are bounded in UTF-8 bytes, not in characters', () => {
    const twoByteName = 'é'.repeat(33); // 33 characters, 66 bytes
    expect(reasonOf(() => validateParams('ack', { folder: twoByteName, seq: 1 }))).toBe('params.folder: longer than 64 bytes');
    const path = 'é'.repeat(100).concat('/').repeat(21); // under 4096 characters, over 4096 bytes
    expect(path.length).toBeLessThan(4096);
    expect(reasonOf(() => validateParams('versions', { folder: 'docs', path }))).toBe('params.path: longer than 4096 bytes');
  });

  it('an own "__proto__" key is an unknown key, and nothing reaches the prototype', () => {
    const params = JSON.parse('{"folder":"docs","seq":1,"__proto__":{"polluted":true}}') as unknown;
    expect(reasonOf(() => validateParams('ack', params))).toBe('params.__proto__: unknown key');
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });
});

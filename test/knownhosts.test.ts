import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fingerprintSha256,
  formatKnownHostsLine,
  hostLookupName,
  keyTypeOfBlob,
  knownKeyTypesFor,
  lookupHostKey,
  type HostKeyStatus,
} from '../src/ssh/knownhosts.js';
import { generateKey } from './helpers/sshd.js';

const execFileAsync = promisify(execFile);

/** `|1|salt|hash` for the lookup name `name`, as `ssh-keygen -H` writes it (salt: 20 random bytes there). */
function hashHostName(name: string, salt: Buffer): string {
  const digest = createHmac('sha1', salt).update(name).digest();
  return `|1|${salt.toString('base64')}|${digest.toString('base64')}`;
}

interface RealKey {
  type: string;
  base64: string;
  blob: Buffer;
  pubPath: string;
}

let dir: string;
let keyA: RealKey;
let keyB: RealKey;
let keyRsa: RealKey;

async function makeKey(name: string, type: 'ed25519' | 'rsa'): Promise<RealKey> {
  const generated = await generateKey(path.join(dir, name), type);
  const [keyType, base64] = generated.publicKeyLine.split(' ');
  return { type: keyType!, base64: base64!, blob: Buffer.from(base64!, 'base64'), pubPath: generated.publicKeyPath };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'systemsync-knownhosts-'));
  [keyA, keyB, keyRsa] = await Promise.all([makeKey('a', 'ed25519'), makeKey('b', 'ed25519'), makeKey('r', 'rsa')]);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('lookupHostKey', () => {
  // Each case builds its known_hosts text from the real keys A, B and R (rsa).
  const cases: Array<{
    description: string;
    lines: (k: { A: string; B: string; R: string }) => string[];
    host: string;
    port: number;
    offered: 'A' | 'B';
    expected: HostKeyStatus;
    knownCount: number;
  }> = [
    { description: 'empty file', lines: () => [], host: 'example.com', port: 22, offered: 'A', expected: 'unknown', knownCount: 0 },
    { description: 'plain host, port 22', lines: (k) => [`example.com ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'host names are case-insensitive', lines: (k) => [`Example.COM ${k.A}`], host: 'EXAMPLE.com', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'other key for the host', lines: (k) => [`example.com ${k.B}`], host: 'example.com', port: 22, offered: 'A', expected: 'mismatch', knownCount: 1 },
    { description: 'other host only', lines: (k) => [`other.org ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'unknown', knownCount: 0 },
    { description: '[host]:port entry', lines: (k) => [`[127.0.0.1]:2222 ${k.A}`], host: '127.0.0.1', port: 2222, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'plain entry does not cover another port', lines: (k) => [`127.0.0.1 ${k.B}`], host: '127.0.0.1', port: 2222, offered: 'A', expected: 'unknown', knownCount: 0 },
    { description: '[host]:port entry does not cover port 22', lines: (k) => [`[127.0.0.1]:2222 ${k.B}`], host: '127.0.0.1', port: 22, offered: 'A', expected: 'unknown', knownCount: 0 },
    { description: 'comma-separated patterns', lines: (k) => [`a.org,example.com,10.0.0.1 ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'wildcard *', lines: (k) => [`*.example.com ${k.A}`], host: 'www.example.com', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'wildcard * does not match the bare domain', lines: (k) => [`*.example.com ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'unknown', knownCount: 0 },
    { description: 'wildcard ?', lines: (k) => [`host?.lan ${k.A}`], host: 'host7.lan', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'wildcard ? needs exactly one character', lines: (k) => [`host?.lan ${k.A}`], host: 'host17.lan', port: 22, offered: 'A', expected: 'unknown', knownCount: 0 },
    { description: 'wildcard in [host]:port', lines: (k) => [`[127.0.0.*]:2222 ${k.A}`], host: '127.0.0.1', port: 2222, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'negated pattern vetoes the line', lines: (k) => [`*.example.com,!evil.example.com ${k.A}`], host: 'evil.example.com', port: 22, offered: 'A', expected: 'unknown', knownCount: 0 },
    { description: 'negated pattern leaves others', lines: (k) => [`*.example.com,!evil.example.com ${k.A}`], host: 'good.example.com', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'a negation alone matches nothing', lines: (k) => [`!evil.example.com ${k.A}`], host: 'good.example.com', port: 22, offered: 'A', expected: 'unknown', knownCount: 0 },
    { description: 'one of several keys matches', lines: (k) => [`example.com ${k.B}`, `example.com ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'match', knownCount: 2 },
    { description: 'key of another type known: mismatch', lines: (k) => [`example.com ${k.R}`], host: 'example.com', port: 22, offered: 'A', expected: 'mismatch', knownCount: 1 },
    { description: '@revoked key is refused even when listed', lines: (k) => [`example.com ${k.A}`, `@revoked * ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'revoked', knownCount: 1 },
    { description: '@revoked other key does not matter', lines: (k) => [`example.com ${k.A}`, `@revoked * ${k.B}`], host: 'example.com', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: '@revoked for another host does not matter', lines: (k) => [`example.com ${k.A}`, `@revoked other.org ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: '@cert-authority lines are ignored', lines: (k) => [`@cert-authority *.example.com ${k.A}`], host: 'www.example.com', port: 22, offered: 'A', expected: 'unknown', knownCount: 0 },
    { description: 'comments, blank lines, CRLF, comment after key', lines: (k) => ['# a comment', '', '   ', `example.com ${k.A} root@box\r`], host: 'example.com', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'malformed lines are skipped', lines: (k) => ['example.com', 'example.com ssh-ed25519', 'example.com ssh-ed25519 !!notbase64!!', `example.com ssh-rsa ${k.A.split(' ')[1]}`, `example.com ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'hashed entry for port 22', lines: (k) => [`${hashHostName('example.com', Buffer.alloc(20, 7))} ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'match', knownCount: 1 },
    { description: 'hashed entry for [host]:port', lines: (k) => [`${hashHostName('[127.0.0.1]:2222', Buffer.alloc(20, 9))} ${k.B}`], host: '127.0.0.1', port: 2222, offered: 'A', expected: 'mismatch', knownCount: 1 },
    { description: 'hashed entry of another host', lines: (k) => [`${hashHostName('other.org', Buffer.alloc(20, 1))} ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'unknown', knownCount: 0 },
    { description: 'broken hashed entry is skipped', lines: (k) => [`|1|abc ${k.A}`, `|2|${Buffer.alloc(20).toString('base64')}|${Buffer.alloc(20).toString('base64')} ${k.A}`], host: 'example.com', port: 22, offered: 'A', expected: 'unknown', knownCount: 0 },
  ];

  it.each(cases)('$description', ({ lines, host, port, offered, expected, knownCount }) => {
    const text = lines({ A: `${keyA.type} ${keyA.base64}`, B: `${keyB.type} ${keyB.base64}`, R: `${keyRsa.type} ${keyRsa.base64}` }).join('\n');
    const blob = offered === 'A' ? keyA.blob : keyB.blob;
    const result = lookupHostKey(text, host, port, blob);
    expect(result.status).toBe(expected);
    expect(result.knownKeys).toHaveLength(knownCount);
  });

  it('reports the known keys with their line numbers and types', () => {
    const text = ['# header', `example.com ${keyB.type} ${keyB.base64}`, `example.com ${keyRsa.type} ${keyRsa.base64}`].join('\n');
    const result = lookupHostKey(text, 'example.com', 22, keyA.blob);
    expect(result.status).toBe('mismatch');
    expect(result.knownKeys.map((k) => [k.line, k.keyType])).toEqual([
      [2, 'ssh-ed25519'],
      [3, 'ssh-rsa'],
    ]);
    expect(result.knownKeys[0]!.keyBlob.equals(keyB.blob)).toBe(true);
  });
});

describe('hashed entries written by ssh-keygen -H', () => {
  const cases = [
    { description: 'plain host', host: 'example.com', port: 22, entry: 'example.com' },
    { description: 'host with port', host: '127.0.0.1', port: 2222, entry: '[127.0.0.1]:2222' },
    { description: 'IPv6 with port', host: '::1', port: 2200, entry: '[::1]:2200' },
  ];

  it.each(cases)('$description', async ({ host, port, entry }) => {
    const file = path.join(dir, `hashed-${port}`);
    await writeFile(file, `${entry} ${keyA.type} ${keyA.base64}\nunrelated.org ${keyB.type} ${keyB.base64}\n`);
    await execFileAsync('ssh-keygen', ['-H', '-f', file]);
    const text = await readFile(file, 'utf8');
    expect(text).not.toContain(entry); // really hashed
    expect(text.split('\n').filter((l) => l.startsWith('|1|'))).toHaveLength(2);
    expect(lookupHostKey(text, host, port, keyA.blob).status).toBe('match');
    expect(lookupHostKey(text, host, port, keyB.blob).status).toBe('mismatch');
    expect(lookupHostKey(text, 'unrelated.org', 22, keyB.blob).status).toBe('match');
    expect(lookupHostKey(text, host, port === 22 ? 2222 : 22, keyA.blob).status).toBe('unknown');
  });
});

describe('fingerprintSha256', () => {
  it.each([
    { description: 'ed25519', key: () => keyA },
    { description: 'rsa', key: () => keyRsa },
  ])('equals ssh-keygen -l for $description', async ({ key }) => {
    const { stdout } = await execFileAsync('ssh-keygen', ['-l', '-E', 'sha256', '-f', key().pubPath]);
    const expected = stdout.split(' ')[1];
    expect(expected).toMatch(/^SHA256:/);
    expect(fingerprintSha256(key().blob)).toBe(expected);
  });
});

describe('formatKnownHostsLine', () => {
  it.each([
    { description: 'port 22 writes the bare host', host: 'Example.com', port: 22, prefix: 'example.com ' },
    { description: 'other ports write [host]:port', host: '127.0.0.1', port: 2222, prefix: '[127.0.0.1]:2222 ' },
  ])('$description, and the line is found again', ({ host, port, prefix }) => {
    const line = formatKnownHostsLine(host, port, keyA.type, keyA.blob);
    expect(line).toBe(`${prefix}${keyA.type} ${keyA.base64}`);
    expect(lookupHostKey(`${line}\n`, host, port, keyA.blob).status).toBe('match');
  });

  it('ssh-keygen -F finds a line we wrote', async () => {
    const file = path.join(dir, 'formatted');
    await writeFile(file, `${formatKnownHostsLine('127.0.0.1', 4022, keyA.type, keyA.blob)}\n`);
    const { stdout } = await execFileAsync('ssh-keygen', ['-F', '[127.0.0.1]:4022', '-f', file]);
    expect(stdout).toContain(keyA.base64);
  });
});

describe('small helpers', () => {
  it.each([
    { description: 'port 22', host: 'Host.Lan', port: 22, expected: 'host.lan' },
    { description: 'other port', host: 'Host.Lan', port: 8022, expected: '[host.lan]:8022' },
  ])('hostLookupName: $description', ({ host, port, expected }) => {
    expect(hostLookupName(host, port)).toBe(expected);
  });

  it.each([
    { description: 'ed25519 blob', blob: () => keyA.blob, expected: 'ssh-ed25519' },
    { description: 'rsa blob', blob: () => keyRsa.blob, expected: 'ssh-rsa' },
    { description: 'too short', blob: () => Buffer.from([0, 0]), expected: null },
    { description: 'length beyond the blob', blob: () => Buffer.from([0, 0, 0, 50, 65]), expected: null },
  ])('keyTypeOfBlob: $description', ({ blob, expected }) => {
    expect(keyTypeOfBlob(blob())).toBe(expected);
  });

  it('knownKeyTypesFor lists each type once, in file order, without revoked keys', () => {
    const text = [
      `@revoked example.com ${keyB.type} ${keyB.base64}`,
      `example.com ${keyRsa.type} ${keyRsa.base64}`,
      `example.com ${keyA.type} ${keyA.base64}`,
      `example.com ${keyRsa.type} ${keyRsa.base64}`,
    ].join('\n');
    expect(knownKeyTypesFor(text, 'example.com', 22)).toEqual(['ssh-rsa', 'ssh-ed25519']);
    expect(knownKeyTypesFor(text, 'other.org', 22)).toEqual([]);
  });
});

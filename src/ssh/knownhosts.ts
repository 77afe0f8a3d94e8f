/**
 * OpenSSH known_hosts: parsing and matching, the way ssh(1) reads the file.
 *
 * Supported: comma-separated host patterns, `[host]:port` for ports other than 22, hashed names
 * (`|1|base64salt|base64hmacsha1`), negated patterns (`!pattern`), wildcards `*` and `?`,
 * `@revoked` (a matching revoked key is refused), comments and blank lines. `@cert-authority`
 * lines are parsed but never match a plain key: ssh2 cannot negotiate host certificates, so a host
 * trusted only through a CA cannot be verified, and `certAuthoritiesFor` lets the caller refuse
 * to pin a plain key for it. Malformed lines are skipped.
 * Pure: text in, answers out; reading and appending the file is the caller's job.
 */
import { createHash, createHmac } from 'node:crypto';

export type HostKeyStatus = 'match' | 'mismatch' | 'unknown' | 'revoked';

/** One key listed in known_hosts for a host. */
export interface KnownHostKey {
  /** 1-based line number in the text. */
  line: number;
  keyType: string;
  keyBlob: Buffer;
}

export interface HostKeyLookup {
  status: HostKeyStatus;
  /** The non-revoked keys the file lists for this host (empty when `unknown`). */
  knownKeys: KnownHostKey[];
}

interface KnownHostsEntry {
  line: number;
  marker: 'revoked' | 'cert-authority' | null;
  hostField: string;
  keyType: string;
  keyBlob: Buffer;
}

/** The name ssh looks up in known_hosts: `host` for port 22, `[host]:port` otherwise (lowercased). */
export function hostLookupName(host: string, port: number): string {
  const name = host.toLowerCase();
  return port === 22 ? name : `[${name}]:${port}`;
}

/** A known_hosts line for this host and key: `[host]:port keytype base64` (or `host ...` on port 22). */
export function formatKnownHostsLine(host: string, port: number, keyType: string, keyBlob: Buffer): string {
  return `${hostLookupName(host, port)} ${keyType} ${keyBlob.toString('base64')}`;
}

/** `SHA256:<unpadded base64 of sha256(blob)>`, exactly as `ssh-keygen -l` prints it. */
export function fingerprintSha256(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type named inside an SSH public key blob ("ssh-ed25519"); null if the blob is malformed. */
export function keyTypeOfBlob(keyBlob: Buffer): string | null {
  if (keyBlob.length < 4) return null;
  const length = keyBlob.readUInt32BE(0);
  if (length === 0 || length > 64 || 4 + length > keyBlob.length) return null;
  const type = keyBlob.subarray(4, 4 + length).toString('latin1');
  return /^[\x21-\x7e]+$/.test(type) ? type : null;
}

/**
 * Looks the host key up in known_hosts text. `revoked` if a matching `@revoked` line lists this
 * key; `match` if a line for this host lists it; `mismatch` if lines for this host list only other
 * keys; `unknown` if no line names this host.
 */
export function lookupHostKey(text: string, host: string, port: number, keyBlob: Buffer): HostKeyLookup {
  const name = hostLookupName(host, port);
  const entries = parseKnownHosts(text).filter((entry) => isHostFieldMatching(entry.hostField, name));
  if (entries.some((entry) => entry.marker === 'revoked' && entry.keyBlob.equals(keyBlob))) {
    return { status: 'revoked', knownKeys: knownKeysOf(entries) };
  }
  const knownKeys = knownKeysOf(entries);
  if (knownKeys.some((known) => known.keyBlob.equals(keyBlob))) return { status: 'match', knownKeys };
  return { status: knownKeys.length > 0 ? 'mismatch' : 'unknown', knownKeys };
}

/** The `@cert-authority` keys whose host patterns cover this host (OpenSSH would accept a host certificate they signed). */
export function certAuthoritiesFor(text: string, host: string, port: number): KnownHostKey[] {
  const name = hostLookupName(host, port);
  return parseKnownHosts(text)
    .filter((entry) => entry.marker === 'cert-authority' && isHostFieldMatching(entry.hostField, name))
    .map(({ line, keyType, keyBlob }) => ({ line, keyType, keyBlob }));
}

/** Key types listed (not revoked) for the host, in file order, without duplicates. */
export function knownKeyTypesFor(text: string, host: string, port: number): string[] {
  const name = hostLookupName(host, port);
  const entries = parseKnownHosts(text).filter((entry) => isHostFieldMatching(entry.hostField, name));
  return [...new Set(knownKeysOf(entries).map((known) => known.keyType))];
}

function knownKeysOf(entries: KnownHostsEntry[]): KnownHostKey[] {
  return entries
    .filter((entry) => entry.marker === null)
    .map(({ line, keyType, keyBlob }) => ({ line, keyType, keyBlob }));
}

function parseKnownHosts(text: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    const fields = (lines[index] ?? '').trim().split(/[ \t]+/);
    if (fields[0] === undefined || fields[0] === '' || fields[0].startsWith('#')) continue;
    let marker: KnownHostsEntry['marker'] = null;
    if (fields[0].startsWith('@')) {
      if (fields[0] !== '@revoked' && fields[0] !== '@cert-authority') continue; // unknown markers
      marker = fields[0] === '@revoked' ? 'revoked' : 'cert-authority';
      fields.shift();
    }
    const [hostField, keyType, keyBase64] = fields;
    if (hostField === undefined || keyType === undefined || keyBase64 === undefined) continue;
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(keyBase64)) continue;
    const keyBlob = Buffer.from(keyBase64, 'base64');
    if (keyTypeOfBlob(keyBlob) !== keyType) continue;
    entries.push({ line: index + 1, marker, hostField, keyType, keyBlob });
  }
  return entries;
}

/** OpenSSH semantics: a negated pattern that matches vetoes the line; otherwise any positive match. */
function isHostFieldMatching(hostField: string, name: string): boolean {
  if (hostField.startsWith('|')) return isHashedNameMatching(hostField, name);
  let matched = false;
  for (const rawPattern of hostField.split(',')) {
    const negated = rawPattern.startsWith('!');
    const pattern = (negated ? rawPattern.slice(1) : rawPattern).toLowerCase();
    if (pattern === '' || !isWildcardMatching(pattern, name)) continue;
    if (negated) return false;
    matched = true;
  }
  return matched;
}

function isHashedNameMatching(hostField: string, name: string): boolean {
  const parts = hostField.split('|'); // ['', '1', salt, hash]
  if (parts.length !== 4 || parts[1] !== '1' || !parts[2] || !parts[3]) return false;
  const salt = Buffer.from(parts[2], 'base64');
  const expected = Buffer.from(parts[3], 'base64');
  if (salt.length === 0 || expected.length !== 20) return false;
  return createHmac('sha1', salt).update(name).digest().equals(expected);
}

/** `*` matches any run of characters, `?` exactly one; everything else literally. */
function isWildcardMatching(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let starP = -1;
  let starT = 0;
  while (t < text.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === text[t])) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === '*') {
      starP = p++;
      starT = t;
    } else if (starP >= 0) {
      p = starP + 1;
      t = ++starT;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * The embedded endpoint's host key: read it, or create it (ed25519, 0600, `.pub` 0644 beside it)
 * when it is missing, and the known_hosts line that clients need.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import ssh2 from 'ssh2';
import { SystemsyncError } from '../core/errors.js';
import { fingerprintSha256, formatKnownHostsLine } from '../ssh/knownhosts.js';

export interface HostKey {
  /** The private key file's content (OpenSSH format). */
  privateKey: Buffer;
  type: string;
  /** The public key blob (SSH wire format). */
  blob: Buffer;
  /** `SHA256:...` */
  fingerprint: string;
  /** True when this call created the key. */
  created: boolean;
}

/** A host key file that exists but cannot be used. code 'HOST_KEY_INVALID'. */
export class HostKeyFileError extends SystemsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('HOST_KEY_INVALID', message, options);
  }
}

/**
 * Reads the private host key at `file`, creating it (and its directory, 0700) first when it does
 * not exist. Never overwrites a file. The `.pub` beside it is (re)written when missing.
 * @throws HostKeyFileError for a file that is not a usable private key.
 */
export async function loadOrCreateHostKey(file: string): Promise<HostKey> {
  let data: Buffer | null = await fs.readFile(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw new HostKeyFileError(`cannot read the host key ${file}: ${err.message}`, { cause: err });
  });
  let created = false;
  if (data === null) {
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'systemsync host key' });
    try {
      await fs.writeFile(file, pair.private, { mode: 0o600, flag: 'wx' });
      created = true;
    } catch (err) {
      // Another process made it first: use that one.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new HostKeyFileError(`cannot write the host key ${file}: ${(err as Error).message}`, { cause: err });
    }
    data = await fs.readFile(file);
  }
  const parsed = ssh2.utils.parseKey(data);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key === undefined || key instanceof Error || !key.isPrivateKey()) {
    const why = key instanceof Error ? key.message : 'it holds no private key';
    throw new HostKeyFileError(`cannot use the host key ${file}: ${why} (remove it to have a new one made, or set [listen] host_key)`);
  }
  const blob = key.getPublicSSH();
  const pub = `${file}.pub`;
  const publicLine = `${key.type} ${blob.toString('base64')} systemsync host key\n`;
  await fs.writeFile(pub, publicLine, { mode: 0o644, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw new HostKeyFileError(`cannot write ${pub}: ${err.message}`, { cause: err });
  });
  return { privateKey: data, type: key.type, blob, fingerprint: fingerprintSha256(blob), created };
}

/** The line a client appends to its known_hosts to trust this key at `host`:`port`. */
export function hostKeyKnownHostsLine(key: Pick<HostKey, 'type' | 'blob'>, host: string, port: number): string {
  return formatKnownHostsLine(host, port, key.type, key.blob);
}

/** Connecting over SSH: option building, host key verification against known_hosts, authentication, the SFTP session. */
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import ssh2, { type SFTPWrapper } from 'ssh2';
import { withFileLock } from './filelock.js';

const { Client, utils: ssh2Utils } = ssh2;
import {
  fingerprintSha256,
  formatKnownHostsLine,
  hostLookupName,
  keyTypeOfBlob,
  knownKeyTypesFor,
  certAuthoritiesFor,
  lookupHostKey,
  type KnownHostKey,
} from './knownhosts.js';
import { TransferError, ConnectError, AuthFailedError, IdentityError, KnownHostsError, HostKeyUnknownError, HostKeyChangedError, HostKeyCertOnlyError, HostKeyRevokedError } from './errors.js';
import { SshSession } from './session.js';

export interface SshTarget {
  host: string;
  port: number;
  username: string;
  /** The private key itself (Buffer) or the path of its file (string). */
  privateKey: Buffer | string;
  knownHostsPath: string;
  /** `yes`: only keys already in known_hosts. `accept-new`: an unknown host's key is added. */
  hostKeyCheck: 'yes' | 'accept-new';
  readyTimeoutMs?: number;
  keepaliveIntervalMs?: number;
}

const DEFAULT_READY_TIMEOUT_MS = 20_000;
const DEFAULT_KEEPALIVE_INTERVAL_MS = 15_000;
const KEEPALIVE_COUNT_MAX = 3;

/** ssh2's default host key algorithms without SHA-1 `ssh-rsa`, in its order; reordered to prefer types known_hosts has. */
const HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  // Not 'ssh-rsa': its signatures use SHA-1 (OpenSSH disabled it by default in 8.8).
] as const;
type HostKeyAlgorithm = (typeof HOST_KEY_ALGORITHMS)[number];

/**
 * Connects, verifies the host key against known_hosts, authenticates with the private key and
 * opens one SFTP session. Rejects with ConnectError, AuthFailedError, IdentityError,
 * KnownHostsError, HostKeyUnknownError, HostKeyChangedError or HostKeyRevokedError.
 */
export async function connectSsh(target: SshTarget): Promise<SshSession> {
  const privateKey = await loadPrivateKey(target.privateKey);
  const knownHostsText = await readKnownHosts(target.knownHostsPath);
  const where = hostLookupName(target.host, target.port);
  const client = new Client();
  // ssh2 may report more errors after the first (e.g. "Connection lost before handshake" after a
  // timeout); the handlers below classify the one that matters, the rest must not crash the process.
  client.on('error', () => {});
  let hostKeyFailure: TransferError | null = null;

  const verifyHostKey = (keyBlob: Buffer, verify: (ok: boolean) => void): void => {
    checkHostKey(target, keyBlob)
      .then(() => verify(true))
      .catch((err: unknown) => {
        hostKeyFailure = err instanceof TransferError ? err : new KnownHostsError(String(err), { cause: err });
        verify(false);
      });
  };

  await new Promise<void>((resolve, reject) => {
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const onError = (err: Error & { level?: string; code?: string }): void => {
      cleanup();
      client.end();
      reject(hostKeyFailure ?? classifyConnectError(err, where, target.username));
    };
    const onClose = (): void => {
      cleanup();
      reject(hostKeyFailure ?? new ConnectError(`ssh ${where}: connection closed during handshake`));
    };
    const cleanup = (): void => {
      client.off('ready', onReady);
      client.off('error', onError);
      client.off('close', onClose);
    };
    client.on('ready', onReady);
    client.on('error', onError);
    client.on('close', onClose);
    // Our own socket (see coalesceWrites), connected here: ssh2 waits for its 'connect' and
    // handles its errors, end and close exactly as for the socket it would have made itself.
    const sock = new net.Socket();
    try {
      sock.connect({ host: target.host, port: target.port });
      // After connect(): it puts Socket.prototype.write back on the socket.
      coalesceWrites(sock);
      client.connect({
        sock,
        host: target.host,
        port: target.port,
        username: target.username,
        privateKey,
        readyTimeout: target.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS,
        keepaliveInterval: target.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS,
        keepaliveCountMax: KEEPALIVE_COUNT_MAX,
        hostVerifier: verifyHostKey,
        algorithms: { serverHostKey: hostKeyAlgorithmsPreferring(knownKeyTypesFor(knownHostsText, target.host, target.port)) },
      });
    } catch (err) {
      cleanup();
      sock.destroy();
      reject(new ConnectError(`ssh ${where}: ${(err as Error).message}`, { cause: err }));
    }
  });

  let sftp: SFTPWrapper;
  try {
    sftp = await new Promise<SFTPWrapper>((resolve, reject) => {
      client.sftp((err, wrapper) => (err ? reject(err) : resolve(wrapper)));
    });
  } catch (err) {
    client.end();
    throw new ConnectError(`ssh ${where}: could not start the sftp subsystem: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return new SshSession(client, sftp, where);
}

/**
 * Makes `sock` send everything written to it in one turn of the event loop with one writev.
 * ssh2 writes every SSH packet by itself; with many small SFTP requests in flight that is one
 * syscall per packet. The first write of a turn corks the socket and schedules the uncork for the
 * end of that turn (setImmediate: after the I/O callbacks, microtasks and nextTicks that produced
 * the writes), so the added latency is below one loop iteration. end() uncorks by itself.
 * Must be called after sock.connect(), which restores Socket.prototype.write.
 */
export function coalesceWrites(sock: net.Socket): void {
  // ssh2 sets this on the socket it creates (each channel adds listeners); do as it does.
  sock.setMaxListeners(0);
  const write = sock.write;
  let flushScheduled = false;
  const flush = (): void => {
    flushScheduled = false;
    sock.uncork();
  };
  sock.write = function (this: net.Socket, ...args: unknown[]): boolean {
    if (!flushScheduled) {
      flushScheduled = true;
      sock.cork();
      setImmediate(flush);
    }
    return (write as (...writeArgs: unknown[]) => boolean).apply(this, args);
  } as typeof sock.write;
}

async function loadPrivateKey(key: Buffer | string): Promise<Buffer> {
  let data: Buffer;
  const source = typeof key === 'string' ? key : 'the private key';
  if (typeof key === 'string') {
    try {
      data = await fsp.readFile(key);
    } catch (err) {
      throw new IdentityError(`cannot read the private key ${key}: ${(err as Error).message}`, { cause: err });
    }
  } else data = key;
  const parsed = ssh2Utils.parseKey(data);
  if (parsed instanceof Error) {
    const hint = /encrypted|passphrase/i.test(parsed.message)
      ? ' (passphrase-protected keys are not supported: use a key without a passphrase)'
      : '';
    throw new IdentityError(`cannot use ${source}: ${parsed.message}${hint}`, { cause: parsed });
  }
  const first = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!first || first.isPrivateKey?.() === false) {
    throw new IdentityError(`cannot use ${source}: it holds no private key`);
  }
  return data;
}

async function readKnownHosts(knownHostsPath: string): Promise<string> {
  try {
    return await fsp.readFile(knownHostsPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new KnownHostsError(`cannot read known_hosts ${knownHostsPath}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Checks the offered host key against known_hosts. Under accept-new, an unknown key is looked up
 * again and appended while holding `<known_hosts>.lock` (`locked`), in one O_APPEND write: two
 * processes meeting a new host at once pin one key, and the other sees it (a match, or a changed
 * key). A host covered by a `@cert-authority` line is trusted only through host certificates,
 * which ssh2 cannot negotiate: its plain key is never pinned.
 */
async function checkHostKey(target: SshTarget, keyBlob: Buffer, locked = false): Promise<void> {
  const text = await readKnownHosts(target.knownHostsPath);
  const { status, knownKeys } = lookupHostKey(text, target.host, target.port, keyBlob);
  const where = hostLookupName(target.host, target.port);
  const keyType = keyTypeOfBlob(keyBlob) ?? 'unknown-key-type';
  const fingerprint = fingerprintSha256(keyBlob);
  switch (status) {
    case 'match':
      return;
    case 'revoked':
      throw new HostKeyRevokedError(
        `host key ${keyType} ${fingerprint} of ${where} is marked @revoked in ${target.knownHostsPath}: refusing to connect`,
        fingerprint,
      );
    case 'mismatch':
      throw hostKeyChanged(target, where, keyType, fingerprint, knownKeys);
    case 'unknown': {
      const line = formatKnownHostsLine(target.host, target.port, keyType, keyBlob);
      const authorities = certAuthoritiesFor(text, target.host, target.port);
      if (authorities.length > 0) {
        throw new HostKeyCertOnlyError(
          `host ${where} is trusted in ${target.knownHostsPath} only through @cert-authority ` +
            `(${authorities.map((k) => `${k.keyType} ${fingerprintSha256(k.keyBlob)} (line ${k.line})`).join(', ')}), ` +
            `but systemsync (ssh2) cannot verify host certificates, and it will not pin the plain key ${keyType} ${fingerprint} ` +
            'in their place, whatever host_key_check says. If that fingerprint is the server\'s (check with "ssh-keygen -lf' +
            ` /etc/ssh/ssh_host_*_key.pub" on the server), add its plain key line: ${line}`,
          fingerprint,
          line,
        );
      }
      if (target.hostKeyCheck === 'accept-new') {
        if (!locked) {
          await fsp.mkdir(path.dirname(target.knownHostsPath), { recursive: true, mode: 0o700 }).catch(() => undefined);
          await withFileLock(target.knownHostsPath, () => checkHostKey(target, keyBlob, true)).catch((err: unknown) => {
            if (err instanceof TransferError) throw err;
            throw new KnownHostsError(`cannot add the host key to ${target.knownHostsPath}: ${(err as Error).message}`, { cause: err });
          });
          return;
        }
        await appendKnownHostsLine(target.knownHostsPath, text, line);
        return;
      }
      const portFlag = target.port === 22 ? '' : `-p ${target.port} `;
      throw new HostKeyUnknownError(
        `host key of ${where} is not known: ${keyType} ${fingerprint} is not in ${target.knownHostsPath}` +
          ' (host_key_check = yes). If that fingerprint is the server\'s (check with "ssh-keygen -lf' +
          ' /etc/ssh/ssh_host_*_key.pub" on the server), add it with:' +
          ` ssh-keyscan ${portFlag}${target.host} >> ${target.knownHostsPath}` +
          ' or set host_key_check = accept-new for the first connection.',
        fingerprint,
        line,
      );
    }
  }
}

function hostKeyChanged(
  target: SshTarget,
  where: string,
  keyType: string,
  fingerprint: string,
  knownKeys: KnownHostKey[],
): HostKeyChangedError {
  const known = knownKeys.map((k) => `${k.keyType} ${fingerprintSha256(k.keyBlob)} (line ${k.line})`);
  return new HostKeyChangedError(
    `HOST KEY CHANGED for ${where}: ${target.knownHostsPath} lists ${known.join(', ')},` +
      ` but the server offered ${keyType} ${fingerprint}. Someone may be intercepting the connection,` +
      ' or the server was reinstalled. Refusing to connect. If the new key is genuine, remove the old' +
      ` entry with: ssh-keygen -R "${where}" -f ${target.knownHostsPath}, then connect again.`,
    knownKeys.map((k) => fingerprintSha256(k.keyBlob)),
    fingerprint,
  );
}

async function appendKnownHostsLine(knownHostsPath: string, currentText: string, line: string): Promise<void> {
  try {
    await fsp.mkdir(path.dirname(knownHostsPath), { recursive: true, mode: 0o700 });
    const separator = currentText.length > 0 && !currentText.endsWith('\n') ? '\n' : '';
    await fsp.appendFile(knownHostsPath, `${separator}${line}\n`, { mode: 0o600 });
  } catch (err) {
    throw new KnownHostsError(`cannot add the host key to ${knownHostsPath}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function hostKeyAlgorithmsPreferring(knownTypes: string[]): HostKeyAlgorithm[] {
  const algorithmsOf = (type: string): HostKeyAlgorithm[] =>
    type === 'ssh-rsa'
      ? ['rsa-sha2-512', 'rsa-sha2-256']
      : HOST_KEY_ALGORITHMS.filter((algorithm) => algorithm === type);
  const preferred = knownTypes.flatMap(algorithmsOf);
  return [...new Set([...preferred, ...HOST_KEY_ALGORITHMS])];
}

function classifyConnectError(err: Error & { level?: string; code?: string }, where: string, user: string): TransferError {
  if (err.level === 'client-authentication') {
    return new AuthFailedError(
      `ssh ${user}@${where}: authentication failed: the server did not accept the key (is its public key in ~${user}/.ssh/authorized_keys there?)`,
      { cause: err },
    );
  }
  if (err.level === 'client-timeout') {
    return new ConnectError(`ssh ${where}: timed out waiting for the SSH handshake`, { cause: err });
  }
  const detail = err.code ? `${err.code} ${err.message}` : err.message;
  return new ConnectError(`ssh ${where}: cannot connect: ${detail}`, { cause: err });
}

// ---------------------------------------------------------------------------------------------
// The session

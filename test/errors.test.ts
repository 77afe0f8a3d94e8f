/**
 * One error root (core/errors.ts): every layer's error descends from SystemsyncError and keeps
 * its code, message and cause. And the boundary that must not move with the hierarchy: only a
 * SyncError is answered to a peer with its message; the other layers' errors, whose messages
 * name local paths, reach the peer as a bare internal error.
 */
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PathError, SyncError, SystemsyncError } from '../src/core/errors.js';
import { ConfigError } from '../src/cli/config.js';
import { DaemonNotRunningError } from '../src/cli/control.js';
import { UsageError } from '../src/cli/recovery.js';
import { HostKeyFileError } from '../src/endpoint/hostkey.js';
import { UnsafePathError } from '../src/fs/safefs.js';
import { StateCorruptError, StoreClosedError } from '../src/persistence.js';
import { RemoteError, RpcTimeoutError, createRpcPeer, errorToRpc, type RpcPeer } from '../src/rpc.js';
import { FileLockError } from '../src/ssh/filelock.js';
import { ConnectError, LocalFileError, SftpError } from '../src/ssh/transfer.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';
import { rejection } from './helpers/wait.js';

const SECRET = '/home/alice/.local/state/systemsync/base.json';
const cause = Object.assign(new Error(`EACCES: permission denied, open '${SECRET}'`), { code: 'EACCES' });

/** Errors of the layers below the sync (disk, ssh, config, cli): their messages name local things. */
function localErrors(): SystemsyncError[] {
  return [
    new LocalFileError(`cannot read ${SECRET}`, { cause }),
    new ConnectError(`connect to 10.0.0.7:22 failed (${SECRET})`, { cause }),
    new SftpError('PERMISSION_DENIED', true, 'open', SECRET, `open ${SECRET}: permission denied`),
    new StateCorruptError(SECRET, 'bad JSON', { cause }),
    new StoreClosedError(SECRET),
    new ConfigError({ file: SECRET, section: 'folder docs', key: 'path' }, 'expected an absolute path'),
    new FileLockError(`${SECRET}.lock stays locked`),
    new DaemonNotRunningError(`no daemon answers on ${SECRET}`, { cause }),
    new HostKeyFileError(`cannot read the host key ${SECRET}`, { cause }),
    new UsageError(`${SECRET} is not inside a folder`),
    new SystemsyncError('SOMETHING', `about ${SECRET}`),
  ];
}

describe('one error root', () => {
  it('every layer keeps its code, its message and its cause under SystemsyncError', () => {
    const expected: Array<[SystemsyncError, string, string]> = [
      [new PathError('absolute', '/etc'), 'BAD_PATH', 'bad path "/etc": absolute'],
      [new UnsafePathError('/srv/docs', 'a/b', 'a symlinked parent'), 'UNSAFE_PATH', '/srv/docs: "a/b": a symlinked parent'],
      [new RpcTimeoutError('push', 5), 'RPC_TIMEOUT', 'push: no answer within 5 ms'],
      [new LocalFileError('cannot read x', { cause }), 'LOCAL_IO', 'cannot read x'],
      [new StateCorruptError('s.json', 'bad JSON'), 'STATE_CORRUPT', 'state file s.json is corrupt: bad JSON'],
      [new ConfigError({ file: 'c.cfg', section: 'folder docs', key: 'path' }, 'missing'), 'CONFIG_INVALID', 'c.cfg [folder docs] path: missing'],
      [new FileLockError('x.lock stays locked'), 'LOCK_TIMEOUT', 'x.lock stays locked'],
      [new DaemonNotRunningError('no daemon', { cause }), 'NOT_RUNNING', 'no daemon'],
      [new HostKeyFileError('bad key'), 'HOST_KEY_INVALID', 'bad key'],
      [new UsageError('takes one PATH'), 'USAGE', 'takes one PATH'],
    ];
    for (const [err, code, message] of expected) {
      expect(err).toBeInstanceOf(SystemsyncError);
      expect(err.code).toBe(code);
      expect(err.message).toBe(message);
      expect(err.name).toBe(err.constructor.name);
    }
    expect(new LocalFileError('x', { cause }).cause).toBe(cause);
    expect((new LocalFileError('x', { cause }) as LocalFileError).errno).toBe('EACCES');
    expect('cause' in new FileLockError('x')).toBe(false);
  });

  it('only the sync layer is a SyncError: the layers below are not', () => {
    expect(new PathError('empty', '')).toBeInstanceOf(SyncError);
    expect(new RpcTimeoutError('push', 5)).toBeInstanceOf(SyncError);
    for (const err of localErrors()) expect(err, err.name).not.toBeInstanceOf(SyncError);
  });

  it('errorToRpc answers a SyncError with its code and message, and anything else with a bare internal error', () => {
    const sync = errorToRpc(new SyncError('FOLDER_PAUSED', 'folder docs is paused on the server: root gone'));
    expect(sync.message).toBe('folder docs is paused on the server: root gone');
    expect(sync.data).toEqual({ code: 'FOLDER_PAUSED' });
    for (const err of localErrors()) {
      const logged: string[] = [];
      const wire = errorToRpc(err, (_level, msg) => logged.push(msg));
      expect(wire.message, err.name).toBe('Internal error');
      expect(wire.code).toBe(-32603);
      expect(wire.data).toEqual({ code: 'RPC_INTERNAL' });
      expect(logged.join('\n')).toContain(SECRET);
    }
  });
});

describe('what a peer sees of a handler error', () => {
  const cleanups: Array<() => void | Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await cleanupTempDirs();
  });

  /** A server peer whose `status` handler throws what `next()` gives, and a client peer on it. */
  async function pair(next: () => Error): Promise<RpcPeer> {
    const socketPath = path.join(await tempDir('systemsync-errors-'), 'rpc.sock');
    const peers: RpcPeer[] = [];
    const server = net.createServer((socket) => {
      peers.push(createRpcPeer(socket, { handlers: { status: () => { throw next(); } }, context: {}, log: () => undefined }));
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    const socket = net.connect(socketPath);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = createRpcPeer(socket, { handlers: {}, context: {} });
    cleanups.push(async () => {
      client.close();
      for (const p of peers) p.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return client;
  }

  it('a SyncError arrives with its code and message; the other layers arrive as RPC_INTERNAL without theirs', async () => {
    const thrown: Error[] = [new SyncError('NOT_A_CONFLICT', '"a.txt" is not a conflict copy'), ...localErrors()];
    let i = 0;
    const client = await pair(() => thrown[i] as Error);
    for (i = 0; i < thrown.length; i++) {
      const err = await rejection(client.request('status', {}));
      expect(err).toBeInstanceOf(RemoteError);
      if (i === 0) {
        expect(err.code).toBe('NOT_A_CONFLICT');
        expect(err.message).toBe('"a.txt" is not a conflict copy');
      } else {
        expect(err.code, (thrown[i] as Error).name).toBe('RPC_INTERNAL');
        expect(err.message).toBe('Internal error');
        expect(JSON.stringify(err)).not.toContain('alice');
      }
    }
  });
});

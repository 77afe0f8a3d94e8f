/**
 * Issue 12 finding 10: the directory an RPC socket is bound in. The daemon creates a missing one
 * as 0700, but never chmods one it did not create (`[rpc] socket = ~/rpc.sock` must not make
 * the home directory 0700); a directory others can write into is refused with a clear error.
 */
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ensureSocketDir } from '../src/persistence.js';
import { Daemon, startDaemon } from './helpers/daemons.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';
import { rejection, waitFor } from './helpers/wait.js';

afterAll(cleanupTempDirs);

const modeOf = async (p: string): Promise<number> => (await fs.stat(p)).mode & 0o7777;

describe('ensureSocketDir', () => {
  it('creates a missing directory (and its missing parents) as 0700', async () => {
    const dir = await tempDir();
    await ensureSocketDir(path.join(dir, 'a', 'b'));
    expect(await modeOf(path.join(dir, 'a'))).toBe(0o700);
    expect(await modeOf(path.join(dir, 'a', 'b'))).toBe(0o700);
  });

  it.each(['0755', '0750', '0711', '0700', '1777'])('leaves an existing %s directory as it is', async (octal) => {
    const mode = parseInt(octal, 8);
    const dir = await tempDir();
    const home = path.join(dir, 'home');
    await fs.mkdir(home);
    await fs.chmod(home, mode);
    await ensureSocketDir(home);
    expect(await modeOf(home)).toBe(mode);
  });

  it.each(['0775', '0757', '0777'])('refuses an existing %s directory others can write into, and leaves its mode', async (octal) => {
    const mode = parseInt(octal, 8);
    const dir = await tempDir();
    const shared = path.join(dir, 'shared');
    await fs.mkdir(shared);
    await fs.chmod(shared, mode);
    const err = await rejection(ensureSocketDir(shared));
    expect(err.code).toBe('SOCKET_DIR');
    expect(err.message).toContain(shared);
    expect(err.message).toContain(mode.toString(8));
    expect(await modeOf(shared)).toBe(mode);
  });

  it('refuses a path that is a file', async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, 'f'), '');
    expect((await rejection(ensureSocketDir(path.join(dir, 'f')))).code).toBe('SOCKET_DIR');
  });
});

describe('server daemon with [rpc] socket in a directory it did not create', () => {
  const serverIn = async (socketDir: string): Promise<Daemon> => {
    const dir = await tempDir('systemsync-sockdir-');
    const folder = path.join(dir, 'docs');
    await fs.mkdir(folder);
    const server = new Daemon('hub', 'server', dir, { docs: folder });
    server.writeConfig(`[node]\nname = hub\nrole = server\nstate_dir = ${server.stateDir}\n\n[rpc]\nsocket = ${path.join(socketDir, 'rpc.sock')}\n\n[folders]\ndocs = ${folder}\n`);
    return server;
  };

  it('runs with the socket in a 0755 "home" and leaves that directory 0755', async () => {
    const home = await tempDir('systemsync-home-');
    await fs.chmod(home, 0o755);
    const server = await serverIn(home);
    try {
      await startDaemon(server);
      await waitFor(() => fs.stat(path.join(home, 'rpc.sock')).then((st) => st.isSocket(), () => false), { what: 'the rpc socket' });
      expect(await modeOf(home)).toBe(0o755);
    } finally {
      await server.stop();
    }
  });

  it('refuses to start with the socket in a group-writable directory, names it, and leaves it 0775', async () => {
    const shared = await tempDir('systemsync-shared-');
    await fs.chmod(shared, 0o775);
    const server = await serverIn(shared);
    server.start();
    expect(await server.waitExit()).toBe(1);
    expect(server.log()).toMatch(new RegExp(`refusing to put a socket in ${shared.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: mode 0775`));
    expect(await modeOf(shared)).toBe(0o775);
  });
});

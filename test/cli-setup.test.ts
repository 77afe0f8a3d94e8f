/**
 * `systemsync init` and `systemsync check` as a user runs them: `node dist/monitor.js` in real
 * processes with a temporary HOME, against a real OpenSSH sshd and a real server daemon.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/cli/config.js';
import { MONITOR, startAll, startCluster, type Cluster } from './helpers/daemons.js';
import { freePort, generateKey } from './helpers/sshd.js';
import { cleanupTempDirs, tempDir } from './helpers/tree.js';

const execFileAsync = promisify(execFile);

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/monitor.js ...args` with HOME = `home`, in `cwd`. */
async function cli(args: string[], opts: { home: string; cwd: string }): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [MONITOR, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, HOME: opts.home },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** The line `init` printed for authorized_keys. */
function authorizedLine(stdout: string): string {
  const line = stdout.split('\n').find((l) => /^restrict,.* ssh-ed25519 AAAA/.test(l));
  expect(line, `no authorized_keys line in:\n${stdout}`).toBeDefined();
  return line!;
}

/** Sets `key = value` in the config text, replacing the first line that sets it or shows it commented out. */
function setKey(text: string, key: string, value: string): string {
  const pattern = new RegExp(`^;?${key} = .*$`, 'm');
  expect(pattern.test(text), `the config has no line for ${key}`).toBe(true);
  return text.replace(pattern, `${key} = ${value}`);
}

function checkLines(stdout: string): string[] {
  return stdout.split('\n').filter((l) => /^(PASS|FAIL|INFO) /.test(l));
}

let cluster: Cluster;
let rpcSocket: string;

beforeAll(async () => {
  cluster = await startCluster({ clients: 0, folders: ['docs'] });
  rpcSocket = path.join(cluster.server.stateDir, 'rpc.sock');
});

afterAll(async () => {
  await cluster?.stop();
  await cleanupTempDirs();
});

/** A fresh node: temp HOME and working dir, `init --role client` run in it. */
async function initClient(): Promise<{ home: string; cwd: string; configPath: string; init: CliResult }> {
  const base = await tempDir('systemsync-setup-');
  const home = path.join(base, 'home');
  const cwd = path.join(base, 'work');
  await fs.mkdir(home);
  await fs.mkdir(cwd);
  const init = await cli(['init', '--role', 'client'], { home, cwd });
  return { home, cwd, configPath: path.join(cwd, 'systemsync.cfg'), init };
}

/** Fills in what `init` leaves to the user: the test sshd, the server daemon's socket, one local folder. */
async function pointAtCluster(node: { cwd: string; configPath: string }, name: string): Promise<string> {
  const local = path.join(node.cwd, 'docs');
  await fs.mkdir(local);
  let text = await fs.readFile(node.configPath, 'utf8');
  text = setKey(text, 'name', name);
  text = setKey(text, 'state_dir', path.join(node.cwd, 'state'));
  text = setKey(text, 'host', cluster.sshd.host);
  text = setKey(text, 'port', String(cluster.sshd.port));
  text = setKey(text, 'user', cluster.sshd.user);
  text = setKey(text, 'known_hosts', cluster.sshd.knownHostsPath);
  text = setKey(text, 'rpc_socket', rpcSocket);
  text = setKey(text, 'connect_timeout', '5');
  text = setKey(text, 'docs', local);
  text = text.replace(/^photos = .*\n/m, '');
  await fs.writeFile(node.configPath, text);
  return local;
}

describe('systemsync init --role client', () => {
  it('writes a config and an ed25519 key, prints the authorized_keys line, and never overwrites either', async () => {
    const node = await initClient();
    expect(node.init.stderr).toBe('');
    expect(node.init.code).toBe(0);

    const keyPath = path.join(node.home, '.ssh', 'id_ed25519');
    expect((await fs.stat(path.join(node.home, '.ssh'))).mode & 0o777).toBe(0o700);
    expect((await fs.stat(keyPath)).mode & 0o777).toBe(0o600);
    expect((await fs.stat(`${keyPath}.pub`)).mode & 0o777).toBe(0o644);
    // OpenSSH itself reads the key ssh2 generated, and derives the public key written beside it.
    const { stdout: derived } = await execFileAsync('ssh-keygen', ['-y', '-f', keyPath]);
    const publicLine = (await fs.readFile(`${keyPath}.pub`, 'utf8')).trim();
    expect(publicLine.split(' ').slice(0, 2).join(' ')).toBe(derived.trim().split(' ').slice(0, 2).join(' '));
    expect(authorizedLine(node.init.stdout)).toBe(`restrict,port-forwarding,command="internal-sftp" ${publicLine}`);
    // And the [clients] line for a server with the embedded endpoint, under the node's name (the host name).
    expect(node.init.stdout.split('\n')).toContain(`${os.hostname()} = ${publicLine}`);
    expect(node.init.stdout).toContain('systemsync check');
    expect(node.init.stdout).toContain('systemsync monitor');

    // The written config is a client config the parser accepts once a key exists.
    const text = await fs.readFile(node.configPath, 'utf8');
    const config = parseConfig(text, node.configPath, { home: node.home, hostname: 'laptop', username: 'me', sshDirListing: ['id_ed25519'] });
    expect(config.node.role).toBe('client');
    expect(config.server?.identity).toBe(keyPath);
    expect(text).toMatch(/^; /m);

    const before = await Promise.all([node.configPath, keyPath, `${keyPath}.pub`].map((f) => fs.readFile(f)));
    const again = await cli(['init', '--role', 'client'], { home: node.home, cwd: node.cwd });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(node.configPath);
    expect(again.stderr).toContain('already exists');
    const after = await Promise.all([node.configPath, keyPath, `${keyPath}.pub`].map((f) => fs.readFile(f)));
    expect(after).toEqual(before);

    // Another config on the same node keeps the key it has.
    const second = await cli(['init', '--role', 'client', '--config', path.join(node.cwd, 'other.cfg')], { home: node.home, cwd: node.cwd });
    expect(second.code).toBe(0);
    expect(second.stdout).toContain(`using the existing key ${keyPath}`);
    expect(await fs.readFile(keyPath)).toEqual(before[1]);
    expect(authorizedLine(second.stdout)).toBe(authorizedLine(node.init.stdout));
  });

  it('uses an existing id_rsa instead of creating a key', async () => {
    const base = await tempDir('systemsync-setup-');
    await fs.mkdir(path.join(base, '.ssh'), { mode: 0o700 });
    const rsa = await generateKey(path.join(base, '.ssh', 'id_rsa'), 'rsa', 'me@old');
    const result = await cli(['init', '--role', 'client'], { home: base, cwd: base });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`using the existing key ${rsa.privateKeyPath}`);
    expect(result.stdout).toContain(`restrict,port-forwarding,command="internal-sftp" ${rsa.publicKeyLine}`);
    expect(await fs.readdir(path.join(base, '.ssh'))).toEqual(['id_rsa', 'id_rsa.pub']);
  });

  it('without --role is a usage error', async () => {
    const base = await tempDir('systemsync-setup-');
    const result = await cli(['init'], { home: base, cwd: base });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--role');
    expect(await fs.readdir(base)).toEqual([]);
  });
});

describe('systemsync check on a client', () => {
  it('passes every check once the printed line is in authorized_keys and the config points at the server', async () => {
    const node = await initClient();
    cluster.sshd.authorizeKey(authorizedLine(node.init.stdout));
    await pointAtCluster(node, 'laptop');

    const result = await cli(['check'], { home: node.home, cwd: node.cwd });
    const lines = checkLines(result.stdout);
    expect(lines.filter((l) => l.startsWith('FAIL')), result.stdout + result.stderr).toEqual([]);
    expect(result.code).toBe(0);
    for (const what of [
      /^PASS config .* is valid/,
      /^PASS identity .*id_ed25519 is usable/,
      /^PASS server 127\.0\.0\.1:\d+ is reachable/,
      /^PASS host key of 127\.0\.0\.1:\d+ is known and matches/,
      /^PASS key is accepted by /,
      /^PASS rpc socket .* answers on the server \(server hub\)$/,
      new RegExp(`^PASS folder docs exists and is writable on the server \\(${cluster.server.folder('docs')}\\)`),
      /^PASS folder docs exists and is writable here/,
      /^PASS state_dir /,
    ]) {
      expect(lines.some((l) => what.test(l)), `${what} in:\n${result.stdout}`).toBe(true);
    }
    // check's probe file is gone again.
    expect(await fs.readdir(path.join(cluster.server.folder('docs'), '.systemsync', 'tmp'))).toEqual([]);
  });

  it('the printed options allow SFTP and the RPC stream but no shell', async () => {
    const node = await initClient();
    cluster.sshd.authorizeKey(authorizedLine(node.init.stdout));
    const ssh = (command: string) =>
      execFileAsync('ssh', [
        '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes',
        '-o', `UserKnownHostsFile=${cluster.sshd.knownHostsPath}`, '-i', path.join(node.home, '.ssh', 'id_ed25519'),
        '-p', String(cluster.sshd.port), `${cluster.sshd.user}@${cluster.sshd.host}`, command,
      ], { timeout: 30_000 }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, out: (e.stdout ?? '') + (e.stderr ?? '') }),
      );
    const shell = await ssh('echo reached-a-shell');
    expect(shell.out).not.toContain('reached-a-shell');
    expect(shell.code).not.toBe(0);
    expect(shell.out).toContain('This service allows sftp connections only');
  });

  it('with "restrict" alone the RPC stream is refused: port-forwarding is needed', async () => {
    const node = await initClient();
    const line = authorizedLine(node.init.stdout);
    cluster.sshd.authorizeKey(line.replace(/^restrict,port-forwarding,/, 'restrict,'));
    await pointAtCluster(node, 'restricted');
    const result = await cli(['check'], { home: node.home, cwd: node.cwd });
    expect(result.code).toBe(1);
    const lines = checkLines(result.stdout);
    expect(lines).toContainEqual(expect.stringMatching(/^PASS key is accepted by /));
    expect(lines).toContainEqual(expect.stringMatching(/^FAIL rpc socket .* answers on the server: .*cannot open a stream.*port-forwarding/));
    expect(lines).toContainEqual('FAIL folder docs exists and is writable on the server: skipped: the rpc socket does not answer');
  });

  describe('fails with the line that names the problem', () => {
    let node: { home: string; cwd: string; configPath: string };
    let good: string;

    beforeAll(async () => {
      const made = await initClient();
      cluster.sshd.authorizeKey(authorizedLine(made.init.stdout));
      await pointAtCluster(made, 'desk');
      node = made;
      good = await fs.readFile(made.configPath, 'utf8');
    });

    async function checkWith(edit: (text: string) => string): Promise<{ result: CliResult; lines: string[] }> {
      await fs.writeFile(node.configPath, edit(good));
      const result = await cli(['check'], { home: node.home, cwd: node.cwd });
      return { result, lines: checkLines(result.stdout) };
    }

    it('wrong port: nothing listening', async () => {
      const port = await freePort();
      const { result, lines } = await checkWith((t) => setKey(t, 'port', String(port)));
      expect(result.code).toBe(1);
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^FAIL server 127\\.0\\.0\\.1:${port} is reachable: connection refused: nothing listens on port ${port}`)));
      for (const skipped of [/^FAIL host key .*: skipped: server unreachable$/, /^FAIL key is accepted .*: skipped: server unreachable$/, /^FAIL rpc socket .*: skipped: server unreachable$/, /^FAIL folder docs exists and is writable on the server: skipped: server unreachable$/]) {
        expect(lines).toContainEqual(expect.stringMatching(skipped));
      }
      expect(lines).toContainEqual(expect.stringMatching(/^PASS folder docs exists and is writable here/));
    });

    it('unknown host key: empty known_hosts with host_key_check = yes', async () => {
      const empty = path.join(node.cwd, 'empty_known_hosts');
      await fs.writeFile(empty, '');
      const { result, lines } = await checkWith((t) => setKey(setKey(t, 'known_hosts', empty), 'host_key_check', 'yes'));
      expect(result.code).toBe(1);
      expect(lines).toContainEqual(expect.stringMatching(/^PASS server .* is reachable$/));
      expect(lines).toContainEqual(expect.stringMatching(/^FAIL host key of 127\.0\.0\.1:\d+ is known and matches .*: host key of .* is not known: ssh-ed25519 SHA256:\S+ is not in/));
      expect(lines).toContainEqual(expect.stringMatching(/^FAIL key is accepted .*: skipped: host key not verified$/));
      expect(await fs.readFile(empty, 'utf8')).toBe('');
    });

    it('accept-new trusts an unknown host key and says so', async () => {
      const fresh = path.join(node.cwd, 'fresh_known_hosts');
      await fs.rm(fresh, { force: true });
      const { result, lines } = await checkWith((t) => setKey(setKey(t, 'known_hosts', fresh), 'host_key_check', 'accept-new'));
      expect(lines.filter((l) => l.startsWith('FAIL')), result.stdout).toEqual([]);
      expect(lines).toContainEqual(expect.stringMatching(/^PASS host key .* \(it was new: added, as host_key_check = accept-new says\)$/));
      expect(await fs.readFile(fresh, 'utf8')).toContain(cluster.sshd.hostPublicKey);
    });

    it('wrong key: one sshd does not accept', async () => {
      const stranger = await generateKey(path.join(node.cwd, `stranger-${Date.now()}`), 'ed25519', 'stranger');
      const { result, lines } = await checkWith((t) => setKey(t, 'identity', stranger.privateKeyPath));
      expect(result.code).toBe(1);
      expect(lines).toContainEqual(expect.stringMatching(/^PASS identity .*stranger.* is usable/));
      expect(lines).toContainEqual(expect.stringMatching(/^PASS host key /));
      const refused = lines.find((l) => l.startsWith('FAIL key is accepted'));
      expect(refused).toMatch(/authentication failed/);
      expect(refused).toContain(`restrict,port-forwarding,command="internal-sftp" ${stranger.publicKeyLine.split(' ').slice(0, 2).join(' ')}`);
      expect(lines).toContainEqual(expect.stringMatching(/^FAIL rpc socket .*: skipped: not logged in$/));
    });

    it('a missing identity file', async () => {
      const missing = path.join(node.cwd, 'no-such-key');
      const { result, lines } = await checkWith((t) => setKey(t, 'identity', missing));
      expect(result.code).toBe(1);
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^FAIL identity ${missing} is usable: cannot read ${missing}: it does not exist`)));
      // The host key is still verified, with a throwaway key.
      expect(lines).toContainEqual(expect.stringMatching(/^PASS host key /));
      expect(lines).toContainEqual(expect.stringMatching(/^FAIL key is accepted .*: skipped: the identity is not usable$/));
    });

    it('a folder the server does not serve', async () => {
      const extra = path.join(node.cwd, 'extra');
      await fs.mkdir(extra, { recursive: true });
      const { result, lines } = await checkWith((t) => t.replace(/^docs = .*$/m, (l) => `${l}\nextra = ${extra}`));
      expect(result.code).toBe(1);
      expect(lines).toContainEqual(expect.stringMatching(/^PASS folder docs exists and is writable on the server/));
      expect(lines).toContainEqual(expect.stringMatching(/^FAIL folder extra exists and is writable on the server: the server hub does not serve it: add "extra = \/path\/there" to \[folders\]/));
      expect(lines).toContainEqual(expect.stringMatching(/^PASS folder extra exists and is writable here/));
    });

    it('a missing local folder', async () => {
      const gone = path.join(node.cwd, 'gone');
      const { result, lines } = await checkWith((t) => setKey(t, 'docs', gone));
      expect(result.code).toBe(1);
      expect(lines).toContainEqual(`FAIL folder docs exists and is writable here (${gone}): ${gone} does not exist: create it (mkdir -p ${gone}) or fix its path in [folders]`);
      expect(lines).toContainEqual(expect.stringMatching(/^PASS folder docs exists and is writable on the server/));
    });

    it('a wrong rpc_socket', async () => {
      const { result, lines } = await checkWith((t) => setKey(t, 'rpc_socket', '~/no/such/rpc.sock'));
      expect(result.code).toBe(1);
      expect(lines).toContainEqual(expect.stringMatching(/^FAIL rpc socket ~\/no\/such\/rpc\.sock answers on the server: .*cannot open a stream to \/\S+\/no\/such\/rpc\.sock/));
    });
  });
});

describe('systemsync check: a folder missing on the server', () => {
  it('says the folder is missing there', async () => {
    // The server's music folder lies under a regular file, so nothing can create it (a folder
    // removed while the daemon runs would do as well, but the daemon may recreate it meanwhile).
    const other = await startCluster({ clients: 0, folders: ['docs', 'music'], noStart: true });
    const blocker = path.join(other.dir, 'hub', 'blocker');
    await fs.writeFile(blocker, 'a file, not a directory\n');
    const serverMusic = path.join(blocker, 'music');
    const serverConfig = await fs.readFile(other.server.configPath, 'utf8');
    other.server.writeConfig(serverConfig.replace(`music = ${other.server.folder('music')}`, `music = ${serverMusic}`));
    try {
      await startAll(other);
      const node = await initClient();
      other.sshd.authorizeKey(authorizedLine(node.init.stdout));
      const local = path.join(node.cwd, 'docs');
      const localMusic = path.join(node.cwd, 'music');
      await fs.mkdir(local);
      await fs.mkdir(localMusic);
      let text = await fs.readFile(node.configPath, 'utf8');
      text = setKey(text, 'state_dir', path.join(node.cwd, 'state'));
      text = setKey(text, 'host', other.sshd.host);
      text = setKey(text, 'port', String(other.sshd.port));
      text = setKey(text, 'user', other.sshd.user);
      text = setKey(text, 'known_hosts', other.sshd.knownHostsPath);
      text = setKey(text, 'rpc_socket', path.join(other.server.stateDir, 'rpc.sock'));
      text = setKey(text, 'docs', local);
      text = text.replace(/^photos = .*$/m, `music = ${localMusic}`);
      await fs.writeFile(node.configPath, text);

      const result = await cli(['check'], { home: node.home, cwd: node.cwd });
      const lines = checkLines(result.stdout);
      expect(result.code).toBe(1);
      expect(lines).toContainEqual(expect.stringMatching(/^PASS folder docs exists and is writable on the server/));
      expect(lines).toContainEqual(`FAIL folder music exists and is writable on the server: ${serverMusic} does not exist on the server: create it there (the server daemon pauses a folder whose root is missing)`);
    } finally {
      await other.stop();
    }
  });
});

describe('systemsync check while the client daemon runs', () => {
  it('trusts the daemon\'s connection instead of replacing its session with a second hello', async () => {
    const other = await startCluster({ clients: 1, folders: ['docs'] });
    try {
      const client = other.clients[0]!;
      const connects = (): number => other.server.log().split('\n').filter((l) => l.includes(`client ${client.name} connected`)).length;
      const before = connects();
      expect(before).toBeGreaterThan(0);
      const result = await client.cli(['check']);
      const lines = checkLines(result.stdout);
      expect(lines.filter((l) => l.startsWith('FAIL')), result.stdout + result.stderr).toEqual([]);
      expect(result.code).toBe(0);
      expect(lines).toContainEqual(expect.stringMatching(/^PASS rpc socket .* answers on the server \(this node's running client daemon is connected through it\)$/));
      expect(lines).toContainEqual(expect.stringMatching(/^INFO folder docs on the server: not checked while this node's daemon is connected/));
      expect(lines).toContainEqual('INFO the client daemon is running and connected');
      expect(connects()).toBe(before);
      expect((await client.status()).connected).toBe(true);
    } finally {
      await other.stop();
    }
  });
});

describe('systemsync init --role server', () => {
  it('writes a server config that parses, and check passes on it', async () => {
    const base = await tempDir('systemsync-setup-');
    const configPath = path.join(base, 'etc', 'server.cfg');
    const result = await cli(['init', '--role', 'server', '--config', configPath], { home: base, cwd: base });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    let text = await fs.readFile(configPath, 'utf8');
    expect(text).not.toMatch(/^\[server\]/m);
    expect(text).toMatch(/^\[rpc\]$/m);
    const config = parseConfig(text, configPath, { home: base, hostname: 'hub', username: 'me' });
    expect(config.node.role).toBe('server');
    expect(config.server).toBeNull();
    expect(config.rpc.socket).toBe(path.join(base, '.local/state/systemsync/rpc.sock'));
    // No client key for a server: it never connects anywhere.
    await expect(fs.stat(path.join(base, '.ssh'))).rejects.toThrow();
    // [listen] by default, with its host key made now (0600, .pub beside it) and the line clients trust it with.
    expect(text).toMatch(/^\[listen\]$/m);
    expect(config.listen).toEqual({ address: '0.0.0.0', port: 2222, hostKey: path.join(base, '.local/state/systemsync/ssh_host_ed25519_key') });
    const hostKeyPath = config.listen!.hostKey;
    expect((await fs.stat(hostKeyPath)).mode & 0o777).toBe(0o600);
    const { stdout: derivedHost } = await execFileAsync('ssh-keygen', ['-y', '-f', hostKeyPath]);
    const hostPublic = derivedHost.trim().split(' ').slice(0, 2).join(' ');
    expect((await fs.readFile(`${hostKeyPath}.pub`, 'utf8')).startsWith(hostPublic)).toBe(true);
    expect(result.stdout.split('\n')).toContain(`[${os.hostname()}]:2222 ${hostPublic}`);

    const docs = path.join(base, 'docs');
    await fs.mkdir(docs);
    text = setKey(text, 'docs', docs).replace(/^photos = .*\n/m, '');
    await fs.writeFile(configPath, text);
    const checked = await cli(['check', '--config', configPath], { home: base, cwd: base });
    const lines = checkLines(checked.stdout);
    expect(lines.filter((l) => l.startsWith('FAIL')), checked.stdout + checked.stderr).toEqual([]);
    expect(checked.code).toBe(0);
    expect(lines).toContainEqual(expect.stringMatching(/^PASS folder docs exists and is writable here/));
    expect(lines).toContainEqual(expect.stringMatching(/^PASS rpc socket directory .* is writable/));
    expect(lines).toContainEqual(expect.stringMatching(/^INFO no server daemon is running/));

    await fs.rm(docs, { recursive: true });
    const missing = await cli(['check', '--config', configPath], { home: base, cwd: base });
    expect(missing.code).toBe(1);
    expect(checkLines(missing.stdout)).toContainEqual(expect.stringMatching(/^FAIL folder docs exists and is writable here .*does not exist/));
  });
});

/**
 * The embedded endpoint end to end, with no sshd: real daemons, the server's own SSH endpoint,
 * one key per client bound to its node name in [clients], and folder `private` limited to alpha
 * in [access].
 *
 * A rogue client (mallory, a valid key of [clients]) connects with ssh2 directly and asks for
 * everything the endpoint must refuse: shell, exec, pty, TCP and Unix-socket forwarding (to the
 * daemon's control.sock too), SFTP reads, writes, renames and removes outside its folders or
 * through symlinks, a folder missing from its [access], and `hello` as another node. Meanwhile
 * alpha keeps writing files, and they keep reaching beta and the hub. Then: an unknown key is
 * refused at authentication, a client whose [node] name differs from its key's exits 1 with a
 * clear error (daemon and `check`), and a host key the client does not trust is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import ssh2, { type Client as SshClient, type SFTPWrapper } from 'ssh2';
import { createRpcPeer, type RpcPeer } from '../src/rpc.js';
import { RPC_SUBSYSTEM } from '../src/endpoint/policy.js';
import { Daemon, startDaemon, waitConnected, startCluster, type Cluster } from './helpers/daemons.js';
import { generateKey } from './helpers/sshd.js';
import { cleanupTempDirs, snapshotTree } from './helpers/tree.js';
import { rejection, waitFor, waitForTreesEqual } from './helpers/wait.js';

let cluster: Cluster;
let hub: Daemon, alpha: Daemon, beta: Daemon;
let malloryKey: string;

function connect(privateKeyPath: string, opts: { username?: string } = {}): Promise<SshClient> {
  return fs.readFile(privateKeyPath).then(
    (privateKey) =>
      new Promise<SshClient>((resolve, reject) => {
        const client = new ssh2.Client();
        client.on('ready', () => resolve(client));
        client.on('error', reject);
        client.connect({ host: '127.0.0.1', port: cluster.sshd.port, username: opts.username ?? 'mallory', privateKey, readyTimeout: 20_000 });
      }),
  );
}

function sftpOf(client: SshClient): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => client.sftp((err, sftp) => (err ? reject(err) : resolve(sftp))));
}

/** Runs an ssh2 callback-style call; resolves with its error (null: it succeeded). */
function outcome(run: (cb: (err?: Error | null, ...rest: unknown[]) => void) => void): Promise<(Error & { code?: number }) | null> {
  return new Promise((resolve) => {
    try {
      run((err) => resolve(err ?? null));
    } catch (err) {
      resolve(err as Error);
    }
  });
}

/** Waits for a log line of the server matching `pattern`. */
async function serverLogged(pattern: RegExp): Promise<void> {
  await waitFor(() => pattern.test(hub.log()), { timeoutMs: 10_000, what: `a server log line matching ${pattern}` });
}

beforeAll(async () => {
  cluster = await startCluster({
    mode: 'embedded',
    clients: 3,
    names: ['alpha', 'beta', 'mallory'],
    folders: ['docs', 'private'],
    serverExtra: '\n[access]\nprivate = alpha\n',
    noStart: true,
  });
  [hub, alpha, beta] = [cluster.server, cluster.clients[0]!, cluster.clients[1]!];
  malloryKey = cluster.keys.mallory!;
  await startDaemon(hub);
  alpha.start();
  beta.start();
  await waitConnected(alpha);
  await waitConnected(beta);
});

afterAll(async () => {
  await cluster?.stop();
  await cleanupTempDirs();
});

describe('the embedded endpoint: sync', () => {
  const docs = (d: Daemon) => d.folder('docs');
  const converge = (timeoutMs = 60_000) => waitForTreesEqual([docs(hub), docs(alpha), docs(beta)], { timeoutMs });

  it('creates, renames and deletes', async () => {
    await fs.mkdir(path.join(docs(alpha), 'dir'), { recursive: true });
    await fs.writeFile(path.join(docs(alpha), 'dir/a.txt'), 'a');
    await fs.writeFile(path.join(docs(alpha), 'b.txt'), 'b');
    await converge();
    await fs.rename(path.join(docs(alpha), 'dir'), path.join(docs(alpha), 'dir2'));
    await fs.rm(path.join(docs(alpha), 'b.txt'));
    await converge();
    expect(await fs.readFile(path.join(docs(beta), 'dir2/a.txt'), 'utf8')).toBe('a');
    await expect(fs.lstat(path.join(docs(beta), 'b.txt'))).rejects.toThrow(/ENOENT/);
    expect(alpha.log()).toMatch(/pushed rename dir -> dir2/);
  });

  it('keeps both versions of a conflict, the copy named after the key-bound node', async () => {
    await fs.writeFile(path.join(docs(alpha), 'same.txt'), 'base');
    await converge();
    await Promise.all([alpha.stop(), beta.stop()]);
    await fs.writeFile(path.join(docs(alpha), 'same.txt'), 'from alpha');
    await fs.writeFile(path.join(docs(beta), 'same.txt'), 'from beta');
    alpha.start();
    await waitConnected(alpha);
    await waitFor(async () => (await fs.readFile(path.join(docs(hub), 'same.txt'), 'utf8')) === 'from alpha', { timeoutMs: 30_000, what: "alpha's edit on the hub" });
    beta.start();
    await waitConnected(beta);
    await converge();
    const names = [...(await snapshotTree(docs(hub))).keys()];
    const copy = names.find((n) => /^same\.sync-conflict-\d{8}-\d{6}-beta\.txt$/.test(n));
    expect(copy, names.join(', ')).toBeDefined();
    expect(await fs.readFile(path.join(docs(alpha), copy!), 'utf8')).toBe('from beta');
    expect(await fs.readFile(path.join(docs(beta), 'same.txt'), 'utf8')).toBe('from alpha');
  });

  it('lets an offline client catch up on everything it missed', async () => {
    await fs.mkdir(path.join(docs(alpha), 'gone-while-away'));
    await fs.writeFile(path.join(docs(alpha), 'gone-while-away/old.txt'), 'old');
    await converge();
    await beta.stop();
    await fs.writeFile(path.join(docs(alpha), 'while-away.txt'), 'new');
    await fs.rm(path.join(docs(alpha), 'gone-while-away'), { recursive: true });
    await waitFor(async () => (await fs.readFile(path.join(docs(hub), 'while-away.txt'), 'utf8').catch(() => null)) === 'new', { timeoutMs: 30_000, what: 'the change on the hub' });
    beta.start();
    await waitConnected(beta);
    await converge();
    expect(await fs.readFile(path.join(docs(beta), 'while-away.txt'), 'utf8')).toBe('new');
    await expect(fs.lstat(path.join(docs(beta), 'gone-while-away'))).rejects.toThrow(/ENOENT/);
  });

  it('syncs a folder in [access] for alpha, and refuses it to beta with a clear error while beta keeps syncing docs', async () => {
    await fs.writeFile(path.join(alpha.folder('private'), 'secret.txt'), 'for alpha only');
    await waitFor(async () => (await fs.readFile(path.join(hub.folder('private'), 'secret.txt'), 'utf8').catch(() => null)) === 'for alpha only', {
      timeoutMs: 30_000,
      what: 'the private file on the hub',
    });
    await fs.writeFile(path.join(docs(alpha), 'public.txt'), 'for all');
    await converge();
    expect(beta.log()).toMatch(/does not let this node \(beta\) sync folder private: it is not in the folder's \[access\] there/);
    expect(hub.log()).toMatch(/refused folder\(s\) private to client beta: not in its \[access\]/);
    await expect(fs.lstat(path.join(beta.folder('private'), 'secret.txt'))).rejects.toThrow(/ENOENT/);
    const folders = (await beta.status()).folders;
    expect(folders.find((f) => f.name === 'private')?.paused).toMatch(/does not let this node sync it \(not in the folder's \[access\] there\)/);
    expect(folders.find((f) => f.name === 'docs')?.paused).toBeNull();
  });
});

describe('a rogue client with a valid key', () => {
  let rogue: SshClient;
  let sftp: SFTPWrapper;
  let writer: { count(): number; stop(): Promise<string[]> };
  let outside: string;
  const outsideBefore = new Map<string, Buffer>();

  beforeAll(async () => {
    // Files the rogue must not reach: the server's config, its state, a file beside the folders.
    outside = path.join(cluster.dir, 'outside.txt');
    await fs.writeFile(outside, 'not yours');
    for (const f of [outside, hub.configPath]) outsideBefore.set(f, await fs.readFile(f));
    // Symlinks inside the served folder that lead out of it.
    await fs.symlink(outside, path.join(hub.folder('docs'), 'link-out.txt'));
    await fs.symlink(cluster.dir, path.join(hub.folder('docs'), 'dir-out'));
    rogue = await connect(malloryKey);
    sftp = await sftpOf(rogue);
    // A normal client keeps syncing throughout.
    writer = startWriter(alpha.folder('docs'));
  });

  afterAll(() => rogue?.end());

  it('is refused a shell, exec, a pty and unknown subsystems', async () => {
    expect(await outcome((cb) => rogue.shell(false, cb))).not.toBeNull();
    await serverLogged(/refused a shell for client mallory/);
    expect(await outcome((cb) => rogue.shell(cb))).not.toBeNull();
    await serverLogged(/refused a pty for client mallory/);
    expect(await outcome((cb) => rogue.exec('cat /etc/passwd', cb))).not.toBeNull();
    await serverLogged(/refused exec of "cat \/etc\/passwd" for client mallory/);
    expect(await outcome((cb) => rogue.exec('id', { pty: true }, cb))).not.toBeNull();
    await serverLogged(/refused a pty for client mallory/);
    expect(await outcome((cb) => rogue.subsys('netconf', cb))).not.toBeNull();
    await serverLogged(/refused the subsystem "netconf" for client mallory/);
  });

  it('is refused TCP forwarding both ways, and Unix-socket forwarding to control.sock', async () => {
    let reached = 0;
    const target = net.createServer((s) => {
      reached++;
      s.destroy();
    });
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', () => r()));
    const port = (target.address() as net.AddressInfo).port;
    try {
      expect(await outcome((cb) => rogue.forwardOut('127.0.0.1', 0, '127.0.0.1', port, cb))).not.toBeNull();
      await serverLogged(new RegExp(`refused TCP forwarding to 127\\.0\\.0\\.1:${port} for client mallory`));
      expect(await outcome((cb) => rogue.forwardIn('127.0.0.1', 0, cb))).not.toBeNull();
      await serverLogged(/refused remote forwarding \(tcpip-forward of 127\.0\.0\.1:0\) for client mallory/);
      const control = path.join(hub.stateDir, 'control.sock');
      expect(await outcome((cb) => rogue.openssh_forwardOutStreamLocal(control, cb))).not.toBeNull();
      await serverLogged(/refused Unix socket forwarding to ".*control\.sock" for client mallory/);
      expect(await outcome((cb) => rogue.openssh_forwardInStreamLocal(path.join(cluster.dir, 'evil.sock'), cb))).not.toBeNull();
      await serverLogged(/refused remote forwarding \(streamlocal-forward@openssh\.com/);
    } finally {
      target.close();
    }
    expect(reached).toBe(0);
    expect(hub.isRunning).toBe(true);
  });

  it('is refused every SFTP read, write, rename and remove outside its folders or through a symlink', async () => {
    const root = hub.folder('docs');
    const tmp = `${root}/.systemsync/tmp`;
    const openRead = (p: string) => outcome((cb) => sftp.open(p, 'r', cb));
    const openWrite = (p: string) => outcome((cb) => sftp.open(p, 'w', cb));
    const PERMISSION_DENIED = 3;
    const refusals: Array<[string, Promise<(Error & { code?: number }) | null>]> = [
      ['read /etc/passwd', openRead('/etc/passwd')],
      ["read the server's config", openRead(hub.configPath)],
      ['read a file beside the folders', openRead(outside)],
      ['read through ".."', openRead(`${root}/../../outside.txt`)],
      ['read through a symlink to a file outside', openRead(`${root}/link-out.txt`)],
      ['read through a symlinked directory', openRead(`${root}/dir-out/outside.txt`)],
      ['stat through a symlink that leads outside', outcome((cb) => sftp.stat(`${root}/link-out.txt`, cb))],
      ["read the server's trash and marker", openRead(`${root}/.systemsync/marker`)],
      ["read the server's state", openRead(path.join(hub.stateDir, 'systemsync.log'))],
      ['write a file outside', openWrite(path.join(cluster.dir, 'evil.txt'))],
      ['write straight into the folder', openWrite(`${root}/evil.txt`)],
      ['write through ".." out of tmp', openWrite(`${tmp}/../../../evil.txt`)],
      ['write through a symlinked directory', openWrite(`${root}/dir-out/evil.txt`)],
      ['rename out of tmp into the folder', outcome((cb) => sftp.rename(`${tmp}/x`, `${root}/evil.txt`, cb))],
      ['rename a file outside', outcome((cb) => sftp.rename(outside, path.join(cluster.dir, 'moved.txt'), cb))],
      ['remove a file outside', outcome((cb) => sftp.unlink(outside, cb))],
      ["remove the server's config", outcome((cb) => sftp.unlink(hub.configPath, cb))],
      ['remove a file of the folder', outcome((cb) => sftp.unlink(`${root}/public.txt`, cb))],
      ['mkdir outside', outcome((cb) => sftp.mkdir(path.join(cluster.dir, 'evil-dir'), cb))],
      ['list a directory', outcome((cb) => sftp.readdir(root, cb))],
      ['make a symlink', outcome((cb) => sftp.symlink(outside, `${tmp}/evil-link`, cb))],
    ];
    for (const [what, result] of refusals) {
      const err = await result;
      expect(err, what).not.toBeNull();
    }
    // The path refusals say so with PERMISSION_DENIED and a reason.
    const denied = await openRead('/etc/passwd');
    expect(denied?.code).toBe(PERMISSION_DENIED);
    expect(denied?.message).toMatch(/outside the folders this client may use/);
    await serverLogged(/refused sftp open "\/etc\/passwd" for client mallory: it is outside the folders this client may use/);
    await serverLogged(/refused sftp open ".*link-out\.txt" for client mallory: it is a symlink \(never followed\)/);
    await serverLogged(/refused sftp rename .* for client mallory: not offered by the endpoint/);
    // Nothing outside changed, nothing new appeared.
    for (const [file, content] of outsideBefore) expect(await fs.readFile(file)).toEqual(content);
    for (const evil of ['evil.txt', 'moved.txt', 'evil-dir']) await expect(fs.lstat(path.join(cluster.dir, evil))).rejects.toThrow(/ENOENT/);
    await expect(fs.lstat(`${root}/evil.txt`)).rejects.toThrow(/ENOENT/);
    // What the protocol needs still works: an upload into tmp and a read of a file of the folder.
    const handle = await new Promise<Buffer>((resolve, reject) => sftp.open(`${tmp}/mallory.part`, 'w', (err, h) => (err ? reject(err) : resolve(h))));
    await new Promise<void>((resolve, reject) => sftp.close(handle, (err) => (err ? reject(err) : resolve())));
    expect(await outcome((cb) => sftp.unlink(`${tmp}/mallory.part`, cb))).toBeNull();
    expect(await outcome((cb) => sftp.stat(`${root}/public.txt`, cb))).toBeNull();
  });

  it('is refused a folder missing from its [access], over SFTP and RPC', async () => {
    const privateRoot = hub.folder('private');
    const err = await outcome((cb) => sftp.open(`${privateRoot}/secret.txt`, 'r', cb));
    expect(err?.message).toMatch(/folder private is not in this client's \[access\]/);
    expect(await outcome((cb) => sftp.open(`${privateRoot}/.systemsync/tmp/x.part`, 'w', cb))).not.toBeNull();
    await serverLogged(/refused sftp open ".*secret\.txt" for client mallory: folder private is not in this client's \[access\]/);

    const peer = await rpcPeer(rogue);
    try {
      const hello = await peer.request('hello', { node: 'mallory', folders: ['docs', 'private'], protocol: 1 }, 10_000);
      expect(hello.denied).toEqual(['private']);
      expect(Object.keys(hello.folders)).toEqual(['docs']);
      const changes = await rejection(peer.request('changes', { folder: 'private', after: 0, limit: 100 }, 10_000));
      expect(changes.code).toBe('UNKNOWN_FOLDER');
      const bundle = await rejection(peer.request('bundle', { folder: 'private', files: [{ path: 'secret.txt', hash: 'a'.repeat(64) }] }, 10_000));
      expect(bundle.code).toBe('UNKNOWN_FOLDER');
    } finally {
      peer.close();
    }
  });

  it("is refused hello as another node, with an error naming the key's node", async () => {
    const peer = await rpcPeer(rogue);
    try {
      const err = await rejection(peer.request('hello', { node: 'alpha', folders: ['docs'], protocol: 1 }, 10_000));
      expect(err.code).toBe('NODE_NAME_MISMATCH');
      expect(err.message).toMatch(/this client's key belongs to node mallory .* but hello says alpha/);
      // And ack/changes under that name are refused before any hello went through.
      expect((await rejection(peer.request('ack', { folder: 'docs', seq: 1_000_000 }, 10_000))).code).toBe('NO_HELLO');
    } finally {
      peer.close();
    }
    await serverLogged(/refused hello as alpha from the key of client mallory/);
    // alpha was not kicked off.
    expect((await alpha.status()).connected).toBe(true);
    expect(hub.log()).not.toMatch(/client alpha connected again/);
  });

  it('has a large upload checked against the hash taken while the endpoint wrote it: a wrong hash is refused, the right one committed', async () => {
    const content = crypto.randomBytes(3 * 1024 * 1024 + 17); // past SMALL_FILE: the path that no longer reads the upload again
    const entryOf = (hash: string) => ({ type: 'file' as const, size: content.length, mtime: Date.now(), mode: 0o644, hash });
    const peer = await rpcPeer(rogue);
    try {
      const hello = await peer.request('hello', { node: 'mallory', folders: ['docs'], protocol: 1 }, 10_000);
      const tmp = (hello.folders as Record<string, { tmp: string }>).docs!.tmp;
      const put = async (name: string, hash: string) => {
        const upload = `${name}.up`;
        await new Promise<void>((resolve, reject) => sftp.writeFile(`${tmp}/${upload}`, content, (err) => (err ? reject(err) : resolve())));
        const reply = await peer.request('push', { folder: 'docs', ops: [{ op: 'put', path: `${name}.bin`, base: null, entry: entryOf(hash), upload }] }, 60_000);
        return (reply.results as Array<{ status: string; code?: string }>)[0];
      };
      // The same size, another hash: what the bytes were hashed to as they came decides.
      const other = crypto.createHash('sha256').update(Buffer.concat([content.subarray(1), Buffer.from('x')])).digest('hex');
      expect(await put('streamed-liar', other)).toMatchObject({ status: 'error', code: 'HASH_MISMATCH' });
      expect(await fs.stat(path.join(hub.folder('docs'), 'streamed-liar.bin')).catch(() => null)).toBeNull();
      const right = crypto.createHash('sha256').update(content).digest('hex');
      expect(await put('streamed-ok', right)).toMatchObject({ status: 'ok' });
      expect((await fs.readFile(path.join(hub.folder('docs'), 'streamed-ok.bin'))).equals(content)).toBe(true);
    } finally {
      peer.close();
    }
  });

  it('left the normal client syncing throughout', async () => {
    // Beta got alpha's files while the rogue was at it (its connection is still open).
    await waitFor(() => writer.count() >= 10, { timeoutMs: 30_000, what: 'alpha to write 10 files' });
    await waitFor(async () => (await fs.readFile(path.join(beta.folder('docs'), 'steady-9.txt'), 'utf8').catch(() => null)) === 'steady-9.txt', {
      timeoutMs: 30_000,
      what: "alpha's tenth file on beta",
    });
    const written = await writer.stop();
    await waitForTreesEqual([hub.folder('docs'), alpha.folder('docs'), beta.folder('docs')], { timeoutMs: 60_000 });
    for (const name of written) expect(await fs.readFile(path.join(beta.folder('docs'), name), 'utf8')).toBe(name);
  });
});

describe('who may connect', () => {
  it('refuses an unknown key at authentication', async () => {
    const stranger = await generateKey(path.join(cluster.dir, 'stranger_ed25519'));
    const err = await connect(stranger.privateKeyPath).then(
      (c) => {
        c.end();
        return null;
      },
      (e: Error & { level?: string }) => e,
    );
    expect(err?.level).toBe('client-authentication');
    await serverLogged(/refused key ssh-ed25519 SHA256:\S+ from 127\.0\.0\.1:\d+ \(user "mallory"\): it is not in \[clients\]/);
  });

  it("stops a client whose [node] name is not its key's with exit 1 and a clear error, and check fails the same way", async () => {
    const impostor = new Daemon('impostor', 'client', cluster.dir, { docs: path.join(cluster.dir, 'impostor', 'docs'), private: path.join(cluster.dir, 'impostor', 'private') });
    for (const f of Object.values(impostor.folders)) await fs.mkdir(f, { recursive: true });
    cluster.writeClientConfig(impostor, cluster.sshd.port);
    // Its config names it "impostor", but it signs in with beta's key.
    impostor.writeConfig((await fs.readFile(impostor.configPath, 'utf8')).replace(/^identity = .*$/m, `identity = ${cluster.keys.beta}`));
    const checked = await impostor.cli(['check']);
    expect(checked.code).toBe(1);
    expect(checked.stdout).toMatch(/^FAIL rpc stream of the embedded endpoint answers: .*this client's key belongs to node beta .* set \[node\] name = beta/m);
    impostor.start();
    expect(await impostor.waitExit()).toBe(1);
    expect(impostor.log()).toMatch(/giving up: this client's key belongs to node beta in the server's \[clients\], but hello says impostor/);
    // beta itself was not disturbed.
    expect((await beta.status()).connected).toBe(true);
  });

  it('refuses a host key the client does not trust, as OpenSSH does', async () => {
    const node = new Daemon('gamma', 'client', cluster.dir, { docs: path.join(cluster.dir, 'gamma', 'docs'), private: path.join(cluster.dir, 'gamma', 'private') });
    for (const f of Object.values(node.folders)) await fs.mkdir(f, { recursive: true });
    cluster.writeClientConfig(node, cluster.sshd.port);
    const knownHosts = path.join(cluster.dir, 'gamma_known_hosts');
    const text = (await fs.readFile(node.configPath, 'utf8')).replace(/^known_hosts = .*$/m, `known_hosts = ${knownHosts}`).replace(/^identity = .*$/m, `identity = ${cluster.keys.alpha}`);
    node.writeConfig(text);
    // Unknown host key.
    await fs.writeFile(knownHosts, '');
    const unknown = await node.cli(['check']);
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toMatch(/^FAIL host key of 127\.0\.0\.1:\d+ .*host key of \[127\.0\.0\.1\]:\d+ is not known: ssh-ed25519 SHA256:\S+ is not in/m);
    // Another key on record for this host: refused even with accept-new.
    const other = await generateKey(path.join(cluster.dir, 'other_host_key'));
    await fs.writeFile(knownHosts, `[127.0.0.1]:${cluster.sshd.port} ${other.publicKeyLine.split(' ').slice(0, 2).join(' ')}\n`);
    node.writeConfig(text.replace(/^host_key_check = .*$/m, 'host_key_check = accept-new'));
    const changed = await node.cli(['check']);
    expect(changed.code).toBe(1);
    expect(changed.stdout).toMatch(/HOST KEY CHANGED for \[127\.0\.0\.1\]:\d+/);
    expect(await fs.readFile(knownHosts, 'utf8')).not.toContain(cluster.sshd.hostPublicKey);
  });
});

/**
 * An RPC stream on `client`. The endpoint allows one at a time per connection, and the server
 * sees the previous one (closed by the test before) end a moment later: retry until it has.
 */
async function rpcPeer(client: SshClient): Promise<RpcPeer> {
  const open = () => new Promise<Duplex>((resolve, reject) => client.subsys(RPC_SUBSYSTEM, (err, ch) => (err ? reject(err) : resolve(ch))));
  const stream = await waitFor(() => open().catch(() => null), { timeoutMs: 10_000, what: 'an RPC stream on the rogue connection' });
  return createRpcPeer(stream!, { context: null, handlers: {} });
}

/** Writes a new file in `dir` every 300 ms until stopped; returns their names. */
function startWriter(dir: string): { count(): number; stop(): Promise<string[]> } {
  const names: string[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const name = `steady-${names.length}.txt`;
      await fs.writeFile(path.join(dir, name), name);
      names.push(name);
      await new Promise((r) => setTimeout(r, 300));
    }
  })();
  return {
    count: () => names.length,
    async stop() {
      running = false;
      await loop;
      return names;
    },
  };
}

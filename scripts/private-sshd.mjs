// A private OpenSSH sshd on 127.0.0.1 for the tests, the demo and the benchmarks (one implementation
// for all three). Types: private-sshd.d.mts.
/**
 * A private OpenSSH sshd for tests: started as a child process on 127.0.0.1 on a free port, with its
 * own host key, authorized client key and known_hosts file, all inside one temp directory.
 * As root it accepts root (key only); as another user it runs unprivileged and accepts only that user.
 */
import { execFile, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ensureSshd } from './ensure-sshd.mjs';
const execFileAsync = promisify(execFile);
const STARTUP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort() {
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.unref();
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => {
            const address = server.address();
            if (address === null || typeof address === 'string') {
                server.close();
                reject(new Error('freePort: unexpected server address'));
                return;
            }
            server.close(() => resolve(address.port));
        });
    });
}
/** Generates an unencrypted key pair with ssh-keygen at `privateKeyPath` (+ ".pub"). */
export async function generateKey(privateKeyPath, type = 'ed25519', comment = 'systemsync-test') {
    const args = ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', comment, '-f', privateKeyPath];
    await execFileAsync('ssh-keygen', args);
    const publicKeyPath = `${privateKeyPath}.pub`;
    const publicKeyLine = (await readFile(publicKeyPath, 'utf8')).trim();
    return { privateKeyPath, publicKeyPath, publicKeyLine };
}
/** Starts a private sshd. `dir` (created if needed) holds all its files; default: a fresh temp dir. */
export async function startSshd(opts = {}) {
    const sshdPath = ensureSshd();
    const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'systemsync-sshd-'));
    mkdirSync(dir, { recursive: true });
    const isRoot = process.getuid?.() === 0;
    if (isRoot)
        mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const user = os.userInfo().username;
    const hostKeyType = opts.hostKeyType ?? 'ed25519';
    const hostKeyPath = path.join(dir, `ssh_host_${hostKeyType}_key`);
    const clientKeyPath = path.join(dir, 'client_ed25519');
    const [hostKey, clientKey] = await Promise.all([
        generateKey(hostKeyPath, hostKeyType, 'systemsync-test-host'),
        generateKey(clientKeyPath, 'ed25519', 'systemsync-test-client'),
    ]);
    const authorizedKeysPath = path.join(dir, 'authorized_keys');
    writeFileSync(authorizedKeysPath, `${clientKey.publicKeyLine}\n`, { mode: 0o600 });
    const hostPublicKey = hostKey.publicKeyLine.split(/\s+/).slice(0, 2).join(' ');
    // A host certificate for 127.0.0.1, signed by the CA key at opts.hostCertificateCa.
    const extra = [...(opts.extraConfig ?? [])];
    if (opts.hostCertificateCa !== undefined) {
        await execFileAsync('ssh-keygen', ['-q', '-s', opts.hostCertificateCa, '-h', '-I', 'systemsync-test-host', '-n', '127.0.0.1', `${hostKeyPath}.pub`]);
        extra.push(`HostCertificate ${hostKeyPath}-cert.pub`);
    }
    let lastError = null;
    for (let attempt = 0; attempt < 5; attempt++) {
        const port = await freePort();
        const configPath = path.join(dir, 'sshd_config');
        writeFileSync(configPath, sshdConfig({ dir, port, hostKeyPath, authorizedKeysPath, isRoot, user }) + extra.map((l) => `${l}\n`).join(''));
        const child = spawn(sshdPath, ['-D', '-e', '-f', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.setEncoding('utf8');
        child.stderr.on('data', (chunk) => {
            if (stderr.length < 256 * 1024)
                stderr += chunk;
        });
        try {
            await waitForBanner(child, port, () => stderr);
        }
        catch (err) {
            await stopChild(child);
            lastError = err;
            if (/Address already in use/i.test(stderr))
                continue;
            throw err;
        }
        const knownHostsPath = path.join(dir, 'known_hosts');
        writeFileSync(knownHostsPath, `[127.0.0.1]:${port} ${hostPublicKey}\n`, { mode: 0o600 });
        return {
            host: '127.0.0.1',
            port,
            user,
            dir,
            clientKeyPath,
            knownHostsPath,
            hostPublicKey,
            authorizeKey(publicKeyLine) {
                appendFileSync(authorizedKeysPath, `${publicKeyLine.trim()}\n`);
            },
            pid: child.pid,
            log: () => stderr,
            stop: () => stopChild(child),
        };
    }
    throw lastError ?? new Error('startSshd: could not start sshd');
}
function sshdConfig(o) {
    return [
        `Port ${o.port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${o.hostKeyPath}`,
        `PidFile ${path.join(o.dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${o.authorizedKeysPath}`,
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'PermitRootLogin prohibit-password',
        `AllowUsers ${o.user}`,
        'Subsystem sftp internal-sftp',
        'AllowStreamLocalForwarding yes',
        // OpenSSH disables all local forwarding, streamlocal too, unless TCP forwarding is allowed locally.
        'AllowTcpForwarding local',
        'X11Forwarding no',
        'PrintMotd no',
        'UseDNS no',
        'MaxStartups 100:30:200',
        'MaxSessions 64',
        'LoginGraceTime 30',
        'LogLevel INFO',
        '',
    ].join('\n');
}
async function waitForBanner(child, port, stderr) {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    let exited = false;
    child.once('exit', () => {
        exited = true;
    });
    while (Date.now() < deadline) {
        if (exited || child.exitCode !== null) {
            throw new Error(`sshd exited during startup (code ${child.exitCode}); stderr:\n${stderr()}`);
        }
        if (await readsBanner(port))
            return;
        await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`sshd did not answer on 127.0.0.1:${port} within ${STARTUP_TIMEOUT_MS} ms; stderr:\n${stderr()}`);
}
function readsBanner(port) {
    return new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        let data = '';
        const done = (ok) => {
            socket.destroy();
            resolve(ok);
        };
        socket.setTimeout(2_000, () => done(false));
        socket.on('data', (chunk) => {
            data += chunk.toString('latin1');
            if (data.includes('SSH-'))
                done(true);
        });
        socket.on('error', () => done(false));
        socket.on('close', () => done(data.includes('SSH-')));
    });
}
function childPids(pid) {
    try {
        return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
            .split(/\s+/)
            .filter(Boolean)
            .map(Number);
    }
    catch {
        return [];
    }
}
async function stopChild(child) {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined)
        return;
    const pid = child.pid;
    // Per-connection sshd processes outlive the listener; end them too, each by its PID.
    const connectionPids = childPids(pid);
    const exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    for (const connectionPid of connectionPids) {
        try {
            process.kill(connectionPid, 'SIGTERM');
        }
        catch {
            // already gone
        }
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
}

#!/usr/bin/env node
// `npm run demo`: a server and two clients on this machine, in temporary folders. The server
// daemon is its own SSH server (the embedded endpoint, [listen]) on 127.0.0.1: no sshd, no root,
// any user. It uses the real commands (init, check, monitor, status), shows a file syncing from
// one client to the other, then stops everything it started and cleans up.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './private-sshd.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const monitor = path.resolve(here, '../dist/monitor.js');
if (!fs.existsSync(monitor)) {
  console.error(`${monitor} is missing: run \`npm install\` first (it builds dist/).`);
  process.exit(1);
}

const started = [];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'systemsync-demo-'));

function say(text) {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

/** Run the CLI as a node whose HOME is its own temp home (keys and known_hosts stay in there). */
function run(node, args) {
  return execFileSync(process.execPath, [monitor, ...args, '--config', node.config], {
    env: { ...process.env, HOME: node.home },
    encoding: 'utf8',
    // Polls print nothing of their own: a failed one is retried, not shown.
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Resolves once the daemon of `node` accepts connections on its control socket. */
function waitForControlSocket(node) {
  const socket = path.join(dir, `${node.name}-state`, 'control.sock');
  return waitFor(`${node.name}'s control socket`, () =>
    new Promise((resolve) => {
      const s = net.connect(socket);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    }),
  );
}

/** The same, printing what the command printed. */
function cli(node, args) {
  const out = run(node, args);
  process.stdout.write(out.replace(/^(?=.)/gm, `  ${node.name}| `));
  return out;
}

/** Set `key = value` in `[section]` of an INI text, replacing the line if the key is there. */
function setKey(text, section, key, value) {
  const lines = text.split('\n');
  const header = lines.findIndex((l) => l.trim().startsWith(`[${section}]`));
  if (header < 0) return `${text.trimEnd()}\n\n[${section}]\n${key} = ${value}\n`;
  let end = lines.findIndex((l, i) => i > header && /^\s*\[/.test(l));
  if (end < 0) end = lines.length;
  const existing = lines.findIndex((l, i) => i > header && i < end && new RegExp(`^\\s*${key}\\s*=`).test(l));
  if (existing >= 0) lines[existing] = `${key} = ${value}`;
  else lines.splice(header + 1, 0, `${key} = ${value}`);
  return lines.join('\n');
}

/** Replace the body of `[folders]` with one folder. */
function setFolders(text, name, folderPath) {
  const lines = text.split('\n');
  const header = lines.findIndex((l) => l.trim().startsWith('[folders]'));
  let end = lines.findIndex((l, i) => i > header && /^\s*\[/.test(l));
  if (end < 0) end = lines.length;
  const kept = lines.slice(header + 1, end).filter((l) => /^\s*;/.test(l) || l.trim() === '');
  lines.splice(header + 1, end - header - 1, ...kept, `${name} = ${folderPath}`, '');
  return lines.join('\n');
}

function makeNode(name) {
  const node = { name, home: path.join(dir, `${name}-home`), config: path.join(dir, `${name}.cfg`), folder: path.join(dir, name, 'docs') };
  fs.mkdirSync(node.home, { recursive: true });
  fs.mkdirSync(node.folder, { recursive: true });
  return node;
}

function startDaemon(node, role) {
  const log = fs.openSync(path.join(dir, `${node.name}.log`), 'a');
  const child = spawn(process.execPath, [monitor, 'monitor', '--role', role, '--config', node.config], {
    env: { ...process.env, HOME: node.home },
    stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  started.push(child);
  return child;
}

async function waitFor(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function cleanup() {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  await Promise.all(started.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)));
  fs.rmSync(dir, { recursive: true, force: true });
}

async function main() {
  say(`everything in ${dir}`);
  const port = await freePort();

  const hub = makeNode('hub');
  say('systemsync init --role server');
  const serverOut = cli(hub, ['init', '--role', 'server']);
  // The line for clients' known_hosts names this machine and port 2222; the demo listens on
  // 127.0.0.1 and a free port instead, so it keeps the key and changes the host part.
  const hostKey = serverOut.split('\n').find((l) => /^\[[^\]]+\]:\d+ ssh-ed25519 /.test(l)).split(' ').slice(1).join(' ');
  let text = fs.readFileSync(hub.config, 'utf8');
  text = setKey(text, 'node', 'name', 'hub');
  text = setKey(text, 'node', 'state_dir', path.join(dir, 'hub-state'));
  text = setKey(text, 'listen', 'address', '127.0.0.1');
  text = setKey(text, 'listen', 'port', String(port));
  text = setKey(text, 'listen', 'host_key', path.join(hub.home, '.local/state/systemsync/ssh_host_ed25519_key'));
  text = setFolders(text, 'docs', hub.folder);

  const clients = [makeNode('alpha'), makeNode('beta')];
  for (const node of clients) {
    say(`systemsync init --role client   (${node.name})`);
    const out = cli(node, ['init', '--role', 'client']);
    // The [clients] line, under this node's name.
    const keyLine = out.split('\n').find((l) => /^\S+ = ssh-ed25519 /.test(l));
    text = setKey(text, 'clients', node.name, keyLine.slice(keyLine.indexOf('=') + 1).trim());
    fs.mkdirSync(path.join(node.home, '.ssh'), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(node.home, '.ssh', 'known_hosts'), `[127.0.0.1]:${port} ${hostKey}\n`, { mode: 0o600 });
    let t = fs.readFileSync(node.config, 'utf8');
    t = setKey(t, 'node', 'name', node.name);
    t = setKey(t, 'node', 'state_dir', path.join(dir, `${node.name}-state`));
    t = setKey(t, 'server', 'host', '127.0.0.1');
    t = setKey(t, 'server', 'port', String(port));
    t = setFolders(t, 'docs', node.folder);
    fs.writeFileSync(node.config, t);
  }
  fs.writeFileSync(hub.config, text);

  say('systemsync monitor --role server');
  startDaemon(hub, 'server');
  await waitForControlSocket(hub);
  await waitFor('the server to listen', () => JSON.parse(run(hub, ['status', '--json'])).role === 'server');

  say('systemsync check   (alpha)');
  cli(clients[0], ['check']);

  say('systemsync monitor --role client   (alpha, beta)');
  for (const node of clients) startDaemon(node, 'client');
  for (const node of clients) {
    await waitForControlSocket(node);
    await waitFor(`${node.name} to connect`, () => JSON.parse(run(node, ['status', '--json'])).connected === true);
  }

  say('alpha writes hello.txt; waiting for it on beta');
  const from = path.join(clients[0].folder, 'hello.txt');
  const to = path.join(clients[1].folder, 'hello.txt');
  const content = `hello from alpha at ${new Date().toISOString()}\n`;
  const t0 = Date.now();
  fs.writeFileSync(from, content);
  await waitFor('hello.txt on beta', () => fs.readFileSync(to, 'utf8') === content);
  console.log(`  beta has it after ${Date.now() - t0} ms: ${JSON.stringify(fs.readFileSync(to, 'utf8'))}`);

  say('alpha deletes hello.txt; beta lists what the server kept and restores it');
  fs.rmSync(from);
  await waitFor('hello.txt to be gone on beta', () => !fs.existsSync(to));
  cli(clients[1], ['versions', to]);
  cli(clients[1], ['restore', to]);
  await waitFor('hello.txt back on alpha', () => fs.readFileSync(from, 'utf8') === content);
  console.log(`  alpha has it back: ${JSON.stringify(fs.readFileSync(from, 'utf8'))}`);

  say('systemsync status   (hub)');
  cli(hub, ['status']);
  say('systemsync status   (beta)');
  cli(clients[1], ['status']);
}

let code = 0;
try {
  await main();
  say('done: stopping everything the demo started');
} catch (err) {
  console.error(`demo failed: ${err.message}`);
  for (const name of ['hub', 'alpha', 'beta']) {
    const log = path.join(dir, `${name}.log`);
    if (fs.existsSync(log)) console.error(`--- ${name}.log\n${fs.readFileSync(log, 'utf8').slice(-3000)}`);
  }
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);

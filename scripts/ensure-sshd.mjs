#!/usr/bin/env node
// Makes sure OpenSSH's sshd and ssh-keygen are installed, for the tests' private sshd.
// As root a missing openssh-server is installed with apt-get; otherwise the exact command is shown.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SBIN_DIRS = ['/usr/sbin', '/usr/local/sbin', '/sbin'];

/** Absolute path of an executable named `name`, looked up in the sbin dirs and PATH; null if absent. */
export function findExecutable(name) {
  const dirs = [...SBIN_DIRS, ...(process.env.PATH ?? '').split(delimiter).filter(Boolean)];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

function installOpenSshServer() {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', 'openssh-server']]) {
    const result = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (result.error || result.status !== 0) {
      const why = result.error ? result.error.message : `exit status ${result.status}`;
      throw new Error(`ensure-sshd: "apt-get ${args.join(' ')}" failed (${why})`);
    }
  }
}

/**
 * Returns the path of sshd, installing openssh-server first when it (or ssh-keygen) is missing and
 * this process is root. Throws an Error naming the command to run when it cannot install.
 */
export function ensureSshd() {
  let sshd = findExecutable('sshd');
  let keygen = findExecutable('ssh-keygen');
  if (sshd && keygen) return sshd;
  const missing = [!sshd && 'sshd', !keygen && 'ssh-keygen'].filter(Boolean).join(' and ');
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error(
      `ensure-sshd: ${missing} not found; the tests need OpenSSH's server. ` +
        'Install it with: sudo apt-get install -y openssh-server',
    );
  }
  console.error(`ensure-sshd: ${missing} not found; installing openssh-server with apt-get`);
  installOpenSshServer();
  sshd = findExecutable('sshd');
  keygen = findExecutable('ssh-keygen');
  if (!sshd || !keygen) {
    throw new Error(`ensure-sshd: openssh-server was installed but ${missing} is still not found`);
  }
  return sshd;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    console.log(ensureSshd());
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}

#!/usr/bin/env node
/**
 * The command line: parse argv, load the config, run a daemon or ask a running one, and map
 * errors to exit codes (0 success, 1 runtime failure, 2 bad usage or bad config). The only file
 * that calls `process.exit`.
 */
// The daemons keep many small fs calls in flight (hashing, lstat, rename): libuv's default of
// 4 threads queues them. Must be set before the first asynchronous fs call.
process.env.UV_THREADPOOL_SIZE ??= '16';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, findConfigFile, loadConfig, type Config, type Role } from './cli/config.js';
import { createLogger, type LogLevel } from './node/log.js';
import { SyncServer } from './server.js';
import { SyncClient } from './client.js';
import { ensurePrivateDir } from './persistence.js';
import { askDaemon, formatStatus, formatTasks } from './cli/control.js';
import type { StatusReport, TaskInfo } from './node.js';
import { escapeControls, escapeControlsKeepLines, escapeJsonControls } from './core/text.js';

const USAGE = `usage: systemsync <command> [options]

commands:
  monitor --role client|server   run the daemon in the foreground until SIGINT/SIGTERM
  status [--json]                what the running daemon is doing
  tasks [--json]                 queued and failed tasks, oldest first
  retry                          retry failed tasks now
  stop                           stop the running daemon gracefully
  init --role client|server      write a commented config, create a key, print the authorized_keys line
  check                          validate the config and, on a client, the way to the server

options:
  --config FILE                  default ./systemsync.cfg, then ~/.config/systemsync/systemsync.cfg
  --role client|server           overrides [node] role
  --log-level error|warn|info|debug
  --json                         machine-readable output (status, tasks)
`;

class UsageError extends Error {}

interface Args {
  command: string;
  role?: Role;
  config?: string;
  json: boolean;
  logLevel?: LogLevel;
}

function parseArgs(argv: string[]): Args {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') throw new UsageError('');
  const args: Args = { command, json: false };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i]!;
    const value = (): string => {
      const v = rest[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    const [name, inline] = flag.includes('=') ? [flag.slice(0, flag.indexOf('=')), flag.slice(flag.indexOf('=') + 1)] : [flag, undefined];
    const take = (): string => inline ?? value();
    switch (name) {
      case '--role': {
        const role = take();
        if (role !== 'client' && role !== 'server') throw new UsageError(`--role: expected client or server, got ${JSON.stringify(role)}`);
        args.role = role;
        break;
      }
      case '--config':
        args.config = take();
        break;
      case '--json':
        args.json = true;
        break;
      case '--log-level': {
        const level = take();
        if (!['error', 'warn', 'info', 'debug'].includes(level)) throw new UsageError(`--log-level: expected error, warn, info or debug, got ${JSON.stringify(level)}`);
        args.logLevel = level as LogLevel;
        break;
      }
      default:
        throw new UsageError(`unknown option ${JSON.stringify(flag)}`);
    }
  }
  return args;
}

async function readConfig(args: Args): Promise<Config> {
  const file = findConfigFile(args.config, process.cwd(), os.homedir());
  return loadConfig(file, args.role === undefined ? {} : { role: args.role });
}

async function monitor(args: Args): Promise<number> {
  const config = await readConfig(args);
  await ensurePrivateDir(config.node.stateDir);
  const logger = createLogger({
    level: args.logLevel ?? config.node.logLevel,
    file: path.join(config.node.stateDir, 'systemsync.log'),
    stderr: true,
  });
  const daemon = config.node.role === 'server' ? new SyncServer(config, logger) : new SyncClient(config, logger);
  let signalled: NodeJS.Signals | null = null;
  const stopSignal = new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.on(signal, () => {
        if (signalled !== null) {
          logger.warn(`second ${signal}: exiting now`);
          process.exit(1);
        }
        signalled = signal;
        resolve();
      });
    }
  });
  try {
    await daemon.start();
  } catch (err) {
    logger.error(`cannot start: ${(err as Error).message}`);
    await daemon.stop().catch(() => undefined);
    logger.close();
    return 1;
  }
  logger.info(`systemsync ${config.node.role} ${config.node.name} running (pid ${process.pid}, config ${config.file})`);
  await Promise.race([stopSignal, daemon.stopRequested]);
  await daemon.stop();
  logger.close();
  return daemon.fatalError === null ? 0 : 1;
}

async function control(args: Args): Promise<number> {
  const config = await readConfig(args);
  switch (args.command) {
    case 'status': {
      const report = await askDaemon<StatusReport>(config, 'status');
      process.stdout.write(args.json ? `${escapeJsonControls(JSON.stringify(report, null, 2))}\n` : formatStatus(report, process.stdout.isTTY === true));
      return 0;
    }
    case 'tasks': {
      const { tasks } = await askDaemon<{ tasks: TaskInfo[] }>(config, 'tasks');
      process.stdout.write(args.json ? `${escapeJsonControls(JSON.stringify(tasks, null, 2))}\n` : formatTasks(tasks));
      return 0;
    }
    case 'retry': {
      const { retried } = await askDaemon<{ retried: number }>(config, 'retry');
      process.stdout.write(`${retried} failed task(s) sent back to the queue\n`);
      return 0;
    }
    case 'stop': {
      await askDaemon(config, 'stop');
      process.stdout.write(`stop requested; the daemon finishes its work in flight and exits\n`);
      return 0;
    }
  }
  throw new UsageError(`unknown command ${JSON.stringify(args.command)}`);
}

async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (err) {
    process.stderr.write(err instanceof UsageError && err.message ? `systemsync: ${escapeControls(err.message)}\n\n${USAGE}` : USAGE);
    return 2;
  }
  try {
    if (args.command === 'monitor') return await monitor(args);
    if (args.command === 'init' || args.command === 'check') {
      const setup = await import('./cli/setup.js');
      return args.command === 'init' ? await setup.init(args) : await setup.check(await readConfig(args));
    }
    return await control(args);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`systemsync: ${escapeControls(err.message)}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${escapeControlsKeepLines(err.message)}\n`);
      return 2;
    }
    process.stderr.write(`systemsync: ${escapeControls((err as Error).message)}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`systemsync: unexpected error: ${escapeControlsKeepLines(String((err as Error).stack ?? err))}\n`);
    process.exit(1);
  },
);

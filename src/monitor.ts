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
import { VERSION } from './version.js';
import { UsageError, runRecovery, type RecoveryArgs } from './cli/recovery.js';
import { watchStatus } from './cli/watch.js';
import { fullCollector, HeapTrimmer } from './node/heap.js';

const USAGE = `usage: systemsync <command> [options]

commands:
  monitor --role client|server   run the daemon in the foreground until SIGINT/SIGTERM
  status [--json] [--watch|-w]   what the running daemon is doing (--watch: redrawn every second)
  tasks [--json]                 queued and failed tasks, oldest first
  retry                          retry failed tasks now
  stop                           stop the running daemon gracefully
  init --role client|server      write a commented config, create a key, print the authorized_keys line
  check                          validate the config and, on a client, the way to the server
  versions PATH [--json]         the versions the server keeps of PATH (deleted or replaced), newest first
  restore PATH [--version ID] [--as NEWPATH]
                                 put a kept version (default: the newest) back, on every node
  conflicts [--json]             every conflict copy, with the file it belongs to, the node and the time
  resolve COPY --keep copy|original
  resolve --all --keep newest|original
                                 keep one side of a conflict; the other becomes a version
  version                        print the version (also --version)

  PATH and COPY: inside a synced folder of this node (absolute or relative to the current
  directory), or with --folder NAME relative to that folder's root.

options:
  --config FILE                  default ./systemsync.cfg, then ~/.config/systemsync/systemsync.cfg
  --role client|server           overrides [node] role
  --log-level error|warn|info|debug
  --json                         machine-readable output (status, tasks, versions, conflicts)
  --folder NAME                  the folder PATH or COPY is relative to
`;

const COMMANDS = ['monitor', 'status', 'tasks', 'retry', 'stop', 'init', 'check', 'versions', 'restore', 'conflicts', 'resolve', 'version'] as const;
type Command = (typeof COMMANDS)[number];

interface Args {
  command: Command;
  role?: Role;
  config?: string;
  json: boolean;
  logLevel?: LogLevel;
  positional: string[];
  folder?: string;
  version?: string;
  as?: string;
  keep?: string;
  all: boolean;
  watch: boolean;
}

function parseArgs(argv: string[]): Args {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') throw new UsageError('');
  if (command === '--version' || command === '-V') return { command: 'version', json: false, positional: [], all: false, watch: false };
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw new UsageError(command.startsWith('-') ? `expected a command first, got the option ${JSON.stringify(command)}` : `unknown command ${command}`);
  }
  const args: Args = { command: command as Command, json: false, positional: [], all: false, watch: false };
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
      case '--folder':
        args.folder = take();
        break;
      case '--version':
        args.version = take();
        break;
      case '--as':
        args.as = take();
        break;
      case '--keep':
        args.keep = take();
        break;
      case '--all':
        args.all = true;
        break;
      case '--watch':
      case '-w':
        args.watch = true;
        break;
      case '--log-level': {
        const level = take();
        if (!['error', 'warn', 'info', 'debug'].includes(level)) throw new UsageError(`--log-level: expected error, warn, info or debug, got ${JSON.stringify(level)}`);
        args.logLevel = level as LogLevel;
        break;
      }
      default:
        // `--` ends the options: what follows is a path, even if it starts with a dash.
        if (flag === '--') {
          args.positional.push(...rest.slice(i + 1));
          i = rest.length;
          break;
        }
        if (flag.startsWith('-')) throw new UsageError(`unknown option ${JSON.stringify(flag)}`);
        args.positional.push(flag);
    }
  }
  return args;
}

async function readConfig(args: Args): Promise<Config> {
  const file = findConfigFile(args.config, process.cwd(), os.homedir());
  return loadConfig(file, args.role === undefined ? {} : { role: args.role });
}

const mibOf = (bytes: number): string => (bytes / 1048576).toFixed(1);

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
  // Give back the heap of bulk work (a first pull, a scan) once the daemon is quiet (node/heap.ts).
  const collect = fullCollector();
  const trimmer = collect === null ? null : new HeapTrimmer(collect, {
    onCollect: (before, after, ms) => logger.debug(`heap: collected after bulk work: ${mibOf(before.used)} of ${mibOf(before.total)} MiB → ${mibOf(after.used)} of ${mibOf(after.total)} MiB in ${ms.toFixed(0)} ms`),
  });
  trimmer?.start();
  await Promise.race([stopSignal, daemon.stopRequested]);
  trimmer?.stop();
  await daemon.stop();
  logger.close();
  return daemon.fatalError === null ? 0 : 1;
}

async function control(args: Args): Promise<number> {
  const config = await readConfig(args);
  switch (args.command) {
    case 'status': {
      if (args.watch) return watchStatus(config, process.stdout.isTTY === true, (text) => process.stdout.write(text));
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
  const takesPaths = ['versions', 'restore', 'conflicts', 'resolve'].includes(args.command);
  if (!takesPaths && args.positional.length > 0) {
    process.stderr.write(`systemsync: ${args.command} takes no arguments, got ${escapeControls(args.positional.map((a) => JSON.stringify(a)).join(' '))}\n\n${USAGE}`);
    return 2;
  }
  try {
    if (args.command === 'version') {
      process.stdout.write(`systemsync ${VERSION}\n`);
      return 0;
    }
    if (args.command === 'monitor') return await monitor(args);
    if (takesPaths) return await runRecovery(await readConfig(args), { ...args, command: args.command as RecoveryArgs['command'] }, (text) => process.stdout.write(text));
    if (args.command === 'init' || args.command === 'check') {
      if (args.command === 'init') return await (await import('./cli/init.js')).init(args);
      return await (await import('./cli/check.js')).check(await readConfig(args));
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

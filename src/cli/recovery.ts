/**
 * `versions`, `restore`, `conflicts` and `resolve`: the CLI side. PATH and COPY are paths inside
 * a synced folder of this node (absolute, relative to the current directory, or with --folder
 * relative to that folder's root); the daemon of this config answers, a client by asking its
 * server. Output: a table for people, or with --json the SPEC's arrays.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config.js';
import { SystemsyncError } from '../core/errors.js';
import { checkRelativePath, PathError } from '../core/paths.js';
import { askDaemonWith, formatBytes } from './control.js';
import { escapeControls, escapeJsonControls } from '../core/text.js';
import type { ConflictWire, VersionInfoWire } from '../rpc.js';

const show = escapeControls;
const json = (value: unknown): string => `${escapeJsonControls(JSON.stringify(value, null, 2))}\n`;

/** A usage problem on the command line: exit 2 with the usage. code 'USAGE'. */
export class UsageError extends SystemsyncError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

export interface RecoveryArgs {
  command: 'versions' | 'restore' | 'conflicts' | 'resolve';
  positional: string[];
  json: boolean;
  folder?: string;
  version?: string;
  as?: string;
  keep?: string;
  all: boolean;
}

/** A long operation (a restore of a large directory) may take a while on the server. */
const LONG_MS = 10 * 60 * 1000;

/** Which folder `given` lies in, and its folder-relative path. */
export function locate(config: Config, given: string, folderName: string | undefined, cwd: string): { folder: string; path: string } {
  if (folderName !== undefined) {
    const folder = config.folders.find((f) => f.name === folderName);
    if (folder === undefined) throw new UsageError(`--folder: no folder ${JSON.stringify(folderName)} in ${config.file} (folders: ${config.folders.map((f) => f.name).join(', ')})`);
    if (!path.isAbsolute(given)) return { folder: folder.name, path: relOrThrow(given, given) };
  }
  const abs = path.resolve(cwd, given);
  for (const folder of config.folders) {
    if (folderName !== undefined && folder.name !== folderName) continue;
    for (const root of rootsOf(folder.path)) {
      const rel = path.relative(root, abs);
      if (rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel)) return { folder: folder.name, path: relOrThrow(rel.split(path.sep).join('/'), given) };
    }
  }
  const where = folderName !== undefined ? `folder ${folderName}` : `any synced folder of ${config.file} (${config.folders.map((f) => `${f.name} = ${f.path}`).join(', ')})`;
  throw new UsageError(`${given} is not inside ${where}`);
}

/** A folder's root as configured and, when it differs, as resolved (the cwd is always resolved). */
function rootsOf(root: string): string[] {
  try {
    const real = fs.realpathSync(root);
    return real === root ? [root] : [root, real];
  } catch {
    return [root];
  }
}

function relOrThrow(rel: string, given: string): string {
  try {
    return checkRelativePath(rel);
  } catch (err) {
    if (err instanceof PathError) throw new UsageError(`${given}: not a path inside a folder (${err.reason})`);
    throw err;
  }
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function formatVersions(p: string, versions: VersionInfoWire[], truncated: boolean): string {
  if (versions.length === 0) return `no versions of ${show(p)} are kept\n`;
  const rows = versions.map((v) => [
    v.id,
    v.time,
    v.type === 'dir' ? `${formatBytes(v.size)} in ${v.entries ?? 0}` : formatBytes(v.size),
    show(v.node ?? '?'),
    v.type === 'dir' ? 'directory deleted' : v.because,
    v.mtime ?? '',
  ]);
  return table(['ID', 'TIME (UTC)', 'SIZE', 'NODE', 'WHAT', 'MODIFIED'], rows) + (truncated ? '(more, older versions are not listed)\n' : '');
}

export function formatConflicts(conflicts: ConflictWire[]): string {
  if (conflicts.length === 0) return 'no conflicts\n';
  return table(
    ['FOLDER', 'COPY', 'ORIGINAL', 'NODE', 'TIME (UTC)'],
    conflicts.map((c) => [c.folder, show(c.path), c.hasOriginal ? show(c.original) : `${show(c.original)} (gone)`, show(c.node), c.time]),
  );
}

/** Runs one of the four commands; returns the exit code. Errors of the daemon throw (exit 1). */
export async function runRecovery(config: Config, args: RecoveryArgs, out: (text: string) => void, cwd = process.cwd()): Promise<number> {
  const one = (what: string): string => {
    if (args.positional.length !== 1) throw new UsageError(`${args.command} takes one ${what}, got ${args.positional.length === 0 ? 'none' : args.positional.join(' ')}`);
    return args.positional[0]!;
  };
  switch (args.command) {
    case 'versions': {
      const given = one('PATH');
      const where = locate(config, given, args.folder, cwd);
      const { versions, truncated } = await askDaemonWith(config, 'versions', where, LONG_MS);
      out(args.json ? json(versions) : formatVersions(given, versions, truncated));
      return 0;
    }
    case 'restore': {
      const given = one('PATH');
      const where = locate(config, given, args.folder, cwd);
      let as: string | null = null;
      if (args.as !== undefined) {
        const target = locate(config, args.as, args.folder, cwd);
        if (target.folder !== where.folder) throw new UsageError(`--as ${args.as}: expected a path in folder ${where.folder}, got one in folder ${target.folder}`);
        as = target.path;
      }
      const result = await askDaemonWith(config, 'restore', { ...where, version: args.version ?? null, as }, LONG_MS);
      const shown = show(args.as ?? given);
      const what = result.restored === 0 ? `${shown} already holds version ${result.version}` : `restored version ${result.version} of ${show(given)}${args.as !== undefined ? ` as ${shown}` : ''} (${result.restored} ${result.restored === 1 ? 'entry' : 'entries'})`;
      out(`${what}${result.missing > 0 ? `; ${result.missing} of its files are no longer kept` : ''}; it reaches every node as a new change\n`);
      return 0;
    }
    case 'conflicts': {
      if (args.positional.length > 0) throw new UsageError(`conflicts takes no PATH, got ${args.positional.join(' ')}`);
      const all: ConflictWire[] = [];
      let failed = 0;
      let truncated = false;
      for (const folder of config.folders) {
        if (args.folder !== undefined && folder.name !== args.folder) continue;
        try {
          const answer = await askDaemonWith(config, 'conflicts', { folder: folder.name }, LONG_MS);
          all.push(...answer.conflicts);
          truncated ||= answer.truncated;
        } catch (err) {
          if ((err as { code?: string }).code === 'NOT_RUNNING') throw err;
          process.stderr.write(`systemsync: folder ${folder.name}: ${show((err as Error).message)}\n`);
          failed++;
        }
      }
      out(args.json ? json(all) : formatConflicts(all) + (truncated ? '(more conflicts than listed)\n' : ''));
      return failed > 0 ? 1 : 0;
    }
    case 'resolve': {
      if (args.all) {
        if (args.positional.length > 0) throw new UsageError('resolve --all takes no COPY');
        if (args.keep !== 'newest' && args.keep !== 'original') throw new UsageError(`resolve --all: expected --keep newest or --keep original, got ${args.keep === undefined ? 'no --keep' : `--keep ${args.keep}`}`);
        let total = 0;
        const lines: string[] = [];
        for (const folder of config.folders) {
          if (args.folder !== undefined && folder.name !== args.folder) continue;
          const result = await askDaemonWith(config, 'resolve', { folder: folder.name, copy: null, keep: args.keep }, LONG_MS);
          total += result.count;
          for (const r of result.resolved) lines.push(`  ${folder.name}: ${show(r.original)}: kept the ${r.kept === 'copy' ? `copy ${show(r.copy)}` : 'original'}`);
        }
        out(`${lines.join('\n')}${lines.length > 0 ? '\n' : ''}resolved ${total} conflict(s); the other sides are kept as versions\n`);
        return 0;
      }
      const given = one('COPY');
      if (args.keep !== 'copy' && args.keep !== 'original') throw new UsageError(`resolve: expected --keep copy or --keep original, got ${args.keep === undefined ? 'no --keep' : `--keep ${args.keep}`}`);
      const where = locate(config, given, args.folder, cwd);
      const result = await askDaemonWith(config, 'resolve', { folder: where.folder, copy: where.path, keep: args.keep }, LONG_MS);
      const r = result.resolved[0];
      out(r === undefined ? `nothing to resolve\n` : `${show(r.original)}: kept the ${r.kept}; the other side is kept as a version (systemsync versions ${show(r.kept === 'copy' ? r.original : r.copy)})\n`);
      return 0;
    }
  }
}

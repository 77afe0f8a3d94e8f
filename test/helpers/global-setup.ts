// vitest globalSetup: make sure OpenSSH's sshd and ssh-keygen exist before any test starts one,
// and that dist/ (what the end-to-end tests run as real daemons) is built from the current src/,
// even when vitest is started on one file without `npm test`.
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
// @ts-ignore -- plain ESM script without type declarations
import { ensureSshd } from '../../scripts/ensure-sshd.mjs';

const repo = path.resolve(import.meta.dirname, '../..');

/** The first src/ file whose compiled dist/ file is missing or older than it, or null. */
function staleSource(dir = path.join(repo, 'src')): string | null {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const abs = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      const found = staleSource(abs);
      if (found !== null) return found;
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
      const compiled = path.join(repo, 'dist', path.relative(path.join(repo, 'src'), abs)).replace(/\.ts$/, '.js');
      let compiledMs = -1;
      try {
        compiledMs = statSync(compiled).mtimeMs;
      } catch {
        return abs;
      }
      if (compiledMs < statSync(abs).mtimeMs) return abs;
    }
  }
  return null;
}

export default function setup(): void {
  (ensureSshd as () => string)();
  if (staleSource() !== null) {
    execFileSync(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '-p', path.join(repo, 'tsconfig.build.json')], {
      cwd: repo,
      stdio: 'inherit',
    });
    execFileSync('chmod', ['+x', path.join(repo, 'dist/monitor.js')]);
  }
}

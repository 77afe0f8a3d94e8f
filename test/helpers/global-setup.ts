// vitest globalSetup: make sure OpenSSH's sshd and ssh-keygen exist before any test starts one.
// @ts-ignore -- plain ESM script without type declarations
import { ensureSshd } from '../../scripts/ensure-sshd.mjs';

export default function setup(): void {
  (ensureSshd as () => string)();
}

/**
 * The private test sshd. The implementation lives in scripts/private-sshd.mjs so that the demo
 * and the benchmarks (plain Node, no vitest) start it the same way the tests do.
 */
export { freePort, generateKey, startSshd } from '../../scripts/private-sshd.mjs';
export type { GeneratedKey, TestSshd } from '../../scripts/private-sshd.mjs';

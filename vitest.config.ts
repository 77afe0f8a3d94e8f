import { configDefaults, defineConfig } from 'vitest/config';

/**
 * The whole-protocol simulation over many seeds (test/sim.test.ts, issue 10) is run by
 * `npm run test:sim`, not by `npm test`, until its 2,000 seeds pass: on 2026-12-05 about one
 * seed in a hundred still fails (open classes in docs/DESIGN.md "Simulation"). The directed
 * regressions (test/sim-regressions.test.ts) and the engine's tests are in `npm test`.
 */
export const SIM_SEEDS_TEST = 'test/sim.test.ts';

/** What every run shares. */
export const SHARED = {
  globalSetup: ['test/helpers/global-setup.ts'],
  // A limit only to catch hangs: performance is measured by `npm run bench`, not by tests.
  testTimeout: 120_000,
  hookTimeout: 120_000,
  pool: 'forks' as const,
  fileParallelism: true,
  maxWorkers: 2,
};

export default defineConfig({
  test: { ...SHARED, include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, SIM_SEEDS_TEST] },
});

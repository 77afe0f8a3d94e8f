import { configDefaults, defineConfig } from 'vitest/config';

/**
 * The churn soak (test/e2e-churn.test.ts, issue 10) is run by `npm run test:churn`, not by
 * `npm test`: it still fails to converge on some seeds (a known open bug, see docs/DESIGN.md
 * "Convergence"), and a random 10-seed run in CI would fail more often than not.
 */
export const CHURN_TEST = 'test/e2e-churn.test.ts';

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
  test: { ...SHARED, include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, CHURN_TEST] },
});

import { defineConfig } from 'vitest/config';
import { SHARED, SIM_SEEDS_TEST } from './vitest.config.js';

/** `npm run test:sim`: the simulation over 2,000 seeds (SYSTEMSYNC_SIM_SEEDS, SYSTEMSYNC_SIM_FIRST, SYSTEMSYNC_SIM_SEED, SYSTEMSYNC_SIM_KEEP_GOING). */
export default defineConfig({ test: { ...SHARED, include: [SIM_SEEDS_TEST], testTimeout: 3_600_000 } });

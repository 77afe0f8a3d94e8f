import { defineConfig } from 'vitest/config';
import { CHURN_TEST, SHARED } from './vitest.config.js';

/** `npm run test:churn`: the seeded churn soak against the real sshd and daemons (SYSTEMSYNC_CHURN_SEEDS, SYSTEMSYNC_SEED). */
export default defineConfig({ test: { ...SHARED, include: [CHURN_TEST] } });

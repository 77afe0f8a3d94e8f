/**
 * The SSH layer's public surface, re-exported for importers: errors (errors.ts), connecting
 * (connect.ts), the session and its transfers (session.ts, transfertypes.ts).
 *
 * Every failure is a `TransferError` with a stable string `code`; callers branch on `code`.
 */
export * from './errors.js';
export * from './connect.js';
export * from './session.js';
export * from './transfertypes.js';

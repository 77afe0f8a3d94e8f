/** The errors of the state stores (`PersistenceError` and its kinds); callers branch on `code`. */
import { SystemsyncError } from '../core/errors.js';

/** Base of the errors thrown by the state stores; callers branch on `code`. */
export class PersistenceError extends SystemsyncError {}

/** A state file exists but cannot be read as what it should hold (bad JSON, wrong shape). */
export class StateCorruptError extends PersistenceError {
  readonly file: string;
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super('STATE_CORRUPT', `state file ${file} is corrupt: ${reason}`, options);
    this.file = file;
  }
}

/** A store was used after `close()`. */
export class StoreClosedError extends PersistenceError {
  constructor(what: string) {
    super('STORE_CLOSED', `${what} is closed`);
  }
}

/** What to do when a state file is corrupt: throw `StateCorruptError`, or move it aside and start empty. */
export type OnCorrupt = 'throw' | 'reset';

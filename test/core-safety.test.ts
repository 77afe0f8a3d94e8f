// Safety predicates (src/core/safety.ts), SPEC promise 9: a folder whose root or marker vanished
// is paused, never read as "delete everything". The full truth table of both predicates.
import { describe, expect, it } from 'vitest';
import { needsMarker, pauseReason, type FolderPresence } from '../src/core/safety.js';

interface SafetyCase {
  description: string;
  presence: FolderPresence;
  /** null: sync may go on; otherwise a word the reason must contain. */
  pausedFor: 'root' | 'marker' | null;
  createMarker: boolean;
}

const cases: SafetyCase[] = [
  {
    description: 'root missing, never synced (wrong path)',
    presence: { rootExists: false, markerExists: false, hasHistory: false },
    pausedFor: 'root',
    createMarker: false,
  },
  {
    description: 'root missing after syncing (unmounted disk)',
    presence: { rootExists: false, markerExists: false, hasHistory: true },
    pausedFor: 'root',
    createMarker: false,
  },
  {
    description: 'root missing though a marker is reported',
    presence: { rootExists: false, markerExists: true, hasHistory: false },
    pausedFor: 'root',
    createMarker: false,
  },
  {
    description: 'root missing, marker reported, with history',
    presence: { rootExists: false, markerExists: true, hasHistory: true },
    pausedFor: 'root',
    createMarker: false,
  },
  {
    description: 'a new folder: present, no marker, no history',
    presence: { rootExists: true, markerExists: false, hasHistory: false },
    pausedFor: null,
    createMarker: true,
  },
  {
    description: 'marker vanished from a synced folder (swapped directory)',
    presence: { rootExists: true, markerExists: false, hasHistory: true },
    pausedFor: 'marker',
    createMarker: false,
  },
  {
    description: 'marked but no local history (index lost or another node marked it)',
    presence: { rootExists: true, markerExists: true, hasHistory: false },
    pausedFor: null,
    createMarker: false,
  },
  {
    description: 'the normal case: present, marked, with history',
    presence: { rootExists: true, markerExists: true, hasHistory: true },
    pausedFor: null,
    createMarker: false,
  },
];

describe('pauseReason', () => {
  it.each(cases)('$description → paused for $pausedFor', ({ presence, pausedFor }) => {
    const reason = pauseReason(presence);
    if (pausedFor === null) {
      expect(reason).toBeNull();
    } else {
      expect(typeof reason).toBe('string');
      expect(reason).toMatch(new RegExp(pausedFor, 'i'));
    }
  });
});

describe('needsMarker', () => {
  it.each(cases)('$description → $createMarker', ({ presence, createMarker }) => {
    expect(needsMarker(presence)).toBe(createMarker);
  });
});

describe('pauseReason and needsMarker together', () => {
  it.each(cases)('$description: never both paused and told to create the marker', ({ presence }) => {
    expect(pauseReason(presence) !== null && needsMarker(presence)).toBe(false);
  });

  it('the table covers all eight combinations', () => {
    const keys = new Set(cases.map(({ presence: p }) => `${p.rootExists}${p.markerExists}${p.hasHistory}`));
    expect(keys.size).toBe(8);
  });
});

/**
 * Safety predicates: when one fires, the folder is paused instead of propagating
 * "delete everything" (SPEC promise 9).
 */

export interface FolderPresence {
  /** The folder's root exists and is a directory. */
  rootExists: boolean;
  /** `<root>/.systemsync/` exists. */
  markerExists: boolean;
  /** This node has synced the folder before (its index is not empty). */
  hasHistory: boolean;
}

/**
 * Why the folder must not be synced now, or null when it may. A folder seen for the first time
 * gets its marker created by the caller; a folder with history whose marker vanished is an
 * unmounted disk or a swapped directory, and is never read as a mass delete.
 */
export function pauseReason(presence: FolderPresence): string | null {
  if (!presence.rootExists) return 'folder root is missing (unmounted disk or wrong path?)';
  if (!presence.markerExists && presence.hasHistory) {
    return 'folder marker .systemsync/ is missing: the folder was replaced or its disk is not mounted';
  }
  return null;
}

/** True when the caller should create the marker: a folder that is present but new to this node. */
export function needsMarker(presence: FolderPresence): boolean {
  return presence.rootExists && !presence.markerExists && !presence.hasHistory;
}

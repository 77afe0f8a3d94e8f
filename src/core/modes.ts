/**
 * Which mode bits travel. Pure: no fs, no imports from outside `core/`.
 *
 * Only the permission bits (rwx for user, group, other). setuid, setgid and sticky never travel:
 * a file synced as 04755 would otherwise become a setuid binary of the sync user on every node.
 * They are masked when a node scans its folder, when an entry arrives over the wire, and again
 * when an entry is applied to disk.
 */

/** rwxrwxrwx: the mode bits that sync. */
export const PERMISSION_BITS = 0o777;

/** `mode` with setuid, setgid, sticky and the file-type bits cleared. */
export function permissionBits(mode: number): number {
  return mode & PERMISSION_BITS;
}

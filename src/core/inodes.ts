/**
 * The base index's inode → names map (rename detection, hard links). Pure data structure, shared
 * by the client's state and the simulation's. One name is kept as a plain string, several (hard
 * links) as an array in the order they were added.
 */
export class InodeNames {
  private readonly byIno = new Map<number, string | string[]>();

  add(ino: number, p: string): void {
    const names = this.byIno.get(ino);
    if (names === undefined || names === p) this.byIno.set(ino, p);
    else if (typeof names === 'string') this.byIno.set(ino, [names, p]);
    else if (!names.includes(p)) names.push(p);
  }

  remove(ino: number, p: string): void {
    const names = this.byIno.get(ino);
    if (names === p) {
      this.byIno.delete(ino);
    } else if (Array.isArray(names)) {
      const rest = names.filter((n) => n !== p);
      this.byIno.set(ino, rest.length === 1 ? rest[0]! : rest);
    }
  }

  /** The name an inode was last given (where a renamed file came from). */
  last(ino: number): string | null {
    const names = this.byIno.get(ino);
    if (names === undefined) return null;
    return typeof names === 'string' ? names : (names[names.length - 1] ?? null);
  }

  /** Every name of the inode (several for hard links). */
  all(ino: number): string[] {
    const names = this.byIno.get(ino);
    return names === undefined ? [] : typeof names === 'string' ? [names] : [...names];
  }
}

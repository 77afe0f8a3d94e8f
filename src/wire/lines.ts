/**
 * Newline-delimited framing: bytes in, whole lines out, each at most `maxLineBytes` (without its
 * newline). A longer line, whole or still arriving, is abuse: the caller drops the connection.
 */
export class LineSplitter {
  private partial: Buffer[] = [];
  private partialBytes = 0;

  constructor(readonly maxLineBytes: number) {}

  /** The lines that `chunk` completes, in order; 'too long' when a line passes the limit. */
  push(chunk: Buffer): Buffer[] | 'too long' {
    const lines: Buffer[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      if (this.partialBytes + piece.length > this.maxLineBytes) return 'too long';
      lines.push(this.partialBytes === 0 ? piece : Buffer.concat([...this.partial, piece]));
      this.clear();
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.partialBytes += rest.length;
      if (this.partialBytes > this.maxLineBytes) return 'too long';
      this.partial.push(rest);
    }
    return lines;
  }

  /** Forgets the line in progress. */
  clear(): void {
    this.partial = [];
    this.partialBytes = 0;
  }
}

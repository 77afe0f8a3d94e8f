/**
 * Text that came from a file name, a peer or another untrusted place, made safe to print on one
 * line of a log or a terminal. The one escaping function for everything systemsync prints.
 */

/**
 * Characters a terminal or a log reader may act on: C0 controls (NUL…US: ESC, \r, \n, BEL, BS…),
 * DEL, C1 controls (U+0080…U+009F, e.g. U+009B, the one-character CSI), the Unicode line and
 * paragraph separators, and the bidirectional embeddings, overrides and isolates that reorder
 * what follows them on screen ("Trojan Source").
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeOne(ch: string): string {
  const named = NAMED[ch];
  if (named !== undefined) return named;
  const code = ch.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * `text` with every control character (see UNSAFE) written as a visible escape: `\n`, `\r`,
 * `\t`, `\x1b`, `\x9b`, `\u202e`. The result is one line, and printing it moves no cursor,
 * clears nothing and sets no terminal title. Everything else (backslashes, quotes, letters in
 * any script) is left as it is.
 */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, escapeOne);
}

/** Like `escapeControls`, but keeps the line breaks of a multi-line message systemsync wrote itself. */
export function escapeControlsKeepLines(text: string): string {
  return text.split('\n').map(escapeControls).join('\n');
}

/**
 * `JSON.stringify` output (for `--json`) with the characters JSON itself leaves raw (DEL, C1,
 * U+2028/2029, bidi controls) written as `\uXXXX`: the same JSON value, safe on a terminal.
 */
export function escapeJsonControls(json: string): string {
  // JSON.stringify already escapes C0 inside strings; the newlines it indents with stay.
  return json.replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Steps 1 and 2 of reading a config file: the sections and keys it may have, its lines scanned
 * for structure (known sections and keys, no duplicates, file order, safe inline comments), and
 * the values decoded by `ini` and cross-checked against that scan.
 */
import ini from 'ini';
import { ConfigError, type HostKeyCheck, type LogLevel, type Role } from './configtypes.js';
import { quote, suggestion } from './configvalues.js';

// ---------------------------------------------------------------------------------------------
// The schema: sections and their keys.

export type SectionName = 'node' | 'server' | 'rpc' | 'folders' | 'ignore' | 'trash' | 'listen' | 'clients' | 'access' | 'versions';

/** Fixed keys per section; `folders` and `access` have folder names as keys, `clients` node names. */
const SECTION_KEYS: Readonly<Record<SectionName, readonly string[] | 'folder-names' | 'node-names'>> = {
  node: ['name', 'role', 'state_dir', 'log_level'],
  server: ['host', 'port', 'user', 'identity', 'known_hosts', 'host_key_check', 'rpc_socket', 'connect_timeout'],
  rpc: ['socket'],
  folders: 'folder-names',
  ignore: ['patterns'],
  trash: ['retention_days'],
  listen: ['address', 'port', 'host_key'],
  clients: 'node-names',
  access: 'folder-names',
  versions: ['keep', 'days', 'count', 'max_size'],
};
export const SECTION_NAMES = Object.keys(SECTION_KEYS) as SectionName[];
/** Sections that only one role may have, and why. */
export const SECTION_ROLE: Partial<Record<SectionName, { role: Role; why: string }>> = {
  server: { role: 'client', why: 'how a client reaches the server' },
  rpc: { role: 'server', why: "the server daemon's RPC socket" },
  trash: { role: 'server', why: 'the server keeps the trash' },
  listen: { role: 'server', why: "the server's embedded SSH endpoint" },
  clients: { role: 'server', why: 'the keys the embedded endpoint accepts' },
  access: { role: 'server', why: 'which clients the server lets sync each folder' },
  versions: { role: 'server', why: 'the server keeps the versions' },
};

export const ROLES: readonly Role[] = ['client', 'server'];
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];
export const HOST_KEY_CHECKS: readonly HostKeyCheck[] = ['yes', 'accept-new'];

export const NODE_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const FOLDER_NAME = /^(?!\.)[A-Za-z0-9._-]{1,64}$/;
export const HOST_NAME = /^(?!-)[A-Za-z0-9._:%-]{1,253}$/;
/** Control characters (tab aside) and the JS line separators, which `ini` cannot read. */
// eslint-disable-next-line no-control-regex
const CONTROL_CHAR = /[\u0000-\u0008\u000a-\u001f\u007f\u2028\u2029]/;

// ---------------------------------------------------------------------------------------------
// Step 1: scan the lines (structure only).

interface ScannedKey {
  key: string;
  line: number;
}
interface ScannedSection {
  name: SectionName;
  line: number;
  keys: ScannedKey[];
}

/** `ini`'s own test for a quoted value, which it then JSON-decodes instead of cutting comments. */
function isQuoted(value: string): boolean {
  return (value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'"));
}

/**
 * Checks the structure of the text and returns its sections in file order plus the normalised
 * text handed to `ini` (section headers stripped of their comments, comments and blanks dropped).
 */
export function scanLines(text: string, file: string): { sections: ScannedSection[]; normalized: string } {
  const sections: ScannedSection[] = [];
  const out: string[] = [];
  let current: ScannedSection | null = null;
  const lines = text.split(/\r\n|\r|\n/);

  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (/^\s*$/.test(line) || /^\s*[;#]/.test(line)) return;
    const control = CONTROL_CHAR.exec(line);
    if (control) {
      const code = control[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
      throw new ConfigError(
        { file, section: current?.name ?? null },
        `expected text, got the control character U+${code} on line ${lineNo}`,
      );
    }
    const trimmed = line.trim();

    if (trimmed.startsWith('[')) {
      current = scanSectionHeader(file, trimmed, lineNo, sections);
      sections.push(current);
      out.push(`[${current.name}]`);
      return;
    }

    const eq = line.indexOf('=');
    if (eq === -1) {
      throw new ConfigError(
        { file, section: current?.name ?? null },
        `expected "key = value" on line ${lineNo}, got ${quote(trimmed)}`,
      );
    }
    const key = line.slice(0, eq).trim();
    const rawValue = line.slice(eq + 1).trim();
    if (key === '') {
      throw new ConfigError(
        { file, section: current?.name ?? null },
        `expected a key name before "=" on line ${lineNo}, got ${quote(trimmed)}`,
      );
    }
    if (current === null) {
      throw new ConfigError(
        { file, key },
        `expected a [section] line before this key (line ${lineNo}), got it outside any section`,
      );
    }
    const section: ScannedSection = current;
    checkKeyName(file, section.name, key);
    checkInlineComment(file, section.name, key, rawValue);
    const previous = section.keys.find((k) => k.key === key);
    if (previous) {
      throw new ConfigError(
        { file, section: section.name, key },
        `expected the key once, got it twice (lines ${previous.line} and ${lineNo}); keep one`,
      );
    }
    section.keys.push({ key, line: lineNo });
    out.push(`${key}=${line.slice(eq + 1)}`);
  });

  return { sections, normalized: out.join('\n') };
}

/** A `[name]` line (with an optional comment after it): a known section, not seen before. */
function scanSectionHeader(file: string, trimmed: string, lineNo: number, sections: readonly ScannedSection[]): ScannedSection {
  const header = /^\[([^\]]*)\]\s*(?:[;#].*)?$/.exec(trimmed);
  if (!header) {
    throw new ConfigError(
      { file },
      `expected a section header like [node] on line ${lineNo}, got ${quote(trimmed)}`,
    );
  }
  const name = header[1]!.trim();
  if (!isSectionName(name)) {
    const hint = name.includes('.') ? ' (sections do not nest)' : suggestion(name, SECTION_NAMES, (s) => `[${s}]`);
    throw new ConfigError(
      { file, section: name },
      `expected one of the sections ${SECTION_NAMES.map((s) => `[${s}]`).join(', ')}, got an unknown section${hint}`,
    );
  }
  const previous = sections.find((s) => s.name === name);
  if (previous) {
    throw new ConfigError(
      { file, section: name },
      `expected the section once, got it twice (lines ${previous.line} and ${lineNo}); merge them`,
    );
  }
  return { name, line: lineNo, keys: [] };
}

function isSectionName(name: string): name is SectionName {
  return Object.hasOwn(SECTION_KEYS, name);
}

function checkKeyName(file: string, section: SectionName, key: string): void {
  if (key.endsWith('[]')) {
    throw new ConfigError(
      { file, section, key },
      `expected a plain key, got an array key ("key[]" is not supported; give the key once)`,
    );
  }
  const known = SECTION_KEYS[section];
  if (known === 'node-names') {
    if (!NODE_NAME.test(key) || key === '__proto__') {
      throw new ConfigError({ file, section, key }, `expected a node name of 1-64 letters, digits, ".", "_" or "-", got ${quote(key)}`);
    }
    return;
  }
  if (known === 'folder-names') {
    if (!FOLDER_NAME.test(key)) {
      throw new ConfigError(
        { file, section, key },
        `expected a folder name of 1-64 letters, digits, ".", "_" or "-", not starting with ".", got ${quote(key)}`,
      );
    }
    if (key === '__proto__') {
      throw new ConfigError({ file, section, key }, `expected a folder name, got a reserved name`);
    }
    return;
  }
  if (!known.includes(key)) {
    throw new ConfigError(
      { file, section, key },
      `expected one of the keys ${known.join(', ')}, got an unknown key${suggestion(key, known, (k) => k)}`,
    );
  }
}

/**
 * `ini` cuts a value at the first unescaped `;` or `#`. The SPEC's own example uses inline
 * comments, so they work, but only after whitespace: `~/C#code` must not silently become `~/C`.
 */
function checkInlineComment(file: string, section: SectionName, key: string, rawValue: string): void {
  if (rawValue.length > 1 && isQuoted(rawValue)) return;
  if (/^["']/.test(rawValue)) {
    throw new ConfigError(
      { file, section, key },
      `expected a quoted value to end with its quote (no comment may follow it), got ${quote(rawValue)}`,
    );
  }
  let escaped = false;
  for (let i = 0; i < rawValue.length; i++) {
    const c = rawValue[i]!;
    if (escaped) {
      escaped = false;
    } else if (c === '\\') {
      escaped = true;
    } else if (c === ';' || c === '#') {
      if (i > 0 && !/\s/.test(rawValue[i - 1]!)) {
        throw new ConfigError(
          { file, section, key },
          `expected "${c}" only to start a comment after a space (write "\\${c}" or quote the value to keep it), got ${quote(rawValue)}`,
        );
      }
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Step 2: decode the values with `ini` and cross-check them against the scan.

export type Values = Map<SectionName, Map<string, string>>;

export function decodeValues(file: string, scanned: ScannedSection[], normalized: string): Values {
  const decoded: Record<string, unknown> = ini.parse(normalized);
  const values: Values = new Map();
  for (const section of scanned) {
    const object = decoded[section.name];
    const keys = new Map<string, string>();
    for (const { key } of section.keys) {
      if (typeof object !== 'object' || object === null || !Object.hasOwn(object, key)) {
        throw new ConfigError({ file, section: section.name, key }, `expected a key the ini reader keeps, got one it dropped`);
      }
      const value: unknown = (object as Record<string, unknown>)[key];
      keys.set(key, valueAsText(file, section.name, key, value));
    }
    values.set(section.name, keys);
  }
  return values;
}

/** `ini` turns true/false/null into JSON values and JSON-decodes quoted values: back to text. */
function valueAsText(file: string, section: string, key: string, value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'boolean' || typeof value === 'number' || value === null) text = String(value);
  else {
    throw new ConfigError({ file, section, key }, `expected a single value, got ${JSON.stringify(value)}`);
  }
  const control = CONTROL_CHAR.exec(text);
  if (control) {
    const code = control[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw new ConfigError({ file, section, key }, `expected text, got the control character U+${code}`);
  }
  return text.trim();
}

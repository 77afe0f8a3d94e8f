import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CONFIG_DEFAULTS,
  ConfigError,
  configFileCandidates,
  findConfigFile,
  loadConfig,
  parseConfig,
  type Config,
  type ParseOptions,
  type Role,
} from '../src/cli/config.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = path.join(repo, 'test', 'fixtures', 'config');

/** The machine every fixture is parsed on (see test/fixtures/config/README.md). */
const ENV: ParseOptions = {
  home: '/home/tester',
  hostname: 'testhost',
  username: 'tester',
  sshDirListing: ['id_ecdsa', 'id_rsa', 'known_hosts'],
  cwd: '/work',
};

interface Fixture {
  name: string;
  text: string;
  opts: ParseOptions;
  expect: Record<string, unknown>;
  error: string | null;
}

function mergeDeep(target: Record<string, unknown>, source: Record<string, unknown>): Record<string, unknown> {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    if (isPlainObject(value) && isPlainObject(existing)) mergeDeep(existing, value);
    else target[key] = value;
  }
  return target;
}
function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readFixtures(kind: 'valid' | 'invalid'): Promise<Fixture[]> {
  const dir = path.join(fixtures, kind);
  const names = (await readdir(dir)).filter((n) => n.endsWith('.cfg')).sort();
  return Promise.all(
    names.map(async (name) => {
      const text = await readFile(path.join(dir, name), 'utf8');
      const opts: ParseOptions = { ...ENV };
      const expected: Record<string, unknown> = {};
      let error: string | null = null;
      for (const line of text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/)) {
        const directive = /^;@(\w+)(?: (.*))?$/.exec(line);
        if (!directive) continue;
        const [, kindOf, arg = ''] = directive;
        if (kindOf === 'role') opts.role = arg as Role;
        else if (kindOf === 'ssh') opts.sshDirListing = arg === '' ? [] : arg.split(',');
        else if (kindOf === 'expect') mergeDeep(expected, JSON.parse(arg) as Record<string, unknown>);
        else if (kindOf === 'error') error = arg;
        else throw new Error(`${name}: unknown directive ;@${kindOf}`);
      }
      return { name, text, opts, expect: expected, error };
    }),
  );
}

const validFixtures = await readFixtures('valid');
const invalidFixtures = await readFixtures('invalid');

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error, got none');
}

function expectDeepFrozen(value: unknown, at = 'config'): void {
  if (typeof value !== 'object' || value === null) return;
  expect(Object.isFrozen(value), `${at} is frozen`).toBe(true);
  for (const [key, child] of Object.entries(value)) expectDeepFrozen(child, `${at}.${key}`);
}

describe('parseConfig on fixture files', () => {
  it('has fixtures of both kinds, each with an expectation', () => {
    expect(validFixtures.length).toBeGreaterThan(10);
    expect(invalidFixtures.length).toBeGreaterThan(40);
    for (const f of validFixtures) expect(Object.keys(f.expect), f.name).not.toHaveLength(0);
    for (const f of invalidFixtures) expect(f.error, f.name).not.toBeNull();
  });

  it.each(validFixtures.map((f) => [f.name, f] as const))('valid/%s parses to the expected Config', (_name, f) => {
    const config = parseConfig(f.text, f.name, f.opts);
    expect(config).toMatchObject(f.expect);
    expectDeepFrozen(config);
  });

  it.each(invalidFixtures.map((f) => [f.name, f] as const))('invalid/%s is refused with its message', (_name, f) => {
    const error = catchError(() => parseConfig(f.text, f.name, f.opts));
    expect(error).toBeInstanceOf(ConfigError);
    const configError = error as ConfigError;
    expect(configError.message).toBe(f.error);
    expect(configError.code).toBe('CONFIG_INVALID');
    expect(configError.file).toBe(f.name);
    // The structured fields say the same as the message.
    const prefix = [f.name, configError.section === null ? null : `[${configError.section}]`, configError.key]
      .filter((p) => p !== null)
      .join(' ');
    expect(configError.message).toBe(`${prefix}: ${configError.detail}`);
  });
});

describe('error messages', () => {
  it('read exactly as STYLE.md shows, with the file as given', () => {
    const text = '[node]\nrole = client\n[server]\nhost = h\nport = abc\n[folders]\nd = /d\n';
    expect(() => parseConfig(text, 'systemsync.cfg', ENV)).toThrow('systemsync.cfg [server] port: expected an integer 1-65535, got "abc"');
    expect(() => parseConfig(text, '/etc/systemsync/systemsync.cfg', ENV)).toThrow(
      '/etc/systemsync/systemsync.cfg [server] port: expected an integer 1-65535, got "abc"',
    );
  });
});

describe('systemsync.cfg.example', () => {
  const examplePath = path.join(repo, 'systemsync.cfg.example');
  const exampleEnv: ParseOptions = { home: '/home/me', hostname: 'laptop', username: 'me', sshDirListing: ['id_ed25519'], cwd: '/' };

  it('parses as a client and shows every default', async () => {
    const text = await readFile(examplePath, 'utf8');
    const config = parseConfig(text, 'systemsync.cfg.example', { ...exampleEnv, role: 'client' });
    expect(config).toEqual({
      file: '/systemsync.cfg.example',
      node: { name: 'laptop', role: 'client', stateDir: '/home/me/.local/state/systemsync', logLevel: 'info' },
      server: {
        host: 'sync.example.org',
        port: 22,
        user: 'me',
        identity: '/home/me/.ssh/id_ed25519',
        knownHosts: '/home/me/.ssh/known_hosts',
        hostKeyCheck: 'yes',
        rpcSocket: '~/.local/state/systemsync/rpc.sock',
        connectTimeoutMs: 15_000,
      },
      rpc: { socket: '/home/me/.local/state/systemsync/rpc.sock' },
      folders: [
        { name: 'docs', path: '/home/me/Documents/shared' },
        { name: 'photos', path: '/srv/photos' },
      ],
      ignore: { patterns: [] },
      trash: { retentionDays: 30 },
      listen: null,
      clients: [],
      access: {},
      versions: { keep: 'staggered', maxAgeDays: 30, count: 5, maxBytes: null },
    } satisfies Config);
  });

  it('parses with every commented-out key uncommented, giving the same values as the defaults', async () => {
    const text = await readFile(examplePath, 'utf8');
    // Uncomment the "key = value" lines of the client part (before the server-only part).
    const clientPart = text.slice(0, text.indexOf('; ---- Server only'));
    const uncommented = clientPart.replace(/^;([a-z_]+ = .*)$/gm, '$1');
    expect(uncommented).not.toBe(clientPart);
    const config = parseConfig(uncommented, 'example', { ...exampleEnv, sshDirListing: [], hostname: undefined, username: undefined });
    expect(config.node).toEqual({ name: 'laptop', role: 'client', stateDir: '/home/me/.local/state/systemsync', logLevel: 'info' });
    expect(config.server).toMatchObject({ port: 22, user: 'sync', identity: '/home/me/.ssh/id_ed25519', hostKeyCheck: 'yes', connectTimeoutMs: 15_000 });
    expect(config.ignore.patterns).toEqual(['*.tmp', '*.swp', '.DS_Store', 'node_modules/']);
  });

  it('parses as a server after the changes its note describes', async () => {
    const text = await readFile(examplePath, 'utf8');
    const serverText = text
      .replace(/^role = client$/m, 'role = server')
      .replace(/^\[server\][\s\S]*?(?=^\[folders\])/m, '')
      .replace(/^;(\[rpc\]|\[versions\]|socket = .*|keep = .*|days = .*|max_size = .*)$/gm, '$1');
    const config = parseConfig(serverText, 'server.cfg', exampleEnv);
    expect(config.node.role).toBe('server');
    expect(config.server).toBeNull();
    expect(config.rpc.socket).toBe('/home/me/.local/state/systemsync/rpc.sock');
    expect(config.trash.retentionDays).toBe(30);
    expect(config.versions).toEqual({ keep: 'staggered', maxAgeDays: 30, count: 5, maxBytes: 10 * 1024 ** 3 });
    // Unchanged, the client example is refused on a server with a message that says why.
    expect(() => parseConfig(text, 'systemsync.cfg.example', { ...exampleEnv, role: 'server' })).toThrow(
      'systemsync.cfg.example [server]: expected no [server] section on a server (from --role), got one',
    );
  });
});

describe('defaults', () => {
  it('fill a minimal client config from CONFIG_DEFAULTS and the environment', () => {
    const config = parseConfig('[server]\nhost = hub\n[folders]\nd = /d\n', 'c.cfg', {
      ...ENV,
      role: 'client',
      sshDirListing: ['id_ed25519'],
    });
    const d = CONFIG_DEFAULTS;
    const home = (p: string) => p.replace(/^~/, '/home/tester');
    expect(config).toEqual({
      file: '/work/c.cfg',
      node: { name: 'testhost', role: 'client', stateDir: home(d.node.stateDir), logLevel: d.node.logLevel },
      server: {
        host: 'hub',
        port: d.server.port,
        user: 'tester',
        identity: `/home/tester/.ssh/${d.server.identityFiles[0]}`,
        knownHosts: home(d.server.knownHosts),
        hostKeyCheck: d.server.hostKeyCheck,
        rpcSocket: d.server.rpcSocket,
        connectTimeoutMs: d.server.connectTimeoutSeconds * 1000,
      },
      rpc: { socket: `${home(d.node.stateDir)}/${d.rpc.socketName}` },
      folders: [{ name: 'd', path: '/d' }],
      ignore: { patterns: [] },
      trash: { retentionDays: d.trash.retentionDays },
      listen: null,
      clients: [],
      access: {},
      versions: { ...d.versions },
    } satisfies Config);
  });

  it('are frozen themselves', () => {
    expectDeepFrozen(CONFIG_DEFAULTS, 'CONFIG_DEFAULTS');
  });

  const defaultCases: Array<{ description: string; text: string; opts: ParseOptions; message: string }> = [
    {
      description: 'a host name that is not a valid node name',
      text: '[folders]\nd = /d\n',
      opts: { ...ENV, role: 'server', hostname: 'my box' },
      message: 'x.cfg [node] name: expected 1-64 letters, digits, ".", "_" or "-", got "my box" (the host name, the default; set name)',
    },
    {
      description: 'no host name known and no name set',
      text: '[folders]\nd = /d\n',
      opts: { ...ENV, role: 'server', hostname: undefined },
      message: 'x.cfg [node] name: expected a node name (the host name is unknown), got nothing',
    },
    {
      description: 'no home directory to expand the default state_dir',
      text: '[folders]\nd = /d\n',
      opts: { ...ENV, role: 'server', home: undefined },
      message: 'x.cfg [node] state_dir: expected a home directory to expand "~" in, got none (HOME is unknown); write an absolute path',
    },
    {
      description: 'no local user name and no user set',
      text: '[server]\nhost = h\n[folders]\nd = /d\n',
      opts: { ...ENV, role: 'client', username: undefined },
      message: 'x.cfg [server] user: expected a user name (the local user name is unknown), got nothing',
    },
    {
      description: 'no ~/.ssh listing at all',
      text: '[server]\nhost = h\n[folders]\nd = /d\n',
      opts: { ...ENV, role: 'client', sshDirListing: undefined },
      message: 'x.cfg [server] identity: expected a key file, found none of ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa, ~/.ssh/id_rsa; set identity or create a key with "systemsync init"',
    },
    {
      description: 'a relative home directory',
      text: '[folders]\nd = /d\n',
      opts: { ...ENV, role: 'server', home: 'home/me' },
      message: 'x.cfg: expected an absolute home directory, got "home/me"',
    },
  ];
  it.each(defaultCases)('refuse $description', ({ text, opts, message }) => {
    const error = catchError(() => parseConfig(text, 'x.cfg', opts));
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(message);
  });

  it('need nothing from the environment when every value is given', () => {
    const text = '[node]\nname = n\nrole = client\nstate_dir = /s\n[server]\nhost = h\nuser = u\nidentity = /k\nknown_hosts = /kh\n[folders]\nd = /d\n';
    const config = parseConfig(text, '/etc/x.cfg');
    expect(config.file).toBe('/etc/x.cfg');
    expect(config.server).toMatchObject({ user: 'u', identity: '/k', knownHosts: '/kh' });
  });
});

describe('overrides', () => {
  const text = '[node]\nrole = client\n[folders]\nd = /d\n';
  it('--role server wins over role = client', () => {
    expect(parseConfig(text, 'x.cfg', { ...ENV, role: 'server' }).node.role).toBe('server');
  });
  it('without --role the file decides', () => {
    expect(() => parseConfig(text, 'x.cfg', ENV)).toThrow('x.cfg [server] host: expected');
  });
  it('explicit values win over every default', () => {
    const config = parseConfig(
      '[node]\nname = n1\nstate_dir = /st\nlog_level = error\n[rpc]\nsocket = ~/r.sock\n[folders]\nd = /d\n[trash]\nretention_days = 365\n',
      'x.cfg',
      { ...ENV, role: 'server' },
    );
    expect(config.node).toEqual({ name: 'n1', role: 'server', stateDir: '/st', logLevel: 'error' });
    expect(config.rpc.socket).toBe('/home/tester/r.sock');
    expect(config.trash.retentionDays).toBe(365);
  });
});

describe('the result', () => {
  it('is deeply frozen: writes throw', () => {
    const config = parseConfig('[node]\nrole = client\n[server]\nhost = h\n[folders]\na = /a\nb = /b\n[ignore]\npatterns = x\n', 'x.cfg', ENV);
    expectDeepFrozen(config);
    expect(() => {
      (config.node as { name: string }).name = 'other';
    }).toThrow(TypeError);
    expect(() => (config.folders as FolderList).push({ name: 'c', path: '/c' })).toThrow(TypeError);
    expect(() => (config.ignore.patterns as string[]).push('y')).toThrow(TypeError);
    expect(() => {
      (config.server as { port: number }).port = 1;
    }).toThrow(TypeError);
  });
});
type FolderList = Array<{ name: string; path: string }>;

describe('characters ini cannot carry', () => {
  it.each([
    ['NUL in a line', '[node]\nname = a\u0000b\n', 'x.cfg [node]: expected text, got the control character U+0000 on line 2'],
    ['a line separator', '[node]\nname = a\u2028b\n', 'x.cfg [node]: expected text, got the control character U+2028 on line 2'],
    ['NUL through a JSON-quoted value', '[node]\nname = "a\\u0000b"\n', 'x.cfg [node] name: expected text, got the control character U+0000'],
    ['an escape through a JSON-quoted path', '[folders]\nd = "/a\\u001bb"\n', 'x.cfg [folders] d: expected text, got the control character U+001B'],
  ])('refuses %s', (_d, text, message) => {
    const error = catchError(() => parseConfig(text, 'x.cfg', { ...ENV, role: 'server' }));
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(message);
  });
});

describe('loadConfig and findConfigFile (real files)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'systemsync-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a file and takes the environment from the options', async () => {
    const file = path.join(dir, 'a.cfg');
    await writeFile(file, '[node]\nrole = client\n[server]\nhost = h\n[folders]\nd = ~/d\n');
    const config = await loadConfig(file, { home: '/h', hostname: 'hn', username: 'un', sshDirListing: ['id_rsa'] });
    expect(config.file).toBe(file);
    expect(config.node.name).toBe('hn');
    expect(config.server).toMatchObject({ user: 'un', identity: '/h/.ssh/id_rsa' });
    expect(config.folders).toEqual([{ name: 'd', path: '/h/d' }]);
  });

  it('reads the machine environment when none is given', async () => {
    const file = path.join(dir, 'b.cfg');
    await writeFile(file, '[node]\nname = n\nrole = server\n[folders]\nd = ~/d\n');
    const config = await loadConfig(file);
    expect(config.folders[0]!.path).toBe(path.join(os.homedir(), 'd'));
    const withRole = await loadConfig(file, { role: 'server' });
    expect(withRole.node.role).toBe('server');
  });

  it('names a missing file', async () => {
    const file = path.join(dir, 'missing.cfg');
    const error = await loadConfig(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(`${file}: expected a readable config file, got an error: it does not exist`);
    expect((error as ConfigError).cause).toBeInstanceOf(Error);
  });

  it('refuses a directory and an oversized file', async () => {
    await expect(loadConfig(dir)).rejects.toThrow(`${dir}: expected a config file, got a directory`);
    const big = path.join(dir, 'big.cfg');
    await writeFile(big, `;${'x'.repeat(1024 * 1024)}\n`);
    await expect(loadConfig(big)).rejects.toThrow(`${big}: expected a config file of at most 1048576 bytes, got 1048578 bytes`);
  });

  it('finds --config as given, else ./systemsync.cfg, else ~/.config/systemsync/systemsync.cfg', async () => {
    const cwd = path.join(dir, 'cwd');
    const home = path.join(dir, 'home');
    await mkdir(cwd, { recursive: true });
    await mkdir(path.join(home, '.config', 'systemsync'), { recursive: true });
    expect(findConfigFile('rel/x.cfg', cwd, home)).toBe('rel/x.cfg');

    const [local, user] = configFileCandidates(cwd, home);
    expect(() => findConfigFile(undefined, cwd, home)).toThrow(
      `no config file found: looked for ${local} and ${user}; pass --config FILE or write one with "systemsync init"`,
    );
    await writeFile(user!, '');
    expect(findConfigFile(undefined, cwd, home)).toBe(user);
    await writeFile(local!, '');
    expect(findConfigFile(undefined, cwd, home)).toBe(local);
    expect(() => findConfigFile('', cwd, home)).toThrow('--config: expected a file name, got ""');
  });
});

describe('properties', () => {
  const realSections = ['node', 'server', 'rpc', 'folders', 'ignore', 'trash', 'versions'];
  const realKeys = [
    'name', 'role', 'state_dir', 'log_level', 'host', 'port', 'user', 'identity', 'known_hosts',
    'host_key_check', 'rpc_socket', 'connect_timeout', 'socket', 'patterns', 'retention_days',
    'docs', 'photos', '__proto__', 'constructor', 'a[]', 'x.y', '2024',
  ];
  const realValues = [
    'client', 'server', 'yes', 'accept-new', 'true', 'false', 'null', '22', '0', '65536', '-1', '1.5',
    '/srv/a', '/srv/a/b', '~/x', '~', '~bob', 'rel', '/', '"quoted ; value"', "'{\"a\":1}'", "'[1,2]'",
    '"', "'", 'a;b', 'a ; b', 'a#b', 'a \\; b', '*.tmp, build/', '', 'debug', 'hub', 'a=b',
  ];
  const text = fc.string({ unit: 'binary', maxLength: 30 });
  const line = fc.oneof(
    fc.constantFrom(...realSections).map((s) => `[${s}]`),
    fc.tuple(fc.constantFrom(...realSections), text).map(([s, rest]) => `[${s}]${rest}`),
    text.map((s) => `[${s}]`),
    fc.tuple(fc.constantFrom(...realKeys), fc.constantFrom(...realValues)).map(([k, v]) => `${k} = ${v}`),
    fc.tuple(fc.constantFrom(...realKeys), text).map(([k, v]) => `${k}=${v}`),
    fc.tuple(text, text).map(([k, v]) => `${k} = ${v}`),
    text.map((s) => `; ${s}`),
    text,
  );
  const eol = fc.constantFrom('\n', '\r\n', '\r', '\n\n');
  const garbage = fc.tuple(line, eol).map(([l, e]) => l + e);
  // Mostly well-formed sections with real keys and plausible values, so that some documents are
  // valid and the validation after the line scan is exercised too, not only the scan.
  /** Per section, its keys with plausible values, most of them valid. */
  const valuesOf: Record<string, Record<string, string[]>> = {
    node: {
      name: ['laptop', 'true', 'bad name'],
      role: ['client', 'server', 'clinet'],
      state_dir: ['/var/s', '~/.st', 'rel'],
      log_level: ['debug', 'info', 'loud'],
    },
    server: {
      host: ['hub', '10.0.0.1', 'a@b'],
      port: ['22', '2222', 'abc'],
      user: ['sync', 'a b'],
      identity: ['/k', '~/.ssh/k', 'k'],
      known_hosts: ['/kh', '~/kh', 'kh'],
      host_key_check: ['yes', 'accept-new', 'no'],
      rpc_socket: ['~/r.sock', '/r.sock', 'r'],
      connect_timeout: ['5', '0.5', '0'],
    },
    rpc: { socket: ['/run/r.sock', '~/r.sock', 'r'] },
    folders: { docs: ['/srv/docs', '~/docs', 'rel'], photos: ['/srv/photos', '/srv/docs/p'], a: ['/a'], 'b-2': ['/b', '/a/b'] },
    ignore: { patterns: ['*.tmp, x/', '', 'a;b'] },
    trash: { retention_days: ['30', '7', '0'] },
    versions: { keep: ['trash', 'simple', 'staggered', 'forever'], days: ['30', '0', '1.5'], count: ['5', '0'], max_size: ['10G', '512M', 'lots'] },
  };
  const keyLine = (sectionName: string) =>
    fc.oneof(
      {
        weight: 16,
        arbitrary: fc
          .constantFrom(...Object.keys(valuesOf[sectionName]!))
          .chain((k) => fc.tuple(fc.constant(k), fc.constantFrom(...valuesOf[sectionName]![k]!))),
      },
      fc.tuple(fc.constantFrom(...realKeys), fc.constantFrom(...realValues)),
      fc.tuple(fc.constantFrom(...realKeys), text),
    );
  const section = fc
    .constantFrom(...realSections)
    .chain((name) => fc.tuple(fc.constant(name), fc.uniqueArray(keyLine(name), { maxLength: 4, selector: ([k]) => k }), eol))
    .map(([name, keys, e]) => ({ name, text: [`[${name}]`, ...keys.map(([k, v]) => `${k} = ${v}`)].join(e) + e }));
  const document = fc
    .tuple(
      fc.uniqueArray(section, { maxLength: 6, selector: (s) => s.name }),
      fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, fc.array(garbage, { minLength: 1, maxLength: 2 })),
    )
    // Most documents have a [folders] section, which a valid config needs.
    .map(([sections, junk]) => [
      ...(sections.some((s) => s.name === 'folders') || junk.length > 0 ? [] : ['[folders]\ndocs = /srv/docs\n']),
      ...sections.map((s) => s.text),
      ...junk,
    ])
    .chain((parts) => fc.shuffledSubarray(parts, { minLength: parts.length, maxLength: parts.length }))
    .map((parts) => parts.join(''));
  const options = fc.record(
    {
      role: fc.constantFrom<Role>('client', 'server'),
      home: fc.oneof({ weight: 5, arbitrary: fc.constant('/home/t') }, fc.constantFrom('relative', '/')),
      hostname: fc.oneof({ weight: 5, arbitrary: fc.constant('host') }, fc.constant('bad name'), text),
      username: fc.oneof({ weight: 5, arbitrary: fc.constant('u') }, text),
      sshDirListing: fc.array(fc.constantFrom('id_rsa', 'id_ed25519', 'x')),
      cwd: fc.constant('/w'),
    },
    { requiredKeys: [] },
  );

  it('parseConfig returns a frozen Config or throws a ConfigError, never anything else', () => {
    const outcomes = { config: 0, error: 0 };
    fc.assert(
      fc.property(document, options, (doc, opts) => {
        let config: Config;
        try {
          config = parseConfig(doc, 'p.cfg', opts);
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          expect(error.message.startsWith('p.cfg')).toBe(true);
          outcomes.error++;
          return;
        }
        outcomes.config++;
        expectDeepFrozen(config);
        expect(config.folders.length).toBeGreaterThan(0);
        if (opts.role !== undefined) expect(config.node.role).toBe(opts.role);
        expect(config.server === null).toBe(config.node.role === 'server');
        for (const folder of config.folders) {
          expect(folder.path.startsWith('/')).toBe(true);
          for (const other of config.folders) {
            if (other !== folder) expect(other.path.startsWith(folder.path === '/' ? '/' : `${folder.path}/`)).toBe(false);
          }
        }
      }),
      { numRuns: 3000 },
    );
    // Both outcomes happen, so both paths were exercised.
    expect(outcomes.config).toBeGreaterThan(0);
    expect(outcomes.error).toBeGreaterThan(0);
  });

  it('keeps valid folders in file order with their normalised paths', () => {
    const folderName = fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}$/).filter((n) => n !== '__proto__');
    fc.assert(
      fc.property(fc.uniqueArray(folderName, { minLength: 1, maxLength: 8 }), (names) => {
        const body = names.map((n, i) => `${n} = /data/${i}/${n}/`).join('\n');
        const config = parseConfig(`[folders]\n${body}\n`, 'p.cfg', { ...ENV, role: 'server' });
        expect(config.folders).toEqual(names.map((n, i) => ({ name: n, path: `/data/${i}/${n}` })));
      }),
      { numRuns: 300 },
    );
  });
});

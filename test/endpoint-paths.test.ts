/**
 * The embedded endpoint's pure rules: where an SFTP path lands (locate) and which folders a
 * client may use ([access]).
 */
import { describe, expect, it } from 'vitest';
import { isFolderAllowed } from '../src/core/access.js';
import { locate } from '../src/endpoint/sftp.js';
import { isEmbeddedEndpointIdent, ENDPOINT_IDENT } from '../src/endpoint/server.js';

const folders = [
  { name: 'docs', root: '/srv/docs' },
  { name: 'private', root: '/srv/private' },
];
const policy = { folders, isAllowed: (name: string) => name !== 'private' };

describe('locate', () => {
  it.each([
    { description: 'a file in an allowed folder', path: '/srv/docs/a/b.txt', expected: { area: 'content', rel: 'a/b.txt', folder: 'docs' } },
    { description: 'the folder root', path: '/srv/docs', expected: { area: 'root', rel: '', folder: 'docs' } },
    { description: 'the root with a trailing slash', path: '/srv/docs/', expected: { area: 'root', rel: '', folder: 'docs' } },
    { description: 'the tmp dir', path: '/srv/docs/.systemsync/tmp', expected: { area: 'tmpdir', rel: '.systemsync/tmp', folder: 'docs' } },
    { description: 'an upload in tmp', path: '/srv/docs/.systemsync/tmp/up-1.part', expected: { area: 'tmp', rel: '.systemsync/tmp/up-1.part', folder: 'docs' } },
  ])('places $description', ({ path, expected }) => {
    const where = locate(path, policy);
    expect(where.ok).toBe(true);
    if (!where.ok) return;
    expect({ area: where.area, rel: where.rel, folder: where.folder.name }).toEqual(expected);
  });

  it.each([
    { description: 'a path outside every folder', path: '/etc/passwd', reason: /outside the folders/ },
    { description: 'a sibling whose name starts like a folder', path: '/srv/docs2/x', reason: /outside the folders/ },
    { description: 'a ".." escape', path: '/srv/docs/../private/x', reason: /normal form/ },
    { description: 'a "." segment', path: '/srv/docs/./x', reason: /normal form/ },
    { description: 'a double slash', path: '/srv/docs//x', reason: /normal form/ },
    { description: 'a relative path', path: 'docs/x', reason: /absolute/ },
    { description: 'a NUL byte', path: '/srv/docs/x\0y', reason: /not a path/ },
    { description: 'a folder not in [access]', path: '/srv/private/x', reason: /folder private is not in this client's \[access\]/ },
    { description: 'the trash', path: '/srv/docs/.systemsync/trash/x', reason: /belongs to the server/ },
    { description: 'the marker dir', path: '/srv/docs/.systemsync', reason: /belongs to the server/ },
    { description: 'a subdirectory of tmp', path: '/srv/docs/.systemsync/tmp/a/b', reason: /belongs to the server/ },
  ])('refuses $description', ({ path, reason }) => {
    const where = locate(path, policy);
    expect(where.ok).toBe(false);
    if (where.ok) return;
    expect(where.reason).toMatch(reason);
  });
});

describe('isFolderAllowed', () => {
  const access = { photos: ['laptop'] };
  it.each([
    { folder: 'photos', node: 'laptop', expected: true },
    { folder: 'photos', node: 'desk', expected: false },
    { folder: 'docs', node: 'desk', expected: true },
    { folder: 'constructor', node: 'desk', expected: true },
  ])('$folder for $node: $expected', ({ folder, node, expected }) => {
    expect(isFolderAllowed(access, folder, node)).toBe(expected);
  });
});

describe('isEmbeddedEndpointIdent', () => {
  it.each([
    { ident: `SSH-2.0-${ENDPOINT_IDENT}`, expected: true },
    { ident: 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3', expected: false },
    { ident: 'SSH-2.0-OpenSSH_9.9', expected: false },
    { ident: '', expected: false },
  ])('$ident: $expected', ({ ident, expected }) => {
    expect(isEmbeddedEndpointIdent(ident)).toBe(expected);
  });
});

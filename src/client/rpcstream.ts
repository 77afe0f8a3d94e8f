/**
 * The client's way to the server daemon's RPC stream, whichever kind of server it reached: the
 * embedded endpoint (told apart by its identification line) offers it as a subsystem; through a
 * system sshd it is a forwarded stream to `[server] rpc_socket`.
 */
import type { Duplex } from 'node:stream';
import { isEmbeddedEndpointIdent } from '../endpoint/server.js';
import { RPC_SUBSYSTEM } from '../endpoint/policy.js';
import type { SshSession } from '../ssh/transfer.js';

export interface RpcStream {
  stream: Duplex;
  /** "the embedded endpoint" or the socket path on the server. */
  via: string;
  isEmbedded: boolean;
}

/** Opens the RPC stream on `ssh`. `rpcSocket` (absolute, or `~/` for the SSH user's home) is used with a system sshd only. */
export async function openRpcStream(ssh: SshSession, rpcSocket: string): Promise<RpcStream> {
  if (isEmbeddedEndpointIdent(ssh.serverIdent)) {
    return { stream: await ssh.openSubsystem(RPC_SUBSYSTEM), via: 'the embedded endpoint', isEmbedded: true };
  }
  const socketPath = rpcSocket.startsWith('~/') ? `${(await ssh.realpath('.')).replace(/\/$/, '')}/${rpcSocket.slice(2)}` : rpcSocket;
  return { stream: await ssh.openUnixStream(socketPath), via: socketPath, isEmbedded: false };
}

/**
 * What a session on the embedded endpoint may ask for, and the refusal of everything else: the
 * `sftp` subsystem and the RPC subsystem are the only services; shell, exec, pty, X11, agent
 * forwarding, environment, signals, TCP and Unix-socket forwarding (both directions) are refused
 * with one log line each.
 */
import type { Connection, Session } from 'ssh2';

/** The subsystem that carries the JSON-RPC stream (newline-delimited JSON) to the server daemon. */
export const RPC_SUBSYSTEM = 'systemsync-rpc';
/** Session channels one connection may have open at once (the client uses two: SFTP and RPC). */
export const MAX_SESSIONS = 8;

type Reject = (() => void) | undefined;

/** Refuses every session request but the subsystems, which `onSubsystem` answers. */
export function refuseSessionExtras(session: Session, refuse: (what: string) => void): void {
  const no = (what: string) => (_accept: unknown, reject: Reject) => {
    refuse(what);
    reject?.();
  };
  session.on('pty', no('a pty'));
  session.on('shell', no('a shell'));
  session.on('exec', (_accept: unknown, reject: Reject, info: { command: string }) => {
    refuse(`exec of ${JSON.stringify(info.command.slice(0, 200))}`);
    reject?.();
  });
  session.on('x11', no('X11 forwarding'));
  session.on('auth-agent', no('agent forwarding'));
  session.on('env', (_accept: unknown, reject: Reject, info: { key: string }) => {
    refuse(`setting the environment variable ${JSON.stringify(String(info.key).slice(0, 100))}`);
    reject?.();
  });
  session.on('signal', no('a signal'));
}

/** Refuses forwarding of every kind on the connection (channels and global requests). */
export function refuseForwarding(conn: Connection, refuse: (what: string) => void): void {
  conn.on('tcpip', (_accept: unknown, reject: Reject, info: { destIP: string; destPort: number }) => {
    refuse(`TCP forwarding to ${info.destIP}:${info.destPort}`);
    reject?.();
  });
  conn.on('openssh.streamlocal', (_accept: unknown, reject: Reject, info: { socketPath: string }) => {
    refuse(`Unix socket forwarding to ${JSON.stringify(info.socketPath)}`);
    reject?.();
  });
  conn.on('request', (_accept: unknown, reject: Reject, name: string, info: unknown) => {
    const detail =
      name === 'tcpip-forward' || name === 'cancel-tcpip-forward'
        ? ` of ${(info as { bindAddr: string }).bindAddr}:${(info as { bindPort: number }).bindPort}`
        : name.startsWith('streamlocal-forward') || name.startsWith('cancel-streamlocal')
          ? ` of ${JSON.stringify((info as { socketPath: string }).socketPath)}`
          : '';
    refuse(`remote forwarding (${name}${detail})`);
    reject?.();
  });
}

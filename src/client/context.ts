/**
 * What the parts of a client's folder may use. The pusher and the puller each get a narrow
 * context object with just what they need, never the folder or the client that owns them.
 */
import type { IgnoreMatcher } from '../core/ignore.js';
import type { Change } from '../core/types.js';
import type { UnansweredPushes } from '../core/unanswered.js';
import type { SerialLock } from '../node/lock.js';
import type { Logger } from '../node/log.js';
import { describeFsError } from '../node.js';
import { isPermanentFailure } from '../core/errors.js';
import type { RpcPeer } from '../rpc.js';
import type { SshSession } from '../ssh/transfer.js';
import type { ClientFolderState } from './clientstate.js';

/** Where a folder lives on the server (from `hello`). */
export interface RemoteFolder {
  root: string;
  tmp: string;
}

/** One folder's share of the connection to the server, for as long as that connection lasts. */
export interface FolderConnection {
  /** The SSH session: SFTP uploads and downloads. */
  ssh: SshSession;
  /** The RPC stream to the server daemon. */
  peer: RpcPeer;
  remote: RemoteFolder;
  /**
   * The server's head when this connection began: every version committed over this connection
   * is above it (the state's own versions begin at the first such head, `beginOwnVersions`).
   */
  sessionHead: number;
}

/** A transfer shown on the status board (and on a terminal) while it runs. */
export interface Transfer {
  progress(done: number): void;
  end(): void;
}

/** What the pusher and the puller both use of their folder. */
export interface FolderPartContext {
  readonly name: string;
  readonly root: string;
  readonly state: ClientFolderState;
  /** The folder lock: one push batch or pull page at a time. */
  readonly lock: SerialLock;
  readonly logger: Logger;
  /** The ignore rules in force (they change with `.syncignore`). */
  readonly ignore: IgnoreMatcher;
  /** The connection to sync over, or null (down, the client stopping, the folder not served). */
  connection(): FolderConnection | null;
  /** Why the folder is paused, or null; resumes a folder that came back (FolderBase). */
  refreshPresence(): Promise<string | null>;
  beginTransfer(p: string, direction: 'push' | 'pull', total: number): Transfer;
  /** Arm the timer that puts failed tasks back once their backoff is over. */
  scheduleRetry(): void;
  /** What pushes sent that no answer has settled yet (the pusher records, the puller settles). */
  readonly unanswered: UnansweredPushes<FolderConnection>;
}

export interface PushContext extends FolderPartContext {
  /** Apply a version from the server whatever the base says (a push answered stale or conflict). */
  pullIgnoringBase(conn: FolderConnection, change: Change): Promise<void>;
}

export interface PullContext extends FolderPartContext {
  /** This node's name: versions it made need no download. */
  readonly nodeName: string;
  readonly paused: string | null;
  schedulePush(): void;
  /** `.syncignore` was pulled: read the rules again. */
  reloadIgnore(): Promise<void>;
}

/** Words for a failure, and whether retrying can help. */
export function classify(err: unknown, op: 'push' | 'pull'): { message: string; permanent: boolean } {
  return { message: describeFsError(err), permanent: isPermanentFailure((err as { code?: unknown }).code, op) };
}

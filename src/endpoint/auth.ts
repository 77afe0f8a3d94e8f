/**
 * Public-key authentication against `[clients]`: the key that signs in names the node. No other
 * method is offered (no password, no keyboard-interactive, no host-based).
 */
import ssh2, { type AuthContext, type ParsedKey } from 'ssh2';
import type { ClientKeyConfig } from '../cli/config.js';
import { fingerprintSha256 } from '../ssh/knownhosts.js';

interface BoundKey {
  name: string;
  key: ParsedKey;
}

/** The keys of `[clients]`, looked up by their public blob. */
export class ClientKeys {
  private readonly byBlob = new Map<string, BoundKey>();

  constructor(clients: readonly ClientKeyConfig[]) {
    for (const client of clients) {
      const parsed = ssh2.utils.parseKey(`${client.type} ${client.blob}`);
      const key = Array.isArray(parsed) ? parsed[0] : parsed;
      // The config parser has already read every key; one it could read and ssh2 cannot now is a bug.
      if (key === undefined || key instanceof Error) throw new Error(`[clients] ${client.name}: unreadable key`);
      this.byBlob.set(key.getPublicSSH().toString('base64'), { name: client.name, key });
    }
  }

  get size(): number {
    return this.byBlob.size;
  }

  /** The node bound to this public key blob, or null. */
  nodeOf(blob: Buffer): string | null {
    return this.byBlob.get(blob.toString('base64'))?.name ?? null;
  }

  /**
   * Answers one authentication attempt. Calls `onAccepted(node)` when a bound key proved its
   * signature; `log` gets one line per refusal (an unknown key once per `logged` set; the "none"
   * probe every client starts with is not logged).
   */
  answer(ctx: AuthContext, peer: string, log: (line: string) => void, onAccepted: (node: string) => void, logged = new Set<string>()): void {
    if (ctx.method !== 'publickey') {
      if (ctx.method !== 'none') log(`refused ${ctx.method} authentication from ${peer}: only public keys listed in [clients] are accepted`);
      ctx.reject(['publickey']);
      return;
    }
    const bound = this.byBlob.get(ctx.key.data.toString('base64'));
    if (bound === undefined) {
      // A client may ask "would you take this key" before signing with it: log each key once.
      const fingerprint = fingerprintSha256(ctx.key.data);
      if (!logged.has(fingerprint)) {
        logged.add(fingerprint);
        log(`refused key ${ctx.key.algo} ${fingerprint} from ${peer} (user "${ctx.username}"): it is not in [clients]`);
      }
      ctx.reject(['publickey']);
      return;
    }
    if (ctx.signature === undefined) {
      ctx.accept();
      return;
    }
    if (ctx.blob === undefined || bound.key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) {
      log(`refused key of ${bound.name} from ${peer}: the signature does not verify`);
      ctx.reject(['publickey']);
      return;
    }
    onAccepted(bound.name);
    ctx.accept();
  }
}

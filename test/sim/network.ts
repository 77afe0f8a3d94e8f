/**
 * In-memory transport between clients and the server: one link per client connection, carrying
 * requests (RPC calls and SFTP transfers), their answers and the server's notifications. Each
 * direction of a link is FIFO (one SSH connection is one TCP stream) with a random delay; the
 * server handles requests concurrently, so answers may come back in another order, and links
 * of different clients are independent. A cut drops everything in flight on that link.
 */
import type { Rng } from './prng.js';
import { type Proc, type Scheduler, waitUntil } from './scheduler.js';

export class LinkDown extends Error {
  readonly code = 'ECONNRESET';
  constructor(what: string) {
    super(`connection lost (${what})`);
  }
}

export type Handler = (link: Link, method: string, params: unknown) => Proc<unknown>;

interface Pending {
  done: boolean;
  value?: unknown;
  error?: Error;
}

export class Link {
  up = true;
  private lastToServer = 0;
  private lastToClient = 0;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  onNotify: (method: string, params: unknown) => void = () => undefined;

  constructor(
    readonly id: number,
    readonly client: string,
    private readonly net: Network,
    private readonly serve: Handler,
  ) {}

  private deliveryTime(toServer: boolean): number {
    const at = this.net.sched.now + this.net.rng.int(6);
    if (toServer) return (this.lastToServer = Math.max(at, this.lastToServer));
    return (this.lastToClient = Math.max(at, this.lastToClient));
  }

  /** Client side: send a request and wait for its answer; throws LinkDown when the link is cut. */
  *request(method: string, params: unknown): Proc<unknown> {
    if (!this.up) throw new LinkDown(method);
    const id = this.nextId++;
    const slot: Pending = { done: false };
    this.net.requests.set(`${this.id}:${id}`, `${this.client} ${method} on link ${this.id}`);
    this.pending.set(id, slot);
    this.net.sched.at(this.deliveryTime(true), 'net', () => {
      if (!this.up) return;
      this.net.sched.spawn('server', `handle ${method}`, this.handle(id, method, params));
    });
    yield* waitUntil(() => slot.done || !this.up);
    this.pending.delete(id);
    this.net.requests.delete(`${this.id}:${id}`);
    if (!slot.done) throw new LinkDown(method);
    if (slot.error !== undefined) throw slot.error;
    return slot.value;
  }

  private *handle(id: number, method: string, params: unknown): Proc {
    let value: unknown;
    let error: Error | undefined;
    try {
      value = yield* this.serve(this, method, params);
    } catch (err) {
      error = err as Error;
    }
    if (!this.up) return;
    this.net.sched.at(this.deliveryTime(false), 'net', () => {
      const slot = this.pending.get(id);
      if (!this.up || slot === undefined) return;
      slot.done = true;
      slot.value = value;
      slot.error = error;
    });
  }

  /** Server side: a notification to the client, in order with the answers. */
  notify(method: string, params: unknown): void {
    if (!this.up) return;
    this.net.sched.at(this.deliveryTime(false), 'net', () => {
      if (this.up) this.onNotify(method, params);
    });
  }

  cut(): void {
    this.up = false;
  }

  describe(): string {
    return `link ${this.id} of ${this.client} ${this.up ? 'up' : 'cut'}, ${this.pending.size} request(s) waiting`;
  }
}

export class Network {
  private nextLink = 1;
  readonly links = new Set<Link>();
  /** Requests whose sender still waits (for failure reports). */
  readonly requests = new Map<string, string>();

  constructor(
    readonly sched: Scheduler,
    readonly rng: Rng,
  ) {}

  open(client: string, serve: Handler): Link {
    const link = new Link(this.nextLink++, client, this, serve);
    this.links.add(link);
    return link;
  }

  /** Cut every live link of `client` (or every link, for a server crash). */
  cut(client: string | null): void {
    for (const link of this.links) {
      if (client === null || link.client === client) link.cut();
    }
    for (const link of [...this.links]) if (!link.up) this.links.delete(link);
  }
}

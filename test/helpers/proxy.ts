/**
 * A TCP proxy on 127.0.0.1 for tests: put it between a client and a server to cut the link
 * mid-transfer, refuse reconnects for a while, or add latency.
 */
import net from 'node:net';

export interface TestProxy {
  /** The port the proxy listens on (127.0.0.1). */
  port: number;
  /** Destroys every live connection (both sides) and refuses new ones until `restore()`. */
  cut(): void;
  /** Accepts and forwards new connections again. */
  restore(): void;
  /** Delays every forwarded chunk by `ms` in each direction (order is kept). 0 turns it off. */
  setLatency(ms: number): void;
  /** Bytes forwarded so far: up = client → target, down = target → client. */
  bytesForwarded(): { up: number; down: number };
  /** Number of connections currently forwarded. */
  connections(): number;
  /** Destroys every connection and stops listening. */
  close(): Promise<void>;
}

interface Pipe {
  client: net.Socket;
  target: net.Socket;
}

/** Starts a proxy forwarding 127.0.0.1:<port> to `targetHost` (default 127.0.0.1):`targetPort`. */
export async function startProxy(options: { targetPort: number; targetHost?: string }): Promise<TestProxy> {
  const targetHost = options.targetHost ?? '127.0.0.1';
  let refusing = false;
  let latencyMs = 0;
  const bytes = { up: 0, down: 0 };
  const pipes = new Set<Pipe>();

  /** Forwards from one socket to the other in order, honouring latency and backpressure. */
  const forward = (from: net.Socket, to: net.Socket, direction: 'up' | 'down'): void => {
    const queue: Array<{ chunk: Buffer; due: number }> = [];
    let pumping = false;
    let ended = false;
    const pump = (): void => {
      if (pumping) return;
      const head = queue[0];
      if (head === undefined) {
        if (ended && !to.destroyed) to.end();
        return;
      }
      const wait = head.due - Date.now();
      if (wait > 0) {
        pumping = true;
        setTimeout(() => {
          pumping = false;
          pump();
        }, wait);
        return;
      }
      queue.shift();
      if (to.destroyed) return;
      bytes[direction] += head.chunk.length;
      const ok = to.write(head.chunk);
      if (!ok) {
        from.pause();
        pumping = true;
        to.once('drain', () => {
          pumping = false;
          from.resume();
          pump();
        });
        return;
      }
      pump();
    };
    from.on('data', (chunk: Buffer) => {
      queue.push({ chunk, due: Date.now() + latencyMs });
      pump();
    });
    from.on('end', () => {
      ended = true;
      pump();
    });
  };

  const server = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    client.pause();
    const target = net.connect({ host: targetHost, port: options.targetPort });
    const pipe: Pipe = { client, target };
    pipes.add(pipe);
    const teardown = (): void => {
      pipes.delete(pipe);
      client.destroy();
      target.destroy();
    };
    client.on('error', teardown);
    target.on('error', teardown);
    client.on('close', teardown);
    target.on('close', teardown);
    target.on('connect', () => {
      forward(client, target, 'up');
      forward(target, client, 'down');
      client.resume();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('startProxy: no TCP address');

  const destroyAll = (): void => {
    for (const p of [...pipes]) {
      p.client.destroy();
      p.target.destroy();
      pipes.delete(p);
    }
  };

  return {
    port: address.port,
    cut() {
      refusing = true;
      destroyAll();
    },
    restore() {
      refusing = false;
    },
    setLatency(ms: number) {
      if (!Number.isFinite(ms) || ms < 0) throw new Error(`setLatency: expected a non-negative number of ms, got ${ms}`);
      latencyMs = ms;
    },
    bytesForwarded() {
      return { ...bytes };
    },
    connections() {
      return pipes.size;
    },
    close() {
      refusing = true;
      destroyAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

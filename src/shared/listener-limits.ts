/**
 * The limits every HTTP listener of the agent (health, /metrics) applies, so
 * that connections nobody closes cannot use up the process's file
 * descriptors, which the save command needs too.
 */
import { createServer, type RequestListener, type Server } from 'node:http';

export interface ListenerLimits {
  /** Open connections at most; one more is closed as soon as it is accepted. */
  maxConnections: number;
  /** A connection with no traffic for this long is closed (idle keep-alive, a peer that sends nothing). */
  idleTimeoutMs: number;
  /** A request's headers must have arrived within this long. */
  headersTimeoutMs: number;
  /** A whole request must have arrived within this long. */
  requestTimeoutMs: number;
}

/** A probe or a Prometheus scrape needs a handful of connections; 64 leaves room for several at once. */
export const LISTENER_LIMITS: ListenerLimits = { maxConnections: 64, idleTimeoutMs: 5000, headersTimeoutMs: 5000, requestTimeoutMs: 10000 };

/** http.createServer with the limits applied. */
export function createLimitedServer(handler: RequestListener, limits: ListenerLimits = LISTENER_LIMITS): Server {
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
      // How often the two timeouts above are checked (Node's default, 30 s, would let them run long).
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
    },
    handler,
  );
  server.maxConnections = limits.maxConnections;
  // A socket idle this long is destroyed (there is no 'timeout' listener), whatever its request's state.
  server.timeout = limits.idleTimeoutMs;
  // And by our own timer on every accepted socket as well: in rare CI runs (Node 20 and 22) one of
  // several idle connections outlived server.timeout by seconds; an idle socket must not hold a descriptor.
  server.on('connection', (socket) => {
    socket.setTimeout(limits.idleTimeoutMs);
    socket.once('timeout', () => socket.destroy());
  });
  return server;
}

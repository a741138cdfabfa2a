import type http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { createExchanger } from './exchange.js';
import { createWebSockets } from './websocket.js';
import type { ForwardTarget } from './target.js';

export type { ForwardTarget } from './target.js';
export { createObserver, type Exchange, type Observer } from './observe.js';

export interface ForwarderOptions {
  trustProxy: boolean;
  upstreamTimeoutMs: number;
  maxBodyBytes: number;
  metrics: Metrics;
  logger: Logger;
}

/**
 * The session hot path: plain requests through undici, WebSocket upgrades through http-proxy-3.
 * The worker never sees the session id, API credentials (stripped by the http layer) or
 * hop-by-hop headers, and gets X-Forwarded-* from the router.
 */
export function createForwarder(options: ForwarderOptions) {
  const exchanger = createExchanger(options);
  const sockets = createWebSockets(options.trustProxy, options.metrics, options.logger);
  return {
    web: (req: http.IncomingMessage, res: http.ServerResponse, target: ForwardTarget) => exchanger.web(req, res, target),
    hold: (req: http.IncomingMessage) => exchanger.hold(req),
    ws: (req: http.IncomingMessage, socket: Duplex, head: Buffer, target: ForwardTarget) => sockets.ws(req, socket, head, target),
    /** Upgraded WebSockets open now: the HTTP server does not count them as connections. */
    openWebSockets: () => sockets.openCount(),
    endStreams: () => exchanger.endStreams(),
    close(): void {
      exchanger.close();
      sockets.close();
    },
  };
}

export type Forwarder = ReturnType<typeof createForwarder>;

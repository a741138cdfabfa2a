import http from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { sendSocketError } from '../http/respond.js';
import { rewriteRequestHeaders } from './headers.js';
import type { ForwardTarget } from './target.js';

/**
 * WebSocket upgrades go through http-proxy-3, which does the handshake and splices the two
 * sockets. Once the worker has answered the handshake (101, or a plain HTTP refusal relayed to
 * the client), the client's socket carries that answer: an error after that point must close the
 * socket, never write an HTTP status line into a WebSocket stream.
 */
export function createWebSockets(trustProxy: boolean, metrics: Metrics, logger: Logger) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024, scheduling: 'lifo' });
  const proxy = createProxyServer({ agent, ws: true, xfwd: false });
  /** Upgraded client sockets: the HTTP server no longer tracks them, so close() must. */
  const open = new Set<Duplex>();
  /** Client sockets the worker has started answering. */
  const answered = new WeakSet<Duplex>();
  const targets = new WeakMap<Duplex, ForwardTarget>();

  proxy.on('proxyReqWs', (proxyReq, _req, socket) => {
    const mark = (status: number) => {
      answered.add(socket);
      targets.get(socket)?.exchange.answered(status);
    };
    proxyReq.once('upgrade', () => mark(101));
    proxyReq.once('response', (res: http.IncomingMessage) => mark(res.statusCode ?? 0));
  });

  // http-proxy-3 re-emits a client socket's errors here and throws them when no one listens,
  // which would end the process: a client that resets its WebSocket (a closed tab, a dropped
  // network) is ordinary, and only that socket must go.
  proxy.on('error', (err, _req, socket) => {
    logger.debug({ err: { code: (err as NodeJS.ErrnoException).code, message: err.message } }, 'websocket client socket error');
    socket.destroy();
  });

  proxy.on('open', (proxySocket) => {
    metrics.websocketsActive.inc();
    proxySocket.once('close', () => metrics.websocketsActive.dec());
  });

  function ws(req: http.IncomingMessage, socket: Duplex, head: Buffer, target: ForwardTarget): void {
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      target.exchange.close();
      target.done();
    });
    rewriteRequestHeaders(req, true, trustProxy);
    req.url = target.url;
    targets.set(socket, target);
    proxy.ws(req, socket, head, { target: { host: target.endpoint.host, port: target.endpoint.port } }, (err) => {
      const e = err as NodeJS.ErrnoException;
      logger.warn({ err: { code: e.code, message: e.message }, upgraded: answered.has(socket) }, 'websocket proxy error');
      if (answered.has(socket) || !socket.writable) {
        socket.destroy();
        return;
      }
      const mapped = target.failure(e);
      target.exchange.answered(mapped.status);
      sendSocketError(socket, mapped);
    });
  }

  function close(): void {
    for (const socket of open) socket.destroy();
    agent.destroy();
    proxy.close();
  }

  return { ws, close, openCount: () => open.size };
}

import http from 'node:http';
import type { Duplex } from 'node:stream';
import { Transform } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { errors, type WarmpoolError } from './errors.js';
import type { Endpoint } from './pool/types.js';
import type { Metrics } from './metrics.js';
import type { Logger } from './log.js';

/** Headers that describe one connection, not the message (RFC 9110 7.6.1), plus the proxy ones. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade'];

export interface ProxyOptions {
  sessionCookie: string;
  trustProxy: boolean;
  upstreamTimeoutMs: number;
  maxBodyBytes: number;
  metrics: Metrics;
  logger: Logger;
}

export interface ProxyTarget {
  endpoint: Endpoint;
  /** Path and query the worker sees. */
  url: string;
  /** Headers added to the client's response (the cookie of an implicit session). */
  responseHeaders?: Record<string, string>;
  /** Called once when the exchange is over, however it ended. */
  done: () => void;
  /**
   * Turns a transport failure into the client's error: a refused connection may mean the
   * worker died, which the session layer reports as 410 `session_lost`.
   */
  failure: (err: NodeJS.ErrnoException) => WarmpoolError;
}

export function sendError(res: http.ServerResponse, err: WarmpoolError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(err.toJSON());
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  if (err.retryAfterS !== undefined) headers['retry-after'] = err.retryAfterS;
  res.writeHead(err.status, headers);
  res.end(body);
}

/** An HTTP error on a socket that asked for an upgrade, which has no ServerResponse. */
export function sendSocketError(socket: Duplex, err: WarmpoolError): void {
  const body = JSON.stringify(err.toJSON());
  const retry = err.retryAfterS !== undefined ? `retry-after: ${err.retryAfterS}\r\n` : '';
  socket.end(
    `HTTP/1.1 ${err.status} ${http.STATUS_CODES[err.status] ?? 'Error'}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\n${retry}connection: close\r\n\r\n${body}`,
  );
}

/**
 * The session hot path: forwards a request or a WebSocket upgrade to a worker with
 * http-proxy-3 over keep-alive connections. It rewrites what the worker must not see (the
 * session token, API credentials, hop-by-hop headers) and sets X-Forwarded-*.
 */
export function createProxy(options: ProxyOptions) {
  const { metrics, logger } = options;
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024, scheduling: 'lifo' });
  const proxy = createProxyServer({ agent, ws: true, xfwd: false });
  const started = new WeakMap<http.IncomingMessage, { at: bigint; target: ProxyTarget }>();
  /** The upstream request of each client request, or 'cut' when it must die as soon as it exists. */
  const upstreamOf = new WeakMap<http.IncomingMessage, http.ClientRequest | 'cut'>();
  const cookiePrefix = `${options.sessionCookie}=`;
  /** Upgraded client sockets: the HTTP server no longer tracks them, so close() must. */
  const upgraded = new Set<Duplex>();

  proxy.on('proxyReq', (proxyReq, req) => {
    if (upstreamOf.get(req) === 'cut') {
      proxyReq.destroy();
      return;
    }
    upstreamOf.set(req, proxyReq);
    proxyReq.setTimeout(options.upstreamTimeoutMs, () => {
      proxyReq.destroy(Object.assign(new Error('upstream timeout'), { code: 'ETIMEDOUT' }));
    });
  });

  proxy.on('proxyRes', (proxyRes, req) => {
    const entry = started.get(req);
    if (!entry) return;
    metrics.proxyTtfb.observe(Number(process.hrtime.bigint() - entry.at) / 1e9);
    metrics.proxyRequests.inc({ code: String(proxyRes.statusCode ?? 0) });
    for (const name of HOP_BY_HOP) delete proxyRes.headers[name];
    const extra = entry.target.responseHeaders;
    if (extra) {
      for (const [name, value] of Object.entries(extra)) {
        const key = name.toLowerCase();
        if (key === 'set-cookie') {
          const existing = proxyRes.headers['set-cookie'] ?? [];
          proxyRes.headers['set-cookie'] = [...existing, value];
        } else {
          proxyRes.headers[key] = value;
        }
      }
    }
  });

  proxy.on('open', (proxySocket) => {
    metrics.websocketsActive.inc();
    proxySocket.once('close', () => metrics.websocketsActive.dec());
  });

  function rewriteHeaders(req: http.IncomingMessage, upgrade: boolean): void {
    const h = req.headers;
    const connectionTokens = (h.connection ?? '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
    for (const name of [...HOP_BY_HOP, ...connectionTokens]) {
      if (upgrade && (name === 'connection' || name === 'upgrade')) continue;
      delete h[name];
    }
    delete h['x-session-id'];
    delete h.authorization;
    if (h.cookie) {
      const kept = h.cookie.split(';').map((c) => c.trim()).filter((c) => c && !c.startsWith(cookiePrefix));
      if (kept.length > 0) h.cookie = kept.join('; ');
      else delete h.cookie;
    }
    const remote = req.socket.remoteAddress ?? '';
    const forwardedFor = options.trustProxy && h['x-forwarded-for'] ? `${String(h['x-forwarded-for'])}, ${remote}` : remote;
    h['x-forwarded-for'] = forwardedFor;
    h['x-forwarded-proto'] = options.trustProxy && h['x-forwarded-proto'] ? h['x-forwarded-proto'] : (upgrade ? 'ws' : 'http');
    h['x-forwarded-host'] = options.trustProxy && h['x-forwarded-host'] ? h['x-forwarded-host'] : (h.host ?? '');
  }

  /**
   * A body without Content-Length is counted as it streams. Past the limit the client gets 413,
   * the rest of its body is read and dropped (so the connection stays usable), and the upstream
   * request is destroyed: the worker never acts on a truncated body.
   */
  function bodyLimiter(req: http.IncomingMessage, res: http.ServerResponse): Transform {
    let seen = 0;
    const limiter: Transform = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        seen += chunk.length;
        if (seen <= options.maxBodyBytes) return callback(null, chunk);
        if (!res.headersSent) {
          metrics.proxyRequests.inc({ code: '413' });
          sendError(res, errors.bodyTooLarge(options.maxBodyBytes));
        }
        req.unpipe(limiter);
        req.resume();
        cutUpstream(req);
        callback();
      },
    });
    return limiter;
  }

  function cutUpstream(req: http.IncomingMessage): void {
    const upstream = upstreamOf.get(req);
    if (upstream && upstream !== 'cut') upstream.destroy();
    else upstreamOf.set(req, 'cut');
  }

  function web(req: http.IncomingMessage, res: http.ServerResponse, target: ProxyTarget): void {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      target.done();
    };
    res.once('close', finish);
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > options.maxBodyBytes) {
      metrics.proxyRequests.inc({ code: '413' });
      sendError(res, errors.bodyTooLarge(options.maxBodyBytes));
      req.resume();
      return;
    }
    rewriteHeaders(req, false);
    req.url = target.url;
    started.set(req, { at: process.hrtime.bigint(), target });
    let buffer: Transform | undefined;
    if (declared === undefined && req.headers['transfer-encoding'] !== undefined) {
      buffer = bodyLimiter(req, res);
      req.pipe(buffer);
    }
    proxy.web(req, res, { target: { host: target.endpoint.host, port: target.endpoint.port }, ...(buffer ? { buffer } : {}) }, (err) => {
      const e = err as NodeJS.ErrnoException;
      if (res.writableEnded) return;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const mapped = e.code === 'ETIMEDOUT' ? errors.upstreamTimeout() : target.failure(e);
      metrics.proxyRequests.inc({ code: String(mapped.status) });
      logger.warn({ err: { code: e.code, message: e.message }, status: mapped.status }, 'proxy error');
      sendError(res, mapped);
    });
  }

  function ws(req: http.IncomingMessage, socket: Duplex, head: Buffer, target: ProxyTarget): void {
    let finished = false;
    upgraded.add(socket);
    socket.once('close', () => {
      upgraded.delete(socket);
      if (finished) return;
      finished = true;
      target.done();
    });
    rewriteHeaders(req, true);
    req.url = target.url;
    proxy.ws(req, socket, head, { target: { host: target.endpoint.host, port: target.endpoint.port } }, (err) => {
      const e = err as NodeJS.ErrnoException;
      logger.warn({ err: { code: e.code, message: e.message } }, 'websocket proxy error');
      if (socket.writable) sendSocketError(socket, target.failure(e));
    });
  }

  function close(): void {
    for (const socket of upgraded) socket.destroy();
    agent.destroy();
    proxy.close();
  }

  return { web, ws, close };
}

export type Proxy = ReturnType<typeof createProxy>;

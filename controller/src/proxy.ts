import http from 'node:http';
import type { Duplex } from 'node:stream';
import { Transform } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { Agent, type Dispatcher } from 'undici';
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

/** How long a socket answered by sendSocketError may stay open for its client to read the answer. */
const LINGER_MS = 2000;

/**
 * An HTTP error on a socket with no ServerResponse: one that asked for an upgrade or a CONNECT,
 * or that sent a request Node could not parse. Node no longer reads such a socket, so after the
 * answer it would never see the client's close and would keep the socket (and block a graceful
 * shutdown) forever. It is read and drained until the client closes, and destroyed after a
 * short linger at most; destroying it at once could reset the connection before the client
 * has read the answer.
 */
export function sendSocketError(socket: Duplex, err: WarmpoolError): void {
  const body = JSON.stringify(err.toJSON());
  const retry = err.retryAfterS !== undefined ? `retry-after: ${err.retryAfterS}\r\n` : '';
  socket.end(
    `HTTP/1.1 ${err.status} ${http.STATUS_CODES[err.status] ?? 'Error'}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\n${retry}connection: close\r\n\r\n${body}`,
  );
  socket.resume();
  const linger = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  socket.once('close', () => clearTimeout(linger));
}

/** undici's names for a worker that stayed silent too long. */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);

function origin(endpoint: Endpoint): string {
  return endpoint.host.includes(':') ? `http://[${endpoint.host}]:${endpoint.port}` : `http://${endpoint.host}:${endpoint.port}`;
}

/**
 * The session hot path. Plain requests are forwarded with undici's dispatcher over keep-alive
 * connections: `npm run bench` measured http-proxy-3 (Node's http client underneath) below
 * configurable-http-proxy's throughput and at 0.13-0.19x nginx's, and undici past both targets
 * (1.5x CHP, 0.3x nginx; see docs/benchmarks.md). WebSocket upgrades stay on http-proxy-3, which handles the upgrade
 * handshake and the socket splice. Either way the worker never sees the session token, API
 * credentials or hop-by-hop headers, and X-Forwarded-* is set.
 */
export function createProxy(options: ProxyOptions) {
  const { metrics, logger } = options;
  const dispatcher = new Agent({ connections: null, pipelining: 1 });
  const wsAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024, scheduling: 'lifo' });
  const wsProxy = createProxyServer({ agent: wsAgent, ws: true, xfwd: false });
  const cookiePrefix = `${options.sessionCookie}=`;
  /** Upgraded client sockets: the HTTP server no longer tracks them, so close() must. */
  const upgraded = new Set<Duplex>();

  // http-proxy-3 re-emits a client socket's errors here and throws them when no one listens,
  // which would end the process: a client that resets its WebSocket (a closed tab, a dropped
  // network) is ordinary, and only that socket must go.
  wsProxy.on('error', (err, _req, socket) => {
    logger.debug({ err: { code: (err as NodeJS.ErrnoException).code, message: err.message } }, 'websocket client socket error');
    socket.destroy();
  });

  wsProxy.on('open', (proxySocket) => {
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

  /** The worker's response headers as the client gets them: without hop-by-hop ones, with the session's own. */
  function responseHeaders(upstream: http.IncomingHttpHeaders, extra: Record<string, string> | undefined): http.OutgoingHttpHeaders {
    const out: http.OutgoingHttpHeaders = { ...upstream };
    const connectionTokens = String(upstream.connection ?? '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
    // Node frames the body for its own client (chunked, or close-delimited for HTTP/1.0).
    for (const name of [...HOP_BY_HOP, ...connectionTokens, 'transfer-encoding']) delete out[name];
    if (extra) {
      for (const [name, value] of Object.entries(extra)) {
        const key = name.toLowerCase();
        if (key === 'set-cookie') {
          const existing = upstream['set-cookie'] ?? [];
          out['set-cookie'] = [...(Array.isArray(existing) ? existing : [existing]), value];
        } else {
          out[key] = value;
        }
      }
    }
    return out;
  }

  /**
   * A body without Content-Length is counted as it streams. Past the limit the client gets 413,
   * the rest of its body is read and dropped (so the connection stays usable), and the upstream
   * request is aborted: the worker never acts on a truncated body.
   */
  function bodyLimiter(req: http.IncomingMessage, res: http.ServerResponse, cut: () => void): Transform {
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
        cut();
        callback();
      },
    });
    req.pipe(limiter);
    return limiter;
  }

  function web(req: http.IncomingMessage, res: http.ServerResponse, target: ProxyTarget): void {
    let finished = false;
    /** Set once the worker's response has ended or failed: nothing left to abort. */
    let settled = false;
    let upstream: Dispatcher.DispatchController | undefined;
    let cutBeforeStart = false;
    const cut = () => {
      if (upstream) upstream.abort(new Error('request cut by the proxy'));
      else cutBeforeStart = true;
    };
    res.once('close', () => {
      if (!settled) {
        // The client went away (or was answered early): stop the worker's side too.
        settled = true;
        cut();
      }
      if (finished) return;
      finished = true;
      target.done();
    });
    const h = req.headers;
    const declared = h['content-length'];
    const coding = h['transfer-encoding'];
    /** Answered here, before the worker is involved; the body is read and dropped. */
    const refuse = (err: WarmpoolError) => {
      settled = true;
      metrics.proxyRequests.inc({ code: String(err.status) });
      sendError(res, err);
      req.resume();
    };
    if (declared !== undefined && Number(declared) > options.maxBodyBytes) return refuse(errors.bodyTooLarge(options.maxBodyBytes));
    // Node has taken off the chunked framing; another coding under it (`gzip, chunked`) would
    // reach the worker as a body it has no way to know is encoded (RFC 9112 6.1: 501).
    if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked') return refuse(errors.unsupportedTransferCoding());
    rewriteHeaders(req, false);
    const chunked = declared === undefined && coding !== undefined;
    // undici frames the body itself, and Node has already answered any 100-continue.
    delete h['transfer-encoding'];
    delete h.expect;
    const body = chunked ? bodyLimiter(req, res, cut) : declared !== undefined && declared !== '0' ? req : null;
    const at = process.hrtime.bigint();

    const fail = (err: NodeJS.ErrnoException) => {
      settled = true;
      if (res.writableEnded || res.destroyed) return;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const mapped = TIMEOUT_CODES.has(err.code ?? '') ? errors.upstreamTimeout() : target.failure(err);
      metrics.proxyRequests.inc({ code: String(mapped.status) });
      logger.warn({ err: { code: err.code, message: err.message }, status: mapped.status }, 'proxy error');
      sendError(res, mapped);
    };

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(controller) {
        upstream = controller;
        if (cutBeforeStart) controller.abort(new Error('request cut by the proxy'));
      },
      onResponseStart(controller, statusCode, headers, statusMessage) {
        if (statusCode < 200) return;
        metrics.proxyTtfb.observe(Number(process.hrtime.bigint() - at) / 1e9);
        metrics.proxyRequests.inc({ code: String(statusCode) });
        const out = responseHeaders(headers, target.responseHeaders);
        if (statusMessage) res.writeHead(statusCode, statusMessage, out);
        else res.writeHead(statusCode, out);
        // A streamed reply (SSE) shows its status at once, not with its first token.
        if (headers['content-length'] === undefined) res.flushHeaders();
      },
      onResponseData(controller, chunk) {
        if (res.write(chunk) || controller.paused) return;
        controller.pause();
        res.once('drain', () => controller.resume());
      },
      onResponseEnd() {
        settled = true;
        res.end();
      },
      onResponseError(_controller, err) {
        fail(err as NodeJS.ErrnoException);
      },
    };
    try {
      dispatcher.dispatch({
        origin: origin(target.endpoint),
        path: target.url,
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        headers: h as Record<string, string | string[]>,
        body,
        headersTimeout: options.upstreamTimeoutMs,
        bodyTimeout: options.upstreamTimeoutMs,
      }, handler);
    } catch (err) {
      fail(err as NodeJS.ErrnoException);
    }
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
    wsProxy.ws(req, socket, head, { target: { host: target.endpoint.host, port: target.endpoint.port } }, (err) => {
      const e = err as NodeJS.ErrnoException;
      logger.warn({ err: { code: e.code, message: e.message } }, 'websocket proxy error');
      if (socket.writable) sendSocketError(socket, target.failure(e));
    });
  }

  function close(): void {
    for (const socket of upgraded) socket.destroy();
    void dispatcher.destroy();
    wsAgent.destroy();
    wsProxy.close();
  }

  return { web, ws, close };
}

export type Proxy = ReturnType<typeof createProxy>;

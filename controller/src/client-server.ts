import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Config } from './config.js';
import { clientErrorOf, errors, type WarmpoolError } from './errors.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { SessionWorker } from './pool/types.js';
import { sendError, sendSocketError, type Proxy, type ProxyTarget } from './proxy.js';
import { checkRequestTarget } from './request-target.js';
import { Sessions } from './sessions.js';
import { tokenMatcher } from './tokens.js';

export interface ClientServerDeps {
  config: Config;
  sessions: Sessions;
  proxy: Proxy;
  metrics: Metrics;
  logger: Logger;
}

/** A client's own request id is kept when it is short and plain, so logs can be joined across hops. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Gives the request an id (the client's, or a new one) that the worker also receives. */
function requestId(req: http.IncomingMessage): string {
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
  req.headers['x-request-id'] = id;
  return id;
}

/** `/sessions/{id}` and `/sessions/{id}/{rest}`, matched on the raw (undecoded) path. */
const SESSION_PATH = /^\/sessions\/([^/?#]+)(\/[^?#]*)?$/;

function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q) };
}

/**
 * The client port. Session traffic is dispatched here, before express: a request for
 * `/sessions/{id}/...`, or for any other path with a session header or cookie, goes straight to
 * the proxy. Only the small control API (`/sessions`, `/sessions/{id}`) goes through express.
 */
export function createClientServer(deps: ClientServerDeps): http.Server {
  const { config, sessions, proxy, logger } = deps;
  const authOn = config.API_TOKENS.length > 0;
  const tokenOk = tokenMatcher(config.API_TOKENS);
  const cookieName = config.SESSION_COOKIE;
  const lifetimeS = Math.ceil(config.SESSION_MAX_LIFETIME_S);

  /**
   * Whose limits a request counts against: its API token when auth is on, else its address.
   * Behind a trusted proxy that is the last X-Forwarded-For entry, the one the proxy appended:
   * entries before it are whatever the client sent, so keying on them would let a client pick
   * a fresh identity per request.
   */
  function clientOf(req: http.IncomingMessage): string {
    if (authOn) return Sessions.clientKey(`token:${bearer(req) ?? ''}`);
    const forwarded = config.TRUST_PROXY ? String(req.headers['x-forwarded-for'] ?? '').split(',').pop()?.trim() : '';
    return Sessions.clientKey(`addr:${forwarded || req.socket.remoteAddress || ''}`);
  }

  function bearer(req: http.IncomingMessage): string | undefined {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    return m?.[1];
  }

  function authorize(req: http.IncomingMessage): void {
    if (!authOn) return;
    const token = bearer(req);
    if (token === undefined || !tokenOk(token)) throw errors.unauthorized();
  }

  function sessionCookie(token: string): string {
    return `${cookieName}=${token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${lifetimeS}`;
  }

  function tokenFromRequest(req: http.IncomingMessage): string | undefined {
    const header = req.headers['x-session-id'];
    if (typeof header === 'string' && header !== '') return header.trim();
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === cookieName) return part.slice(eq + 1).trim();
    }
    return undefined;
  }

  async function createSession(req: http.IncomingMessage): Promise<{ token: string; worker: SessionWorker }> {
    authorize(req);
    // A request announcing a body over the limit is refused before it costs a pod (an implicit
    // session's request would be refused by the proxy anyway, after the claim).
    if (Number(req.headers['content-length'] ?? 0) > config.MAX_BODY_BYTES) throw errors.bodyTooLarge(config.MAX_BODY_BYTES);
    return sessions.create(clientOf(req), req.headers['x-request-id'] as string);
  }

  function target(worker: SessionWorker, url: string, responseHeaders?: Record<string, string>): ProxyTarget {
    const done = sessions.begin(worker.hash);
    return {
      endpoint: worker.endpoint,
      url,
      done,
      ...(responseHeaders ? { responseHeaders } : {}),
      failure: (err) => {
        if (sessions.isGone(worker.hash)) return errors.sessionLost();
        return err.code === 'ETIMEDOUT' ? errors.upstreamTimeout() : errors.upstreamUnavailable();
      },
    };
  }

  /** Which session and upstream URL a proxied request is for; undefined for the control API. */
  type Route =
    | { kind: 'control' }
    | { kind: 'explicit'; token: string; url: string }
    | { kind: 'implicit'; token: string | undefined; url: string };

  function route(url: string): Route {
    checkRequestTarget(url);
    const { path, query } = splitUrl(url);
    if (path === '/sessions') return { kind: 'control' };
    const m = SESSION_PATH.exec(path);
    if (m) {
      const rest = m[2];
      if (rest === undefined) return { kind: 'control' };
      return { kind: 'explicit', token: m[1] as string, url: rest + query };
    }
    return { kind: 'implicit', token: undefined, url };
  }

  /**
   * The id as the client wrote it. express hands handlers a percent-decoded parameter, which
   * would let `/sessions/%41...` name a session that the proxied form of the same path (matched
   * undecoded) does not find; every route takes the id undecoded instead.
   */
  function rawId(req: Request): string {
    return SESSION_PATH.exec(splitUrl(req.originalUrl).path)?.[1] ?? '';
  }

  const app = controlApi();

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.setHeader('x-request-id', requestId(req));
    try {
      const r = route(req.url ?? '/');
      if (r.kind === 'control') {
        app(req, res);
        return;
      }
      const token = r.kind === 'explicit' ? r.token : tokenFromRequest(req);
      if (token !== undefined) {
        proxy.web(req, res, target(sessions.known(token) ?? await sessions.resolve(token), r.url));
        return;
      }
      if (!config.AUTO_SESSION) throw errors.notFound();
      const created = await createSession(req);
      // Set now so that even an error answer tells the client its session, and again on the
      // worker's response so that a cookie the worker sets does not replace ours.
      const headers = { 'set-cookie': sessionCookie(created.token), 'x-session-id': created.token };
      for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
      proxy.web(req, res, target(created.worker, r.url, headers));
    } catch (err) {
      fail(res, err);
    }
  }

  function fail(res: http.ServerResponse, err: unknown): void {
    const known = clientErrorOf(err);
    if (known) {
      deps.metrics.proxyRequests.inc({ code: String(known.status) });
      sendError(res, known);
      return;
    }
    sendError(res, unexpected(err));
  }

  function unexpected(err: unknown): WarmpoolError {
    logger.error({ err: (err as Error).message, stack: (err as Error).stack }, 'unexpected error');
    return errors.internal();
  }

  function controlApi(): express.Express {
    const api = express();
    api.disable('x-powered-by');
    api.set('etag', false);
    api.post('/sessions', async (req, res) => {
      const { token, worker } = await createSession(req);
      res.status(201)
        .setHeader('x-session-id', token)
        .setHeader('set-cookie', sessionCookie(token))
        .setHeader('cache-control', 'no-store')
        .json({ id: token, createdAt: new Date(worker.createdAt).toISOString(), expiresAt: new Date(sessions.expiresAt(worker)).toISOString() });
    });
    api.get('/sessions/:id', async (req, res) => {
      res.setHeader('cache-control', 'no-store').json(await sessions.describe(rawId(req)));
    });
    api.delete('/sessions/:id', async (req, res) => {
      await sessions.end(rawId(req), req.headers['x-request-id'] as string);
      res.status(204).end();
    });
    api.all('/sessions', () => { throw errors.methodNotAllowed(); });
    api.all('/sessions/:id', () => { throw errors.methodNotAllowed(); });
    api.use(() => { throw errors.notFound(); });
    api.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => fail(res, err));
    return api;
  }

  const headersTimeoutMs = config.HEADERS_TIMEOUT_S * 1000;
  const server = http.createServer({
    requestTimeout: 0,
    headersTimeout: headersTimeoutMs,
    // Node enforces headersTimeout only when it sweeps its connections, every 30 s by default:
    // a slow client would hold its connection far past HEADERS_TIMEOUT_S.
    connectionsCheckingInterval: Math.min(30_000, headersTimeoutMs / 4),
    keepAliveTimeout: 65_000,
    maxHeaderSize: 16 * 1024,
  }, (req, res) => void handle(req, res));

  server.on('upgrade', async (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    requestId(req);
    try {
      const r = route(req.url ?? '/');
      // http-proxy-3 drops any other upgrade (`POST` with one, `Upgrade: h2c` from curl --http2)
      // by closing the socket without a word; Node 20 cannot hand it back as a plain request.
      if (req.method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
        throw errors.badRequest('the only upgrade served is a WebSocket handshake (GET, Upgrade: websocket)');
      }
      // The control API has no WebSocket: "no such route", not "no such session" for a live one.
      if (r.kind === 'control') throw errors.notFound();
      const token = r.kind === 'explicit' ? r.token : tokenFromRequest(req);
      if (token === undefined) throw errors.sessionNotFound();
      proxy.ws(req, socket, head, target(sessions.known(token) ?? await sessions.resolve(token), r.url));
    } catch (err) {
      sendSocketError(socket, clientErrorOf(err) ?? unexpected(err));
    }
  });

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex & { _httpMessage?: http.ServerResponse | null }) => {
    // A response already under way on this connection (a stream, or an early answer to a request
    // whose body then proved malformed) must not get a second status line written into it; Node's
    // own handler makes the same check.
    if (!socket.writable || socket._httpMessage?.headersSent) return socket.destroy();
    sendSocketError(socket, err.code === 'HPE_HEADER_OVERFLOW' ? errors.headersTooLarge()
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? errors.requestTimeout() : errors.badRequest('malformed HTTP request'));
  });

  // Without these listeners Node answers an unknown Expect with a bare 417 and a CONNECT by
  // closing the connection: every answer is JSON with a stable code instead.
  server.on('checkExpectation', (_req: http.IncomingMessage, res: http.ServerResponse) => sendError(res, errors.expectationFailed()));
  server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    sendSocketError(socket, errors.methodNotAllowed());
  });

  return server;
}

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config } from '../config.js';
import { clientErrorOf, errors, type WarmpoolError } from '../errors.js';
import type { Exchange, Forwarder, ForwardTarget, Observer } from '../forward/index.js';
import type { Logger } from '../log.js';
import type { SessionWorker } from '../pool/types.js';
import type { Sessions } from '../sessions/index.js';
import { WORKER_ATTEMPTS } from '../sessions/placement.js';
import { createControlApi } from './control-api.js';
import { createCredentials } from './credentials.js';
import { sendError, sendSocketError } from './respond.js';
import { route, type Route } from './router.js';
import type { SessionRequest } from './session-request.js';

export interface ClientServerDeps {
  config: Config;
  sessions: Sessions;
  forwarder: Forwarder;
  observer: Observer;
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

/** Aborted when the client goes before its answer is complete: a claim made for it is then wasted. */
function clientLeft(res: http.ServerResponse): AbortSignal {
  const left = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) left.abort();
  });
  return left.signal;
}

/**
 * The client port. Session traffic is dispatched here, before express: a request for
 * `/sessions/{id}/...`, or for any other path with a session header or cookie, goes straight to
 * the forwarder. Only the small control API (`/sessions`, `/sessions/{id}`) goes through express.
 */
export function createClientServer(deps: ClientServerDeps): http.Server {
  const { config, sessions, forwarder, observer, logger } = deps;
  const credentials = createCredentials(config);

  /** Checks limits, claims and delivers the settings; the caller has authorized the request. */
  async function createSession(req: http.IncomingMessage, res: http.ServerResponse, request: SessionRequest): Promise<{ token: string; worker: SessionWorker }> {
    return sessions.create(credentials.clientOf(req), { ...request, reqId: req.headers['x-request-id'] as string, signal: clientLeft(res) });
  }

  /** The worker's view of the request and the session's bookkeeping for one exchange. */
  function target(req: http.IncomingMessage, exchange: Exchange, worker: SessionWorker, token: string, url: string, responseHeaders?: Record<string, string>): ForwardTarget {
    credentials.stripForWorker(req, token);
    exchange.reached(worker);
    return {
      endpoint: worker.endpoint,
      url,
      exchange,
      done: sessions.begin(worker.hash),
      ...(responseHeaders ? { responseHeaders } : {}),
      failure: (err) => {
        if (sessions.isGone(worker.hash)) return errors.sessionLost();
        return err.code === 'ETIMEDOUT' ? errors.upstreamTimeout() : errors.upstreamUnavailable();
      },
    };
  }

  /** The session a forwarded request names, by path, header or cookie. */
  function named(req: http.IncomingMessage, r: Exclude<Route, { kind: 'control' }>): string | undefined {
    return r.kind === 'explicit' ? r.token : credentials.sessionToken(req);
  }

  const app = createControlApi({
    sessions,
    maxSettingsBytes: config.MAX_SETTINGS_BYTES,
    maxBodyBytes: config.MAX_BODY_BYTES,
    authorize: credentials.authorize,
    createSession,
    sessionCookie: credentials.sessionCookie,
    fail: (res, err) => fail(res, err),
  });

  async function forward(req: http.IncomingMessage, res: http.ServerResponse, r: Exclude<Route, { kind: 'control' }>, exchange: Exchange): Promise<void> {
    const token = named(req, r);
    if (token !== undefined) {
      forwarder.web(req, res, target(req, exchange, sessions.known(token) ?? await sessions.resolve(token), token, r.url));
      return;
    }
    if (!config.AUTO_SESSION) throw errors.notFound();
    credentials.authorize(req);
    // Read before the claim: a body over the limit, or one the client never finishes, costs no pod.
    await forwardFresh(req, res, r.url, exchange, await forwarder.hold(req), 1);
  }

  /**
   * The first request of an implicit session. Its body is held, so that a fresh worker failing
   * it before the client heard a byte (no connection, a reset, a 5xx) is ended and the request
   * sent to another worker under a new session, up to WORKER_ATTEMPTS; the last one's answer is
   * the client's. Sending it again is safe: the failed worker, and whatever the request did to
   * it, are gone.
   */
  async function forwardFresh(req: http.IncomingMessage, res: http.ServerResponse, url: string, exchange: Exchange, body: Buffer, attempt: number): Promise<void> {
    const created = await createSession(req, res, {});
    // Set now so that even an error answer tells the client its session, and again on the
    // worker's response so that a cookie the worker sets does not replace ours.
    const headers = { 'set-cookie': credentials.sessionCookie(created.token), 'x-session-id': created.token };
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    const asSent = { ...req.headers };
    const retry = (why: string) => {
      req.headers = asSent;
      // The ended session's id must not reach the client, even on an error answer.
      for (const name of Object.keys(headers)) res.removeHeader(name);
      void sessions.discard(created.worker, why, asSent['x-request-id'] as string);
      forwardFresh(req, res, url, exchange, body, attempt + 1).catch((err: unknown) => fail(res, err));
    };
    forwarder.web(req, res, { ...target(req, exchange, created.worker, created.token, url, headers), held: body, ...(attempt < WORKER_ATTEMPTS ? { retry } : {}) });
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.setHeader('x-request-id', requestId(req));
    let exchange: Exchange | undefined;
    try {
      const r = route(req.url ?? '/');
      exchange = observer.open(req, { kind: r.kind === 'control' ? 'control' : 'http', url: r.url });
      exchange.endsWith(res);
      if (r.kind === 'control') {
        app(req, res);
        return;
      }
      await forward(req, res, r, exchange);
    } catch (err) {
      if (!exchange) observer.open(req, { kind: 'http', url: '(invalid)' }).endsWith(res);
      fail(res, err);
    }
  }

  function fail(res: http.ServerResponse, err: unknown): void {
    sendError(res, clientErrorOf(err) ?? unexpected(err));
  }

  function unexpected(err: unknown): WarmpoolError {
    logger.error({ err: (err as Error).message, stack: (err as Error).stack }, 'unexpected error');
    return errors.internal();
  }

  const server = createServer(config, (req, res) => void handle(req, res));

  server.on('upgrade', async (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    requestId(req);
    let exchange: Exchange | undefined;
    try {
      const r = route(req.url ?? '/');
      exchange = observer.open(req, { kind: 'websocket', url: r.url });
      // http-proxy-3 drops any other upgrade (`POST` with one, `Upgrade: h2c` from curl --http2)
      // by closing the socket without a word; Node 20 cannot hand it back as a plain request.
      if (req.method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
        throw errors.badRequest('the only upgrade served is a WebSocket handshake (GET, Upgrade: websocket)');
      }
      // The control API has no WebSocket: "no such route", not "no such session" for a live one.
      if (r.kind === 'control') throw errors.notFound();
      // A WebSocket never claims a session for itself, AUTO_SESSION or not: a 101 carries no
      // body, so the client could not learn the id its conversation lives under.
      const token = named(req, r);
      if (token === undefined) throw errors.sessionRequired();
      forwarder.ws(req, socket, head, target(req, exchange, sessions.known(token) ?? await sessions.resolve(token), token, r.url));
    } catch (err) {
      const answer = clientErrorOf(err) ?? unexpected(err);
      exchange ??= observer.open(req, { kind: 'websocket', url: '(invalid)' });
      exchange.answered(answer.status);
      exchange.close();
      sendSocketError(socket, answer);
    }
  });

  return server;
}

/**
 * The client port's HTTP server: timeouts for slow clients and a JSON answer with a stable code
 * for everything Node would otherwise answer (or drop) by itself.
 */
function createServer(config: Config, handler: http.RequestListener): http.Server {
  const headersTimeoutMs = config.HEADERS_TIMEOUT_S * 1000;
  const server = http.createServer({
    requestTimeout: 0,
    headersTimeout: headersTimeoutMs,
    // Node enforces headersTimeout only when it sweeps its connections, every 30 s by default:
    // a slow client would hold its connection far past HEADERS_TIMEOUT_S.
    connectionsCheckingInterval: Math.min(30_000, headersTimeoutMs / 4),
    keepAliveTimeout: 65_000,
    maxHeaderSize: 16 * 1024,
  }, handler);

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

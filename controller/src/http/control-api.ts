import type http from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { errors } from '../errors.js';
import type { SessionWorker } from '../pool/types.js';
import type { Sessions } from '../sessions/index.js';
import { rawSessionId } from './router.js';
import { BODY_ALLOWANCE, bodyError, hasBody, parseSessionRequest, type SessionRequest } from './session-request.js';

export interface ControlApiDeps {
  sessions: Sessions;
  maxSettingsBytes: number;
  /** MAX_BODY_BYTES: no body on the client port is larger. */
  maxBodyBytes: number;
  /** Throws 401 unless the request carries a valid API token (when auth is on). */
  authorize: (req: http.IncomingMessage) => void;
  /** Checks limits, claims and delivers the settings (after `authorize`): the path an implicit session takes too. */
  createSession: (req: http.IncomingMessage, res: http.ServerResponse, request: SessionRequest) => Promise<{ token: string; worker: SessionWorker }>;
  sessionCookie: (token: string) => string;
  fail: (res: http.ServerResponse, err: unknown) => void;
}

/** The session API: create, describe, end. Only these go through express (it halves the hot path's throughput). */
export function createControlApi(deps: ControlApiDeps): express.Express {
  const { sessions } = deps;
  const api = express();
  api.disable('x-powered-by');
  api.set('etag', false);
  const limit = Math.min(deps.maxBodyBytes, deps.maxSettingsBytes + BODY_ALLOWANCE);
  const json = express.json({ limit, strict: true, type: ['application/json', 'application/*+json'] });
  // Who asks is checked before what they send is read, and a body declared too large is
  // refused before it is sent (whatever its type).
  api.post('/sessions', (req, _res, next) => {
    deps.authorize(req);
    if (Number(req.headers['content-length'] ?? 0) > limit) throw errors.bodyTooLarge(limit);
    next();
  }, json, async (req, res) => {
    if (req.body === undefined && hasBody(req)) throw errors.unsupportedMediaType();
    const request = parseSessionRequest(req.body, deps.maxSettingsBytes);
    const { token, worker } = await deps.createSession(req, res, request);
    res.status(201)
      .setHeader('x-session-id', token)
      .setHeader('set-cookie', deps.sessionCookie(token))
      .setHeader('cache-control', 'no-store')
      .json({ id: token, pool: worker.pool, createdAt: new Date(worker.createdAt).toISOString(), expiresAt: new Date(sessions.expiresAt(worker)).toISOString() });
  });
  api.get('/sessions/:id', async (req, res) => {
    res.setHeader('cache-control', 'no-store').json(await sessions.describe(rawSessionId(req.originalUrl)));
  });
  api.delete('/sessions/:id', async (req, res) => {
    await sessions.end(rawSessionId(req.originalUrl), req.headers['x-request-id'] as string);
    res.status(204).end();
  });
  api.all('/sessions', () => { throw errors.methodNotAllowed(); });
  api.all('/sessions/:id', () => { throw errors.methodNotAllowed(); });
  api.use(() => { throw errors.notFound(); });
  api.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => deps.fail(res, bodyError(err, limit) ?? err));
  return api;
}

import type http from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { errors } from '../errors.js';
import type { SessionWorker } from '../pool/types.js';
import type { Sessions } from '../sessions/index.js';
import { rawSessionId } from './router.js';

export interface ControlApiDeps {
  sessions: Sessions;
  /** Authorizes, checks limits and claims: the same path an implicit session takes. */
  createSession: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<{ token: string; worker: SessionWorker }>;
  sessionCookie: (token: string) => string;
  fail: (res: http.ServerResponse, err: unknown) => void;
}

/** The session API: create, describe, end. Only these go through express (it halves the hot path's throughput). */
export function createControlApi(deps: ControlApiDeps): express.Express {
  const { sessions } = deps;
  const api = express();
  api.disable('x-powered-by');
  api.set('etag', false);
  api.post('/sessions', async (req, res) => {
    const { token, worker } = await deps.createSession(req, res);
    res.status(201)
      .setHeader('x-session-id', token)
      .setHeader('set-cookie', deps.sessionCookie(token))
      .setHeader('cache-control', 'no-store')
      .json({ id: token, createdAt: new Date(worker.createdAt).toISOString(), expiresAt: new Date(sessions.expiresAt(worker)).toISOString() });
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
  api.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => deps.fail(res, err));
  return api;
}

import http from 'node:http';
import express from 'express';
import type { Config } from './config.js';
import type { Metrics } from './metrics.js';
import type { PoolBackend } from './pool/types.js';
import { addStatusRoutes, type StatusRoutesDeps } from './status/routes.js';

export interface AdminDeps {
  config: Config;
  backend: PoolBackend;
  metrics: Metrics;
  replica: string;
  /** False once shutdown has begun, so load balancers stop sending new work here. */
  accepting: () => boolean;
  status: StatusRoutesDeps;
}

/** The admin port: metrics, probes and the status page, for the platform and its operators, never for chat clients. */
export function createAdminServer(deps: AdminDeps): http.Server {
  const { config, backend, metrics } = deps;
  const app = express();
  app.disable('x-powered-by');
  addStatusRoutes(app, deps.status);
  app.get('/metrics', async (_req, res) => {
    res.setHeader('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', (_req, res) => {
    const ready = backend.isReady() && deps.accepting();
    const { problem } = backend.snapshot();
    res.status(ready ? 200 : 503).json({ ready, ...(problem ? { problem } : {}) });
  });
  app.get('/pool', (_req, res) => {
    res.json({
      ...backend.snapshot(),
      replica: deps.replica,
      config: {
        poolSize: config.POOL_SIZE,
        maxSessions: config.MAX_SESSIONS,
        maxSessionsPerClient: config.MAX_SESSIONS_PER_CLIENT,
        claimTimeoutMs: config.CLAIM_TIMEOUT_MS,
        maxPendingClaims: config.MAX_PENDING_CLAIMS,
        sessionIdleTimeoutS: config.SESSION_IDLE_TIMEOUT_S,
        sessionMaxLifetimeS: config.SESSION_MAX_LIFETIME_S,
        autoSession: config.AUTO_SESSION,
        auth: config.API_TOKENS.length > 0,
      },
    });
  });
  app.use((_req, res) => {
    res.status(404).json({ error: 'not_found', message: 'no such route' });
  });
  return http.createServer(app);
}

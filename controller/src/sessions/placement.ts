import { errors } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { EndReason, PoolBackend, SessionWorker } from '../pool/types.js';
import type { Delivery, Settings } from './delivery.js';
import { newSessionToken, sessionHash } from './tokens.js';

/**
 * Workers one session may go through when they keep failing it: failing to take its settings
 * (here), or failing the first request of an implicit session (the http layer).
 */
export const WORKER_ATTEMPTS = 3;

/**
 * The pools a session may come from, in order: those it named (each must exist), else
 * DEFAULT_POOL, else the only pool there is.
 */
export function choosePools(requested: readonly string[] | undefined, known: readonly string[], defaultPool: string | undefined): readonly string[] {
  if (requested !== undefined && requested.length > 0) {
    const missing = requested.find((p) => !known.includes(p));
    if (missing !== undefined) throw errors.poolNotFound(missing);
    return [...new Set(requested)];
  }
  if (defaultPool !== undefined) {
    if (!known.includes(defaultPool)) throw errors.poolNotFound(defaultPool);
    return [defaultPool];
  }
  if (known.length === 1) return known;
  if (known.length === 0) throw errors.poolNotFound('(none: no pool exists yet)');
  throw errors.poolRequired(known.join(', '));
}

export interface PlacementDeps {
  backend: PoolBackend;
  deliver: (session: SessionWorker, settings: Settings) => Promise<Delivery>;
  /** Ends a claim nobody will use. */
  end: (session: SessionWorker, reason: EndReason) => Promise<void>;
  metrics: Metrics;
  logger: Logger;
  retryAfterS: number;
}

export interface Placement {
  client: string;
  pools: readonly string[];
  settings: Settings;
  signal?: AbortSignal;
}

/**
 * Claims a worker and hands it the session's settings. A worker that refuses them (4xx) is
 * released and the client told 400 `settings_rejected`: another worker of the same image would
 * refuse them too. A worker that fails (5xx, no answer) is released and another claimed, under
 * a fresh id each time (the failed claim's id was never given out), up to WORKER_ATTEMPTS;
 * then 503 `worker_failed`.
 */
export async function place(deps: PlacementDeps, p: Placement): Promise<{ token: string; worker: SessionWorker }> {
  for (let attempt = 1; ; attempt++) {
    const token = newSessionToken();
    const worker = await deps.backend.claim({ hash: sessionHash(token), client: p.client, pools: p.pools, signal: p.signal });
    const delivery = await deps.deliver(worker, p.settings);
    if (delivery.outcome === 'accepted') return { token, worker };
    await deps.end(worker, 'orphan');
    if (delivery.outcome === 'rejected') throw errors.settingsRejected(delivery.message);
    deps.metrics.claimsTotal.inc({ pool: worker.pool, result: 'delivery_failed' });
    deps.logger.warn({ session: worker.hash.slice(0, 12), worker: worker.worker, pool: worker.pool, why: delivery.why, attempt }, 'worker failed to take the session settings');
    if (attempt >= WORKER_ATTEMPTS) throw errors.workerFailed(deps.retryAfterS);
  }
}

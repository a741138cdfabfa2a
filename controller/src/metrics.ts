import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every value `warmpool_claims_total{result}` takes: `claimed`, an internal retry (`conflict`:
 * another replica took the candidate; `delivery_failed`: the worker failed to take the
 * session's settings and another is claimed), a claim whose client left (`client_closed` while it
 * waited, `abandoned` once it had landed), or the error code the client got. Anything else is
 * counted as `error`, so the label stays bounded whatever a backend throws.
 */
export const CLAIM_RESULTS = [
  'claimed', 'conflict', 'delivery_failed', 'client_closed', 'abandoned', 'no_warm_worker', 'claim_queue_full', 'at_capacity',
  'client_session_limit', 'rate_limited', 'backend_unavailable', 'pool_not_found', 'pool_required', 'settings_rejected',
  'worker_failed', 'shutting_down', 'error',
] as const;

/** Every value `warmpool_sessions_ended_total{reason}` takes (EndReason, and `lost` for a worker that died). */
export const END_REASONS = ['deleted', 'idle', 'lifetime', 'abandoned', 'orphan', 'lost'] as const;

export type ClaimResult = (typeof CLAIM_RESULTS)[number];

/** The claims_total label for what a claim ended with: its error's code when that is a known result. */
export function claimResult(err: unknown): ClaimResult {
  const code = (err as { code?: unknown } | null)?.code;
  return (CLAIM_RESULTS as readonly unknown[]).includes(code) ? code as ClaimResult : 'error';
}

/**
 * All metrics of DESIGN section 8 on a registry of our own. Labels are bounded: states,
 * results, status codes, reasons, verbs; never a session or a pod.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const latency = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
  return {
    registry,
    poolPods: new Gauge({ name: 'warmpool_pool_pods', help: 'Pool workers by state (warm, warming, assigned).', labelNames: ['pool', 'state'], registers }),
    poolSize: new Gauge({ name: 'warmpool_pool_size', help: 'Replicas of each pool\'s Deployment, as the watch shows them.', labelNames: ['pool'], registers }),
    poolTargetSize: new Gauge({ name: 'warmpool_pool_target_size', help: 'The size sizing asks for (min-size == max-size: that size).', labelNames: ['pool'], registers }),
    poolArrivalRate: new Gauge({ name: 'warmpool_pool_arrival_rate', help: 'Claims per second as sizing reads them (λ), by pool.', labelNames: ['pool'], registers }),
    poolRefillSeconds: new Gauge({ name: 'warmpool_pool_refill_seconds', help: 'Refill time sizing uses (T: the 90th percentile of recent pods\' creation to Ready), by pool.', labelNames: ['pool'], registers }),
    poolPredictedMissRate: new Gauge({ name: 'warmpool_pool_predicted_miss_rate', help: 'Share of claims the sizing model predicts will wait at the target size, by pool.', labelNames: ['pool'], registers }),
    poolObservedMissRate: new Gauge({ name: 'warmpool_pool_observed_miss_rate', help: 'Share of the claims landed in the rate window that had waited for a warm pod (from the pods\' claim-wait annotation), by pool.', labelNames: ['pool'], registers }),
    poolResizes: new Counter({ name: 'warmpool_pool_resizes_total', help: 'Pool Deployment replicas written by this replica, by pool.', labelNames: ['pool'], registers }),
    poolConfigErrors: new Counter({ name: 'warmpool_pool_config_errors_total', help: 'Pool Deployments found unusable as labelled, or with invalid settings annotations, by pool.', labelNames: ['pool'], registers }),
    sessionsActive: new Gauge({ name: 'warmpool_sessions_active', help: 'Sessions with a live worker.', registers }),
    claimsTotal: new Counter({ name: 'warmpool_claims_total', help: 'Claim attempts by pool and result (pool is empty when the request named no pool that exists).', labelNames: ['pool', 'result'], registers }),
    claimDuration: new Histogram({ name: 'warmpool_claim_duration_seconds', help: 'Time to claim a worker, queueing included.', buckets: latency, registers }),
    claimQueueLength: new Gauge({ name: 'warmpool_claim_queue_length', help: 'Session requests waiting for a warm worker.', registers }),
    claimWait: new Histogram({ name: 'warmpool_claim_wait_seconds', help: 'Time spent waiting in the claim queue.', buckets: latency, registers }),
    podStartup: new Histogram({ name: 'warmpool_pod_startup_seconds', help: 'Time from a worker\'s creation to Ready, by pool.', labelNames: ['pool'], buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300], registers }),
    proxyRequests: new Counter({ name: 'warmpool_proxy_requests_total', help: 'Requests answered on the client port (proxied and the session API) by status.', labelNames: ['code'], registers }),
    proxyTtfb: new Histogram({ name: 'warmpool_proxy_ttfb_seconds', help: 'Time to the worker\'s response headers.', buckets: latency, registers }),
    websocketsActive: new Gauge({ name: 'warmpool_websockets_active', help: 'Proxied WebSocket connections open now.', registers }),
    websocketsRefused: new Counter({ name: 'warmpool_websockets_refused_total', help: 'WebSocket upgrades answered with something other than 101, by status.', labelNames: ['code'], registers }),
    sessionsEnded: new Counter({ name: 'warmpool_sessions_ended_total', help: 'Ended sessions by pool and reason.', labelNames: ['pool', 'reason'], registers }),
    eventsSkipped: new Counter({ name: 'warmpool_events_skipped_total', help: 'Pod Events not written because this replica wrote its share this minute, by pool and reason.', labelNames: ['pool', 'reason'], registers }),
    kubeRequests: new Counter({ name: 'warmpool_kube_requests_total', help: 'Kubernetes API requests by verb and status code.', labelNames: ['verb', 'code'], registers }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

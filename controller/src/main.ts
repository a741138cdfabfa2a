/**
 * The composition root: the only module that reads the environment, listens on ports and
 * handles signals. Everything else receives what it needs as arguments.
 */
import { existsSync } from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createAdminServer } from './admin-server.js';
import { chooseBackend, readKubeconfigs } from './backend-choice.js';
import { ConfigError, parseConfig, type Config } from './config.js';
import { createLogger } from './log.js';
import { createMetrics } from './metrics.js';
import { ClaimQueue } from './pool/claim-queue.js';
import { LocalPool } from './pool/local/index.js';
import { LocalPools } from './pool/local/pools.js';
import type { PoolBackend } from './pool/types.js';
import { createForwarder, createObserver } from './forward/index.js';
import { createClientServer } from './http/server.js';
import { Sessions } from './sessions/index.js';
import { createAdminAuth } from './status/admin-auth.js';
import { StatusHistory } from './status/history.js';
import { StatusReporter } from './status/report.js';
import { loadPage } from './status/routes.js';

let config: Config;
try {
  config = parseConfig(process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  for (const p of err.problems) process.stderr.write(`warmpool: invalid configuration: ${p.variable}: ${p.message}\n`);
  process.exit(1);
}

// A person at a terminal reads pretty lines; anything piped or collected gets JSON.
let lastProblem: { at: number; line: string } | undefined;
const logger = createLogger(config.LOG_LEVEL, {
  pretty: process.stdout.isTTY === true,
  onProblem: (line) => { lastProblem = { at: Date.now(), line }; },
});
const metrics = createMetrics();
const replica = process.env.POD_NAME || `${os.hostname()}-${process.pid}`;

const choice = chooseBackend(config.BACKEND, {
  inCluster: Boolean(process.env.KUBERNETES_SERVICE_HOST) && existsSync('/var/run/secrets/kubernetes.io/serviceaccount/token'),
  kubeconfigs: readKubeconfigs(process.env.KUBECONFIG
    ? process.env.KUBECONFIG.split(path.delimiter).filter(Boolean)
    : [path.join(os.homedir(), '.kube', 'config')]),
});
logger.info({ backend: choice.backend, reason: choice.reason, replica }, 'backend chosen');
for (const gone of ['POOL_DEPLOYMENT', 'POOL_SELECTOR']) {
  if (process.env[gone]) logger.warn({ variable: gone }, `${gone} is no longer read: a pool is any Deployment labelled warmpool.dev/pool=<name> (docs/operations.md, Pools)`);
}

const retryAfterS = Math.max(1, Math.ceil(config.CLAIM_TIMEOUT_MS / 1000));
const queue = new ClaimQueue({
  timeoutMs: config.CLAIM_TIMEOUT_MS,
  maxPending: config.MAX_PENDING_CLAIMS,
  retryAfterS: () => retryAfterS,
  onLength: (n) => metrics.claimQueueLength.set(n),
  onWait: (s) => metrics.claimWait.observe(s),
});

/** LOCAL_POOLS, or one pool `chatbot` of POOL_SIZE workers running LOCAL_WORKER_CMD. */
function localBackend(): PoolBackend {
  const referenceWorker = fileURLToPath(new URL('../../worker-image/dist/server.js', import.meta.url));
  const defaultCommand = config.LOCAL_WORKER_CMD || `'${process.execPath}' '${referenceWorker}'`;
  // The workers inherit the environment (model settings, proxies) but not the API tokens.
  const { API_TOKENS: _tokens, API_TOKENS_FILE: _tokensFile, ...workerEnv } = process.env;
  const specs = config.LOCAL_POOLS.length > 0 ? config.LOCAL_POOLS : [{ name: 'chatbot', size: config.POOL_SIZE, command: '' }];
  const pools = specs.map((spec) => new LocalPool({
    name: spec.name,
    size: spec.size,
    command: spec.command || defaultCommand,
    env: workerEnv,
    host: '127.0.0.1',
    queue,
    logger: logger.child({ pool: spec.name }),
    metrics,
  }));
  return new LocalPools(pools, queue);
}

/**
 * Loaded only when chosen: @kubernetes/client-node costs about 60 MB of memory and start time
 * that a laptop on the local backend should not pay.
 */
async function kubernetesBackend(): Promise<PoolBackend> {
  const { createKubeApi, loadKubeConfig } = await import('./pool/kubernetes/client.js');
  const { KubePool } = await import('./pool/kubernetes/index.js');
  const api = createKubeApi(loadKubeConfig(), {
    namespace: config.NAMESPACE,
    count: (verb, code) => metrics.kubeRequests.inc({ verb, code }),
  });
  return new KubePool({
    api,
    queue,
    logger,
    metrics,
    replica,
    labelKey: config.POOL_LABEL_KEY,
    minSize: config.POOL_MIN_SIZE ?? config.POOL_SIZE,
    maxSize: config.POOL_MAX_SIZE ?? config.POOL_SIZE,
    sizing: { targetMissRate: config.POOL_TARGET_MISS_RATE, rateWindowS: config.POOL_RATE_WINDOW_S, scaleDownWindowS: config.POOL_SCALE_DOWN_WINDOW_S },
    workerPort: config.WORKER_PORT,
    activityFlushMs: config.ACTIVITY_FLUSH_S * 1000,
    // A claim being delivered is confirmed (or released) within DELIVERY_TIMEOUT_MS: well past
    // that, an unconfirmed claim has lost the replica that made it.
    // A confirmation is written with the next activity flush: the bound leaves room for two.
    undeliveredMs: Math.max(60_000, 2 * config.DELIVERY_TIMEOUT_MS, 2 * config.ACTIVITY_FLUSH_S * 1000),
    retryAfterS,
  });
}

/**
 * A kubernetes backend that cannot even be built (an unreadable kubeconfig, no current cluster)
 * is one line for the operator, with the way out, not a stack trace.
 */
async function chosenBackend(): Promise<PoolBackend> {
  if (choice.backend === 'local') return localBackend();
  try {
    return await kubernetesBackend();
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, `cannot start the kubernetes backend (${choice.reason}): ${(err as Error).message}; to run without a cluster set BACKEND=local`);
    process.exit(1);
  }
}

const backend = await chosenBackend();
const sessions = new Sessions(backend, {
  maxSessions: config.MAX_SESSIONS,
  maxPerClient: config.MAX_SESSIONS_PER_CLIENT,
  createsPerMinute: config.SESSION_CREATE_RATE,
  idleTimeoutMs: config.SESSION_IDLE_TIMEOUT_S * 1000,
  maxLifetimeMs: config.SESSION_MAX_LIFETIME_S * 1000,
  // Twice per flush interval, so the activity a backend writes is never more than one interval old.
  heartbeatMs: (config.ACTIVITY_FLUSH_S * 1000) / 2,
  defaultPool: config.DEFAULT_POOL,
  deliveryTimeoutMs: config.DELIVERY_TIMEOUT_MS,
  retryAfterS,
}, metrics, logger);
const forwarder = createForwarder({
  trustProxy: config.TRUST_PROXY,
  upstreamTimeoutMs: config.UPSTREAM_TIMEOUT_S * 1000,
  maxBodyBytes: config.MAX_BODY_BYTES,
  metrics,
  logger,
});

let accepting = true;
const client = createClientServer({ config, sessions, forwarder, observer: createObserver(metrics, logger), logger });
const sampleEveryMs = config.STATUS_SAMPLE_S * 1000;
const history = new StatusHistory({ snapshot: () => backend.snapshot(), metrics }, Math.min(10_000, Math.ceil(config.STATUS_HISTORY_S / config.STATUS_SAMPLE_S)));
const reporter = new StatusReporter({
  replica, backend, metrics, history, sampleEveryMs,
  expiresAt: (s) => sessions.expiresAt(s),
  accepting: () => accepting,
  lastProblem: () => lastProblem,
});
sessions.onEnd((ended) => reporter.recordEnd(ended));
const admin = createAdminServer({
  config, backend, metrics, replica, accepting: () => accepting,
  status: { reporter, auth: createAdminAuth(config), page: loadPage(new URL('./page/', import.meta.url)) },
});

function listen(server: http.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, config.LISTEN_HOST, () => resolve((server.address() as { port: number }).port));
  });
}


// Ports open before the pool is in sync: until then /readyz says no and claims get 503, which
// is better than a replica that looks dead while the API server is slow.
try {
  const [port, adminPort] = await Promise.all([listen(client, config.PORT), listen(admin, config.ADMIN_PORT)]);
  logger.info({ port, adminPort, poolSize: config.POOL_SIZE }, 'listening');
} catch (err) {
  logger.fatal({ err: (err as Error).message }, 'cannot listen');
  process.exit(1);
}
await backend.start();
sessions.start();
history.start(sampleEveryMs);

/**
 * Shutdown: stop taking work (readiness turns false, no new connections or sessions), give
 * in-flight exchanges up to SHUTDOWN_TIMEOUT_S, then end streamed replies cleanly, cut what is
 * left, stop the pool's own processes and exit. Sessions survive a replica's shutdown on the
 * kubernetes backend because they live in pod labels; the local backend's workers are this
 * process's and go. A second signal means "now": the process exits at once.
 */
let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) {
    logger.warn({ signal }, 'second signal: exiting now');
    process.exit(1);
  }
  stopping = true;
  accepting = false;
  sessions.close();
  history.stop();
  logger.info({ signal }, 'shutting down');
  const drained = new Promise<void>((resolve) => client.close(() => resolve()));
  // A keep-alive connection turns idle when its last exchange ends: close it then, not at the deadline.
  const sweeper = setInterval(() => client.closeIdleConnections(), 100);
  const timer = setTimeout(async () => {
    const connections = await new Promise<number>((resolve) => client.getConnections((_err, n) => resolve(n)));
    const websockets = forwarder.openWebSockets();
    const streams = await forwarder.endStreams();
    logger.warn({ connections, streamsEnded: streams.ended, exchangesCut: streams.others, websocketsCut: websockets },
      `shutdown deadline (SHUTDOWN_TIMEOUT_S=${config.SHUTDOWN_TIMEOUT_S}) passed: ending what is still open`);
    client.closeAllConnections();
    forwarder.close();
  }, config.SHUTDOWN_TIMEOUT_S * 1000);
  await drained;
  clearTimeout(timer);
  clearInterval(sweeper);
  forwarder.close();
  await backend.stop();
  admin.close();
  admin.closeAllConnections();
  logger.info('stopped');
  process.exit(0);
}

process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

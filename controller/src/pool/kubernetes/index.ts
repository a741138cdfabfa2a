/**
 * The kubernetes backend. Each pool is a Deployment labelled `warmpool.dev/pool: <name>` whose
 * selector includes `<labelKey>=not_assigned`; a claim flips that label with one conditional
 * write, so the ReplicaSet releases the pod and starts a replacement. Sessions live in the pod
 * labels, so every replica can route every session from its watch and a restarted replica has
 * nothing to recover. This facade wires the parts: the pool registry (the Deployment watch) and
 * its scaler, the pod cache and its session index (the pod watch, one for every pool), the
 * claimer (the claim path), the reconciler (timers) and the Events.
 */
import { errors } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import { claimInOrder, type ClaimQueue } from '../claim-queue.js';
import { SIZING_DEFAULTS } from '../sizing.js';
import type { ClaimRequest, EndReason, GoneListener, PoolBackend, PoolSnapshot, SessionWorker, WatchState } from '../types.js';
import { isConflict, type KubeApi, type Watch } from './api.js';
import { Claimer, rendezvous } from './claimer.js';
import { PodEvents } from './events.js';
import { CLAIMED_BY, ENDED, POOL_LABEL, sessionOf } from './labels.js';
import { PoolDiscovery } from './discovery.js';
import { PodCache } from './pod-cache.js';
import { Reconciler } from './reconciler.js';
import { SessionIndex } from './session-index.js';

export { CLAIM_WAIT, CLAIMED_AT, CLAIMED_BY, CLIENT_LABEL, ENDED, LAST_ACTIVITY, POOL_LABEL, SESSION_LABEL } from './labels.js';
export { MAX_SIZE, MIN_SIZE, RATE_WINDOW, SCALE_DOWN_WINDOW, TARGET_MISS_RATE } from './pools.js';
export type { DeploymentInfo, KubeApi, KubeEvent, PodInfo, PodWatchHandlers, WatchHandlers } from './api.js';

export interface KubePoolOptions {
  api: KubeApi;
  queue: ClaimQueue;
  logger: Logger;
  metrics: Metrics;
  /** This replica's name, written to claimed-by. */
  replica: string;
  labelKey: string;
  /** A pool's min-size when its Deployment has no warmpool.dev/min-size annotation. */
  minSize: number;
  /** A pool's max-size when its Deployment has no warmpool.dev/max-size annotation. */
  maxSize: number;
  /** Sizing settings of a pool whose Deployment does not set them (warmpool.dev/target-miss-rate, ...); else SIZING_DEFAULTS. */
  sizing?: Partial<typeof SIZING_DEFAULTS>;
  workerPort: number;
  activityFlushMs: number;
  retryAfterS: number;
  /** Conflicting candidates one claim tries before it waits for the watch. */
  maxAttempts?: number;
  /** Longest wait for the watch to show a session this replica has not seen yet (see waitForSession). */
  catchUpMs?: number;
  /** Period of the orphan sweep (default: the activity flush period). */
  orphanSweepMs?: number;
  /** How long a claim may stay unconfirmed (settings not delivered) before it is ended as an orphan (default 60 s). */
  undeliveredMs?: number;
  random?: () => number;
  now?: () => number;
}

export class KubePool implements PoolBackend {
  readonly name = 'kubernetes';
  private readonly index: SessionIndex;
  private readonly cache: PodCache;
  private readonly discovery: PoolDiscovery;
  private readonly claimer: Claimer;
  private readonly reconciler: Reconciler;
  private readonly events: PodEvents;
  private pods: Watch | undefined;
  private podsSynced = false;
  private connected = false;
  /** False from a claim write that got no answer until the API server answers again: claims then fail fast. */
  private answering = true;
  private stopped = false;

  constructor(private readonly o: KubePoolOptions) {
    const now = o.now ?? Date.now;
    const seed = Math.floor((o.random ?? Math.random)() * 0x100000000);
    const { api, logger, metrics, replica, labelKey, workerPort, retryAfterS } = o;
    this.events = new PodEvents(api, logger, metrics, replica, now);
    this.index = new SessionIndex(labelKey, (pod, hash, why) => {
      if (pod.annotations[CLAIMED_BY] === replica) this.events.lost(pod, hash, why);
    });
    this.cache = new PodCache({ labelKey, rank: rendezvous(seed), sessions: this.index, metrics, onClaimable: (pool) => o.queue.wake(pool) });
    this.discovery = new PoolDiscovery({
      api, queue: o.queue, logger, metrics, events: this.events, labelKey,
      defaults: { minSize: o.minSize, maxSize: o.maxSize, ...SIZING_DEFAULTS, ...o.sizing },
      warm: (pool) => this.cache.counts(pool).warm,
      reachable: (answered) => this.answered(answered),
      now,
    });
    this.reconciler = new Reconciler({
      api, cache: this.cache, sessions: this.index, events: this.events, logger, metrics, workerPort, now,
      activityFlushMs: o.activityFlushMs,
      orphanSweepMs: o.orphanSweepMs ?? o.activityFlushMs,
      undeliveredMs: o.undeliveredMs ?? 60_000,
      reachable: (answered) => this.answered(answered),
      end: (session, reason) => this.release(session, reason),
    });
    this.claimer = new Claimer({
      api, cache: this.cache, events: this.events, logger, metrics, replica, labelKey, workerPort, retryAfterS, now,
      maxAttempts: o.maxAttempts ?? 5,
      listed: (pool) => this.discovery.has(pool),
      connected: () => this.connected && this.answering,
      unanswered: (hash) => {
        this.reconciler.recordUnanswered(hash);
        this.answered(false);
      },
    });
  }

  /** Resolves after the first list of both watches; pool sizes are set (and kept) in the background. */
  async start(): Promise<void> {
    const { api, logger } = this.o;
    const pods = new Promise<void>((firstSync) => {
      this.pods = api.watchPods(POOL_LABEL, {
        upsert: (pod) => {
          this.cache.upsert(pod);
          this.discovery.seen(pod);
        },
        remove: (pod) => {
          this.cache.remove(pod);
          this.discovery.gone(pod);
        },
        synced: () => {
          this.podsSynced = true;
          this.connected = true;
          logger.info({ pods: this.cache.size }, 'pod informer in sync');
          this.wakePools();
          firstSync();
        },
        broken: (err, retryInMs) => {
          this.connected = false;
          logger.warn({ err: (err as Error)?.message ?? String(err), retryInMs }, 'pod informer lost the API server');
        },
      });
    });
    this.reconciler.start();
    await Promise.all([this.discovery.start(), pods]);
  }

  /** Both watches have listed, and there is a pool to claim from. */
  isReady(): boolean {
    return this.podsSynced && this.discovery.synced && this.discovery.names().length > 0;
  }

  pools(): readonly string[] {
    return this.discovery.names();
  }

  /**
   * Records the delivery as the session's first activity, which the next flush writes (a claim
   * whose activity never moves past its claim time is an orphan). A session in use writes its
   * activity then anyway, so the confirmation costs no write of its own and a claim stays one
   * write. A replica that dies before its flush leaves its fresh claims to end as orphans after
   * the bound, unless their clients use them meanwhile, through any replica.
   */
  confirm(session: SessionWorker): void {
    this.reconciler.recordActivity(session.hash, Math.max((this.o.now ?? Date.now)(), session.createdAt + 1));
  }

  /** A claim that does not find a warm pod at its first try records how long it waited (sizing reads it as a miss). */
  claim(request: ClaimRequest): Promise<SessionWorker> {
    if (!this.connected || !this.answering) return Promise.reject(errors.backendUnavailable(this.o.retryAfterS));
    const now = this.o.now ?? Date.now;
    const asked = now();
    let waiting = this.o.queue.waitingFor(request.pools);
    return claimInOrder(this.o.queue, request.pools, async () => {
      const waitedMs = waiting ? Math.max(1, now() - asked) : 0;
      waiting = true;
      const got = await this.claimer.tryClaim(request, waitedMs);
      if (got === undefined && !this.answering) throw errors.backendUnavailable(this.o.retryAfterS);
      return got;
    }, request.signal);
  }

  lookup(hash: string): SessionWorker | undefined {
    const pod = this.index.get(hash);
    return pod ? sessionOf(pod, this.o.workerPort) : undefined;
  }

  /**
   * This replica learns of another replica's claim through its watch, some milliseconds after
   * that claim's client got its session id (tens under load). A client's next request may well
   * come here at once (a Service spreads connections over replicas) and must not be told that
   * its session does not exist: so an unknown session is waited for, up to `catchUpMs`, until
   * the watch shows it or its end.
   */
  async waitForSession(hash: string): Promise<SessionWorker | undefined> {
    if (!this.stopped) await this.index.wait(hash, this.o.catchUpMs ?? 2000);
    return this.lookup(hash);
  }

  *sessions(): Iterable<SessionWorker> {
    for (const pod of this.index.values()) yield sessionOf(pod, this.o.workerPort);
  }

  sessionCount(client?: string): number {
    return this.index.count(client);
  }

  recordActivity(hash: string, at: number): void {
    this.reconciler.recordActivity(hash, at);
  }

  /**
   * Marks the pod ended (so other replicas answer 410 session_ended, not session_lost), then
   * deletes it. Both writes are conditional: an idle, lifetime or orphan end carries the version
   * the decision was made on, so activity written meanwhile by another replica wins.
   */
  async release(session: SessionWorker, reason: EndReason): Promise<boolean> {
    const { hash } = session;
    const pod = this.index.ending(hash);
    if (!pod) return false;
    this.reconciler.forgetActivity(hash);
    const guarded = reason === 'idle' || reason === 'lifetime' || reason === 'orphan';
    try {
      const marked = await this.o.api.patchPod(pod.name, guarded ? session.version : undefined, {}, { [ENDED]: reason });
      await this.o.api.deletePod(pod.name, pod.uid, guarded ? marked.resourceVersion : undefined);
      this.events.ended(pod, hash, reason);
      return true;
    } catch (err) {
      const current = this.cache.view(pod.name);
      const restore = () => this.index.restore(hash, current?.uid === pod.uid ? current : undefined);
      if (!isConflict(err)) {
        restore();
        this.o.logger.warn({ pod: pod.name, err: (err as Error).message }, 'cannot end session');
        throw errors.backendUnavailable(this.o.retryAfterS, err);
      }
      // The pod changed since the decision (activity written by another replica, or another
      // replica ended it first): put the session back and let the watch speak.
      if (guarded) restore();
      return false;
    }
  }

  /**
   * A hung API server keeps the watch open and silent, so only a request that gets no answer
   * tells. From then on claims fail fast (the queued ones too, at once) instead of each waiting
   * out its own deadline, and the reconciler probes until the API server answers again.
   */
  private answered(yes: boolean): void {
    const was = this.answering;
    this.answering = yes;
    if (yes) {
      if (was) return;
      this.o.logger.info('the API server answers again');
      this.wakePools();
      return;
    }
    // Every failed probe wakes the claims queued meanwhile, so they fail now too.
    this.o.queue.wakeAll();
    if (!was) return;
    this.o.logger.warn('the API server does not answer; claims fail until it does');
    this.reconciler.probeSoon();
  }

  /** Wakes as many waiters of each pool as it has warm pods. */
  private wakePools(): void {
    for (const pool of this.discovery.names()) this.o.queue.wake(pool, this.cache.counts(pool).warm);
  }

  snapshot(): PoolSnapshot {
    const pools: PoolSnapshot['pools'] = {};
    for (const pool of this.discovery.values()) {
      pools[pool.name] = { ...this.cache.counts(pool.name), size: this.discovery.target(pool), ...(pool.problem ? { problem: pool.problem } : {}) };
    }
    const problem = this.discovery.synced && this.discovery.names().length === 0 ? `no pool Deployment (labelled ${POOL_LABEL}) in the namespace` : undefined;
    return { backend: this.name, ...this.cache.counts(), pendingClaims: this.o.queue.length, ...(problem ? { problem } : {}), pools };
  }

  watchState(): WatchState {
    if (!this.podsSynced || !this.discovery.synced) return 'listing';
    if (!this.connected) return 'reconnecting';
    return this.answering ? 'in_sync' : 'api_silent';
  }

  onGone(listener: GoneListener): void {
    this.index.onGone(listener);
  }

  /** Stops watching. Pods and sessions stay: they belong to the cluster, not to this replica. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.reconciler.stop();
    await Promise.all([this.discovery.stop(), this.pods?.stop()]);
  }
}

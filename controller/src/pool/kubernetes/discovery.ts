/**
 * Pool discovery: the Deployment watch feeds the pool registry, and each pool's Deployment is
 * kept at its target by the scaler. The target is decided every second from the pods the watch
 * shows (sizer.ts); a pool whose min-size equals its max-size simply keeps that size. A pool that
 * appears wakes the claims waiting for it; one that goes wakes every waiting claim, so those
 * waiting for it alone fail now, not at their deadline.
 */
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { ClaimQueue } from '../claim-queue.js';
import { TICK_MS, type Decision } from '../sizing.js';
import type { KubeApi, PodInfo, Watch } from './api.js';
import type { PodEvents } from './events.js';
import { POOL_LABEL } from './labels.js';
import { PoolRegistry, type Pool, type PoolSettings } from './pools.js';
import { Scaler } from './scaler.js';
import { Sizer } from './sizer.js';

export interface PoolDiscoveryOptions {
  api: KubeApi;
  queue: ClaimQueue;
  logger: Logger;
  metrics: Metrics;
  events: PodEvents;
  labelKey: string;
  defaults: PoolSettings;
  /** A pool's warm pods now. */
  warm: (pool: string) => number;
  /** Whether a scale write got an answer from the API server (any answer). */
  reachable: (answered: boolean) => void;
  now?: () => number;
}

export class PoolDiscovery {
  private readonly registry: PoolRegistry;
  private readonly scaler: Scaler;
  private readonly sizer: Sizer;
  private readonly now: () => number;
  /** Each pool's latest decision, and the tick since which decisions ask for fewer replicas than it has. */
  private readonly decided = new Map<string, { decision: Decision; lowerSince?: number }>();
  private timer: NodeJS.Timeout | undefined;
  private watch: Watch | undefined;
  /** The Deployment watch has listed once. */
  synced = false;

  constructor(private readonly o: PoolDiscoveryOptions) {
    const { api, queue, logger, metrics, events, labelKey, defaults } = o;
    this.now = o.now ?? Date.now;
    this.sizer = new Sizer(this.now());
    this.scaler = new Scaler({ api, logger, reachable: o.reachable, resized: (deployment, was, replicas, why) => this.resized(deployment, was, replicas, why) });
    this.registry = new PoolRegistry({
      labelKey, defaults, logger, metrics, events,
      changed: (pool, added) => {
        this.size(pool);
        if (!added) return;
        logger.info({ pool: pool.name, deployment: pool.deployment.name, ...pool.settings }, 'pool found');
        queue.wake(pool.name, o.warm(pool.name));
      },
      removed: (pool, deployment) => {
        this.scaler.forget(deployment);
        this.sizer.forget(pool);
        this.decided.delete(pool);
        for (const gauge of [metrics.poolSize, metrics.poolTargetSize, metrics.poolArrivalRate, metrics.poolRefillSeconds, metrics.poolPredictedMissRate, metrics.poolObservedMissRate]) gauge.remove({ pool });
        logger.info({ pool, deployment }, 'pool gone: it takes no new claims; its sessions go on');
        queue.wakeAll();
      },
    });
  }

  /** Resolves after the first list; from then on every pool is sized every second. */
  start(): Promise<void> {
    const { logger } = this.o;
    this.timer = setInterval(() => {
      for (const pool of this.registry.values()) this.size(pool);
    }, TICK_MS);
    this.timer.unref();
    return new Promise<void>((firstSync) => {
      this.watch = this.o.api.watchDeployments(POOL_LABEL, {
        upsert: (d) => this.registry.upsert(d),
        remove: (d) => this.registry.remove(d),
        synced: () => {
          this.synced = true;
          logger.info({ pools: this.registry.names() }, 'deployment informer in sync');
          firstSync();
        },
        broken: (err, retryInMs) => logger.warn({ err: (err as Error)?.message ?? String(err), retryInMs }, 'deployment informer lost the API server'),
      });
    });
  }

  /** A pod as the pod watch shows it: sizing's inputs. */
  seen(pod: PodInfo): void {
    this.sizer.seen(pod, this.o.labelKey);
  }

  /** A pod the pod watch shows deleted. */
  gone(pod: PodInfo): void {
    this.sizer.gone(pod);
  }

  /** The size a pool is kept at now (its min-size until it has been sized). */
  target(pool: Pool): number {
    return this.decided.get(pool.name)?.decision.target ?? pool.settings.minSize;
  }

  /**
   * Decides a pool's size and hands it to the scaler. A decision to shrink is acted on only once
   * the decisions have asked to shrink for over a second (two ticks): a replica whose watch is a
   * moment behind another's (which grew the pool on claims this one has not seen yet) does not
   * undo it, however many Deployment events arrive meanwhile.
   */
  private size(pool: Pool): void {
    const { metrics } = this.o;
    const current = pool.deployment.replicas;
    const decision = this.sizer.decide(pool.name, pool.settings, current, this.now());
    const lowerSince = decision.target < current ? this.decided.get(pool.name)?.lowerSince ?? decision.tick : undefined;
    this.decided.set(pool.name, { decision, lowerSince });
    const target = lowerSince !== undefined && decision.tick - lowerSince < 2 * TICK_MS ? current : decision.target;
    const labels = { pool: pool.name };
    metrics.poolSize.set(labels, current);
    metrics.poolTargetSize.set(labels, decision.target);
    metrics.poolArrivalRate.set(labels, decision.rate);
    metrics.poolRefillSeconds.set(labels, decision.refillS);
    metrics.poolPredictedMissRate.set(labels, decision.predictedMissRate);
    metrics.poolObservedMissRate.set(labels, this.sizer.observedMissRate(pool.name, pool.settings, decision.tick));
    this.scaler.observe(pool.deployment.name, current, pool.deployment.resourceVersion, target, {
      pool: pool.name,
      claimsPerSecond: round(decision.rate),
      refillSeconds: round(decision.refillS),
      recommended: decision.recommended,
      targetMissRate: pool.settings.targetMissRate,
      predictedMissRate: round(decision.predictedMissRate, 5),
    });
  }

  /** One Event and one metric per resize this replica wrote (the scaler logs it). */
  private resized(deployment: string, was: number, replicas: number, why: Readonly<Record<string, unknown>>): void {
    const pool = [...this.registry.values()].find((p) => p.deployment.name === deployment);
    if (!pool) return;
    this.o.metrics.poolResizes.inc({ pool: pool.name });
    this.o.events.resized(pool.deployment, `pool ${pool.name}: ${was} -> ${replicas} replicas; `
      + `${why.claimsPerSecond} claims/s, refill ${why.refillSeconds} s, target miss rate ${why.targetMissRate}, `
      + `predicted ${why.predictedMissRate}; bounds ${pool.settings.minSize}-${pool.settings.maxSize}`);
  }

  /** The pools that take claims now. */
  names(): string[] {
    return this.registry.names();
  }

  has(pool: string): boolean {
    return this.registry.get(pool) !== undefined;
  }

  values(): Iterable<Pool> {
    return this.registry.values();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.scaler.stop();
    await this.watch?.stop();
  }
}

const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits;

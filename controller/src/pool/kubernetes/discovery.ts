/**
 * Pool discovery: the Deployment watch feeds the pool registry, and each pool's Deployment is
 * kept at its target by the scaler. A pool that appears wakes the claims waiting for it; one that
 * goes wakes every waiting claim, so those waiting for it alone fail now, not at their deadline.
 */
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { ClaimQueue } from '../claim-queue.js';
import type { KubeApi, Watch } from './api.js';
import type { PodEvents } from './events.js';
import { POOL_LABEL } from './labels.js';
import { PoolRegistry, targetOf, type Pool, type PoolSettings } from './pools.js';
import { Scaler } from './scaler.js';

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
}

export class PoolDiscovery {
  private readonly registry: PoolRegistry;
  private readonly scaler: Scaler;
  private watch: Watch | undefined;
  /** The Deployment watch has listed once. */
  synced = false;

  constructor(private readonly o: PoolDiscoveryOptions) {
    const { api, queue, logger, metrics, events, labelKey, defaults } = o;
    this.scaler = new Scaler({ api, logger, reachable: o.reachable });
    this.registry = new PoolRegistry({
      labelKey, defaults, logger, metrics, events,
      changed: (pool, added) => {
        this.scaler.observe(pool.deployment.name, pool.deployment.replicas, targetOf(pool));
        if (!added) return;
        logger.info({ pool: pool.name, deployment: pool.deployment.name, ...pool.settings }, 'pool found');
        queue.wake(pool.name, o.warm(pool.name));
      },
      removed: (pool, deployment) => {
        this.scaler.forget(deployment);
        logger.info({ pool, deployment }, 'pool gone: it takes no new claims; its sessions go on');
        queue.wakeAll();
      },
    });
  }

  /** Resolves after the first list. */
  start(): Promise<void> {
    const { logger } = this.o;
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
    this.scaler.stop();
    await this.watch?.stop();
  }
}

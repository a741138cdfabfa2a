/**
 * The claim path: take, from the first pool of the claim's list that has one, the candidate this
 * replica ranks highest in the pod cache, and bind it
 * with one conditional merge patch that sets every label and annotation of the claim at once.
 * A conflict drops that candidate (the watch brings it back if it is still free) and tries the
 * next; nothing is retried against a view the watch has not confirmed.
 */
import { errors } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Metrics } from '../../metrics.js';
import type { ClaimRequest, SessionWorker } from '../types.js';
import { isConflict, isQueued, type KubeApi, type PodInfo } from './api.js';
import type { PodEvents } from './events.js';
import { CLAIM_WAIT, CLAIMED_AT, CLAIMED_BY, CLIENT_LABEL, LAST_ACTIVITY, POOL_LABEL, SESSION_LABEL, sessionOf, TAKEN } from './labels.js';
import type { PodCache } from './pod-cache.js';

export interface ClaimerOptions {
  api: KubeApi;
  cache: PodCache;
  events: PodEvents;
  logger: Logger;
  metrics: Metrics;
  replica: string;
  labelKey: string;
  workerPort: number;
  retryAfterS: number;
  /** Conflicting candidates one claim tries before it waits for the watch. */
  maxAttempts: number;
  /** Whether a pool takes claims now (its Deployment is a valid pool). */
  listed: (pool: string) => boolean;
  /** Whether the watch is in step with the API server: claims fail fast when it is not. */
  connected: () => boolean;
  /** A claim write failed without an answer: it may still land, on a pod no client will use. */
  unanswered: (hash: string) => void;
  now: () => number;
}

/**
 * Rendezvous hashing: every replica ranks the pods by a hash of its own random seed and the pod
 * name. Two replicas claiming at once then mostly prefer different pods, where a fresh random
 * pick per claim collides as soon as few pods are left (`npm run bench`: 3 replicas reached
 * 0.62x the raw write rate with random picks).
 */
export function rendezvous(seed: number): (name: string) => number {
  return (name) => {
    let h = seed ^ 0x811c9dc5;
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
    h ^= h >>> 13;
    h = Math.imul(h, 0x5bd1e995);
    return (h ^ (h >>> 15)) >>> 0;
  };
}

export class Claimer {
  constructor(private readonly o: ClaimerOptions) {}

  /**
   * One claim round. Resolves undefined when no pool of the request has a candidate or
   * `maxAttempts` conflicts were met: the caller then waits for the watch. Rejects with 503
   * no_warm_worker when none of its pools takes claims any more (their Deployments are gone).
   * `waitedMs`: how long the claim has waited for a warm pod so far, written with it.
   */
  async tryClaim(request: ClaimRequest, waitedMs = 0): Promise<SessionWorker | undefined> {
    for (let attempt = 0; attempt < this.o.maxAttempts; attempt++) {
      if (!this.o.connected()) throw errors.backendUnavailable(this.o.retryAfterS);
      const pools = request.pools.filter(this.o.listed);
      if (pools.length === 0) throw errors.noWarmWorker(this.o.retryAfterS);
      const pod = this.best(pools);
      if (!pod) return undefined;
      this.o.cache.take(pod.name);
      const at = new Date(this.o.now()).toISOString();
      try {
        const claimed = await this.o.api.patchPod(
          pod.name,
          pod.resourceVersion,
          { [this.o.labelKey]: TAKEN, [SESSION_LABEL]: request.hash, [CLIENT_LABEL]: request.client },
          { [CLAIMED_AT]: at, [CLAIMED_BY]: this.o.replica, [LAST_ACTIVITY]: at, [CLAIM_WAIT]: String(waitedMs) },
        );
        this.o.cache.reserve(claimed);
        this.o.events.claimed(claimed, request.hash);
        return sessionOf(claimed, this.o.workerPort);
      } catch (err) {
        if (isQueued(err)) {
          // Never sent: the pod is as it was, and the API server is busy, not gone.
          this.o.cache.untake(pod.name);
          throw errors.backendUnavailable(this.o.retryAfterS, err);
        }
        if (!isConflict(err)) {
          this.o.cache.untake(pod.name);
          this.o.logger.warn({ pod: pod.name, err: (err as Error).message }, 'claim failed');
          this.o.unanswered(request.hash);
          throw errors.backendUnavailable(this.o.retryAfterS, err);
        }
        this.o.cache.drop(pod.name, pod.resourceVersion);
        this.o.metrics.claimsTotal.inc({ pool: pod.labels[POOL_LABEL] ?? '', result: 'conflict' });
      }
    }
    return undefined;
  }

  /** The preferred candidate of the first pool that has one. */
  private best(pools: readonly string[]): PodInfo | undefined {
    for (const pool of pools) {
      const pod = this.o.cache.best(pool);
      if (pod) return pod;
    }
    return undefined;
  }
}

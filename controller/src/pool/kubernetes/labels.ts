/**
 * The protocol on the pods themselves: what a claim writes, what every replica reads back.
 * Sessions live here, not in any replica, so each replica can route each session.
 */
import type { SessionWorker } from '../types.js';
import type { PodInfo } from './api.js';

export const SESSION_LABEL = 'warmpool.dev/session';
export const CLIENT_LABEL = 'warmpool.dev/client';
export const CLAIMED_AT = 'warmpool.dev/claimed-at';
export const CLAIMED_BY = 'warmpool.dev/claimed-by';
/** How long the claim waited for a warm pod, ms (0: one was warm): what adaptive sizing reads misses from. */
export const CLAIM_WAIT = 'warmpool.dev/claim-wait-ms';
export const LAST_ACTIVITY = 'warmpool.dev/last-activity';
/** Set just before warmpool deletes a claimed pod, so every replica can tell an end from a loss. */
export const ENDED = 'warmpool.dev/ended';
export const FREE = 'not_assigned';
export const TAKEN = 'assigned';
export const HASH_SHAPE = /^[0-9a-f]{40}$/;

export function epoch(value: string | undefined): number {
  const ms = value ? Date.parse(value) : NaN;
  return Number.isFinite(ms) ? ms : 0;
}

/** A container restarted in place after the claim has forgotten the conversation. */
export function restartedSinceClaim(pod: PodInfo): boolean {
  return pod.restartedAt !== undefined && pod.restartedAt >= epoch(pod.annotations[CLAIMED_AT]);
}

/** Whether a claimed pod can still serve its session (deletion aside). */
export function canServe(pod: PodInfo): boolean {
  return !restartedSinceClaim(pod) && pod.phase !== 'Failed' && pod.phase !== 'Succeeded' && pod.podIP !== undefined;
}

/** On a pool's Deployment, its pod template and its pods: the pool's name. */
export const POOL_LABEL = 'warmpool.dev/pool';

export function sessionOf(pod: PodInfo, workerPort: number): SessionWorker {
  return {
    hash: pod.labels[SESSION_LABEL] as string,
    worker: pod.name,
    endpoint: { host: pod.podIP as string, port: workerPort },
    createdAt: epoch(pod.annotations[CLAIMED_AT]),
    lastActivity: epoch(pod.annotations[LAST_ACTIVITY]),
    client: pod.labels[CLIENT_LABEL] ?? '',
    pool: pod.labels[POOL_LABEL] ?? '',
    version: pod.resourceVersion,
  };
}

/**
 * Keeps each pool Deployment's replicas at its pool's target, level-based: whenever the watch
 * shows a Deployment whose replicas differ from the target (at start, after a settings change,
 * or because someone else scaled it), the target is written through the scale subresource,
 * conditional on the Deployment's version as seen. A failed write is retried, backing off,
 * against the latest view. Every replica does this; the writes agree, so it needs no leader.
 * Replicas deciding the same resize at the same tick race for it: one write lands, the others
 * meet a conflict and wait for the watch, which shows the resize done (so one log line and one
 * Event per resize, not one per replica). When they do not agree (replicas with different defaults, in
 * the middle of a rollout that changes POOL_SIZE, or another tool scaling the Deployment), each
 * write undone at once makes the next one wait twice as long, so a fight costs a few writes a
 * minute, not a loop.
 */
import type { Logger } from '../../log.js';
import { isConflict, isQueued, statusOf, type KubeApi } from './api.js';

const RETRY_MS = 500;
const MAX_RETRY_MS = 5_000;
/** The shortest gap between two writes to one Deployment, and the longest it grows to. */
const MIN_GAP_MS = 500;
const MAX_GAP_MS = 30_000;

export interface ScalerOptions {
  api: KubeApi;
  logger: Logger;
  /** Whether a write got an answer from the API server (any answer). */
  reachable: (answered: boolean) => void;
  /** A write landed: the Deployment went from `was` to `replicas` for the reasons `why`. */
  resized?: (deployment: string, was: number, replicas: number, why: Readonly<Record<string, unknown>>) => void;
  now?: () => number;
}

interface Wanted {
  replicas: number;
  /** The Deployment's resourceVersion as seen with `replicas`. */
  version: string;
  target: number;
  /** The figures the target was decided from (logged with the write). */
  why: Readonly<Record<string, unknown>>;
}

export class Scaler {
  private readonly wanted = new Map<string, Wanted>();
  private readonly writing = new Set<string>();
  private readonly retries = new Map<string, NodeJS.Timeout>();
  /** Each Deployment's last write and the gap the next one keeps from it. */
  private readonly written = new Map<string, { at: number; gapMs: number }>();
  private readonly now: () => number;
  private stopped = false;

  constructor(private readonly o: ScalerOptions) {
    this.now = o.now ?? Date.now;
  }

  /** The Deployment's replicas and version as the watch shows them, its pool's target, and why that target. */
  observe(deployment: string, replicas: number, version: string, target: number, why: Readonly<Record<string, unknown>> = {}): void {
    const known = this.wanted.get(deployment);
    if (known && known.replicas === replicas && known.version === version && known.target === target) return;
    this.wanted.set(deployment, { replicas, version, target, why });
    void this.converge(deployment, RETRY_MS);
  }

  /** The Deployment is no pool any more: leave its replicas alone. */
  forget(deployment: string): void {
    this.wanted.delete(deployment);
    this.written.delete(deployment);
    clearTimeout(this.retries.get(deployment));
    this.retries.delete(deployment);
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.retries.values()) clearTimeout(timer);
    this.retries.clear();
  }

  private async converge(deployment: string, retryMs: number): Promise<void> {
    const want = this.wanted.get(deployment);
    if (this.stopped || !want || want.replicas === want.target || this.writing.has(deployment) || this.retries.has(deployment)) return;
    const lastWrite = this.written.get(deployment);
    const wait = this.untilNextWrite(deployment);
    if (wait > 0) {
      this.later(deployment, wait, () => void this.converge(deployment, retryMs));
      return;
    }
    this.writing.add(deployment);
    const { replicas, version, target, why } = want;
    let next: number | undefined;
    let conflicted = false;
    try {
      await this.o.api.scaleDeployment(deployment, target, version);
      this.o.reachable(true);
      this.o.logger.info({ deployment, replicas: target, was: replicas, ...why }, 'pool size set');
      this.o.resized?.(deployment, replicas, target, why);
      // Written: until the watch shows otherwise, the Deployment has its target.
      if (this.wanted.get(deployment) === want) want.replicas = target;
    } catch (err) {
      const status = statusOf(err);
      // A write never sent says nothing of whether the API server answers.
      if (!isQueued(err)) this.o.reachable(status !== undefined);
      // 404: the Deployment is gone (the watch is about to say so); a new one is observed afresh.
      if (status === 404) this.wanted.delete(deployment);
      // 409: it changed since it was seen (most often: another replica made this very resize).
      // The watch shows the change, and the next write, if one is still due, goes from there.
      else if (isConflict(err)) conflicted = true;
      else {
        this.o.logger.warn({ deployment, err: (err as Error).message, retryInMs: retryMs }, 'cannot set the pool size; retrying');
        next = retryMs;
      }
    } finally {
      this.writing.delete(deployment);
    }
    if (conflicted) {
      // Lost a race, not undone by a fight: the spacing of writes goes on from the last one that landed.
      if (lastWrite) this.written.set(deployment, lastWrite);
      else this.written.delete(deployment);
      if (this.wanted.get(deployment)?.version !== version) void this.converge(deployment, RETRY_MS);
      return;
    }
    if (next === undefined) void this.converge(deployment, RETRY_MS);
    else this.later(deployment, next, () => void this.converge(deployment, Math.min(retryMs * 2, MAX_RETRY_MS)));
  }

  /** How long the next write to `deployment` must wait; at 0 the write about to go is recorded. */
  private untilNextWrite(deployment: string): number {
    const last = this.written.get(deployment);
    const now = this.now();
    if (last && now < last.at + last.gapMs) return last.at + last.gapMs - now;
    // A write soon after the previous one means that one was undone: double the gap.
    const gapMs = last && now < last.at + 2 * last.gapMs ? Math.min(2 * last.gapMs, MAX_GAP_MS) : MIN_GAP_MS;
    this.written.set(deployment, { at: now, gapMs });
    return 0;
  }

  private later(deployment: string, ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.retries.delete(deployment);
      run();
    }, ms);
    timer.unref();
    this.retries.set(deployment, timer);
  }
}

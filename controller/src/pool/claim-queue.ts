import { errors } from '../errors.js';

interface Waiter {
  wake: () => void;
  since: number;
  /** The pools whose workers this claim takes. */
  pools: readonly string[];
}

export interface ClaimQueueOptions {
  timeoutMs: number;
  maxPending: number;
  /** Seconds to put in Retry-After when a claim gives up. */
  retryAfterS: () => number;
  onLength?: (length: number) => void;
  onWait?: (seconds: number) => void;
  now?: () => number;
}

/**
 * Claims that found no warm worker wait here, first come first served. A backend calls
 * `wake(pool, n)` when n workers of `pool` may have become claimable: the oldest waiters that
 * take that pool are woken; each retries its claim and, if it loses the race, comes back to the
 * head of the line with the deadline it already had.
 */
export class ClaimQueue {
  private readonly waiters: Waiter[] = [];
  private readonly now: () => number;

  constructor(private readonly options: ClaimQueueOptions) {
    this.now = options.now ?? Date.now;
  }

  get length(): number {
    return this.waiters.length;
  }

  /** Whether a claim on any of `pools` is waiting (a new claim on them then queues behind it). */
  waitingFor(pools: readonly string[]): boolean {
    return this.waiters.some((w) => w.pools.some((p) => pools.includes(p)));
  }

  /** The claim deadline for a request that starts now. */
  deadline(): number {
    return this.now() + this.options.timeoutMs;
  }

  /**
   * Waits for a wake-up or the deadline. `again` puts the waiter at the head: it was already
   * first in line before losing a race. Rejects with 503 `claim_queue_full` or `no_warm_worker`,
   * or with 499 `client_closed` when `signal` aborts: the waiter leaves the line at once, so a
   * client that gave up never has a worker claimed for it.
   */
  wait(deadline: number, pools: readonly string[], again = false, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(errors.clientClosed());
    const remaining = deadline - this.now();
    if (remaining <= 0) return Promise.reject(errors.noWarmWorker(this.options.retryAfterS()));
    if (!again && this.waiters.length >= this.options.maxPending) {
      return Promise.reject(errors.claimQueueFull(this.options.retryAfterS()));
    }
    return new Promise((resolve, reject) => {
      const settle = (err?: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', abort);
        this.options.onWait?.((this.now() - waiter.since) / 1000);
        if (err) reject(err);
        else resolve();
      };
      const waiter: Waiter = { since: this.now(), pools, wake: () => settle() };
      const leave = (err: Error) => {
        this.remove(waiter);
        settle(err);
      };
      const abort = () => leave(errors.clientClosed());
      const timer = setTimeout(() => leave(errors.noWarmWorker(this.options.retryAfterS())), remaining);
      signal?.addEventListener('abort', abort, { once: true });
      if (again) this.waiters.unshift(waiter);
      else this.waiters.push(waiter);
      this.options.onLength?.(this.waiters.length);
    });
  }

  /** Wakes up to `n` waiters that take `pool`, oldest first. */
  wake(pool: string, n = 1): void {
    let woken = 0;
    for (let i = 0; i < this.waiters.length && woken < n;) {
      const waiter = this.waiters[i] as Waiter;
      if (!waiter.pools.includes(pool)) {
        i++;
        continue;
      }
      this.waiters.splice(i, 1);
      waiter.wake();
      woken++;
    }
    if (woken > 0) this.options.onLength?.(this.waiters.length);
  }

  /** Wakes every waiter, so each retries now (and fails fast when its backend cannot claim). */
  wakeAll(): void {
    for (const waiter of this.waiters.splice(0)) waiter.wake();
    this.options.onLength?.(0);
  }

  private remove(waiter: Waiter): void {
    const i = this.waiters.indexOf(waiter);
    if (i >= 0) this.waiters.splice(i, 1);
    this.options.onLength?.(this.waiters.length);
  }
}

/**
 * The claim loop both backends share. A request tries at once only when nobody is waiting for
 * one of its pools (so late arrivals cannot overtake the queue); otherwise, and after every
 * failed try, it waits for a wake-up. A woken waiter that still finds nothing goes back to the
 * head of the line.
 */
export async function claimInOrder<T>(
  queue: ClaimQueue,
  pools: readonly string[],
  tryClaim: () => Promise<T | undefined> | T | undefined,
  signal?: AbortSignal,
): Promise<T> {
  const deadline = queue.deadline();
  let woken = false;
  for (;;) {
    if (signal?.aborted) throw errors.clientClosed();
    if (woken || !queue.waitingFor(pools)) {
      const got = await tryClaim();
      if (got !== undefined) return got;
    }
    await queue.wait(deadline, pools, woken, signal);
    woken = true;
  }
}

/**
 * Per-client token buckets for session creation. A claim is the one expensive thing a client can
 * make this router do (a pod leaves the pool and Kubernetes starts another), so a client that
 * ends its sessions as fast as it opens them must still not churn the pool faster than this.
 *
 * Each bucket holds up to `perMinute` tokens and refills continuously at `perMinute` a minute, so
 * a client may start a burst of `perMinute` sessions and then one every `60 / perMinute` seconds.
 * The table is bounded: a bucket that has refilled to full says nothing a fresh bucket would not,
 * so those go first when the table outgrows `maxKeys`; if a flood of distinct clients leaves none
 * full, the least recently charged go (forgiving them is the price of a bounded table).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perMs: number;

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 10_000,
  ) {
    this.perMs = perMinute / 60_000;
  }

  /** Charges one creation to `key`: 0 when allowed, else the whole seconds until it would be. */
  take(key: string): number {
    if (this.perMinute === 0) return 0;
    const now = this.now();
    const tokens = this.level(key, now);
    if (tokens < 1) return Math.max(1, Math.ceil((1 - tokens) / this.perMs / 1000));
    // Delete first so that Map order is the order of the last charge, oldest first.
    this.buckets.delete(key);
    this.buckets.set(key, { tokens: tokens - 1, at: now });
    if (this.buckets.size > this.maxKeys) this.prune(now);
    return 0;
  }

  /** Buckets held, for tests of the bound. */
  get size(): number {
    return this.buckets.size;
  }

  private level(key: string, now: number): number {
    const b = this.buckets.get(key);
    return b ? Math.min(this.perMinute, b.tokens + (now - b.at) * this.perMs) : this.perMinute;
  }

  /** Down to 90% of the bound, so a table at its bound is not swept on every single charge. */
  private prune(now: number): void {
    const target = Math.floor(this.maxKeys * 0.9);
    for (const key of this.buckets.keys()) {
      if (this.level(key, now) >= this.perMinute) this.buckets.delete(key);
    }
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= target) break;
      this.buckets.delete(key);
    }
  }
}

import { errors } from '../../errors.js';
import { claimInOrder, type ClaimQueue } from '../claim-queue.js';
import type { ClaimRequest, EndReason, GoneListener, PoolBackend, PoolCounts, PoolSnapshot, SessionWorker } from '../types.js';
import type { LocalPool } from './index.js';

/**
 * Several local pools behind one backend (`LOCAL_POOLS`): each keeps its own workers; a claim
 * takes from the first pool of its list with a warm worker, or waits for whichever turns warm
 * first. Sessions are found in the pool that holds them.
 */
export class LocalPools implements PoolBackend {
  readonly name = 'local';
  private readonly byName: ReadonlyMap<string, LocalPool>;

  constructor(pools: readonly LocalPool[], private readonly queue: ClaimQueue) {
    this.byName = new Map(pools.map((p) => [p.poolName, p]));
  }

  async start(): Promise<void> {
    await Promise.all([...this.byName.values()].map((p) => p.start()));
  }

  /** Ready while at least one pool can serve: a broken pool beside a working one is that pool's problem. */
  isReady(): boolean {
    return [...this.byName.values()].some((p) => p.isReady());
  }

  pools(): readonly string[] {
    return [...this.byName.keys()];
  }

  claim(request: ClaimRequest): Promise<SessionWorker> {
    const pools = request.pools.map((name) => {
      const pool = this.byName.get(name);
      if (!pool) throw errors.poolNotFound(name);
      return pool;
    });
    return claimInOrder(this.queue, request.pools, async () => {
      for (const pool of pools) {
        const got = await pool.take(request);
        if (got) return got;
      }
      return undefined;
    }, request.signal);
  }

  lookup(hash: string): SessionWorker | undefined {
    for (const pool of this.byName.values()) {
      const found = pool.lookup(hash);
      if (found) return found;
    }
    return undefined;
  }

  /** This process made every session it has: what it does not know does not exist. */
  async waitForSession(hash: string): Promise<SessionWorker | undefined> {
    return this.lookup(hash);
  }

  *sessions(): Iterable<SessionWorker> {
    for (const pool of this.byName.values()) yield* pool.sessions();
  }

  sessionCount(client?: string): number {
    let n = 0;
    for (const pool of this.byName.values()) n += pool.sessionCount(client);
    return n;
  }

  release(session: SessionWorker, reason: EndReason): Promise<boolean> {
    return this.byName.get(session.pool)?.release(session, reason) ?? Promise.resolve(false);
  }

  recordActivity(hash: string, at: number): void {
    for (const pool of this.byName.values()) pool.recordActivity(hash, at);
  }

  confirm(): void {}

  snapshot(): PoolSnapshot {
    const pools: Record<string, PoolCounts> = {};
    const total = { warm: 0, warming: 0, assigned: 0 };
    for (const [name, pool] of this.byName) {
      const counts = pool.counts();
      pools[name] = counts;
      for (const k of ['warm', 'warming', 'assigned'] as const) total[k] += counts[k];
    }
    const problems = Object.entries(pools).filter(([, c]) => c.problem !== undefined);
    // The backend as a whole is stuck only when every pool is.
    const problem = problems.length === this.byName.size ? problems.map(([n, c]) => `${n}: ${c.problem}`).join('; ') : undefined;
    return { backend: this.name, ...total, pendingClaims: this.queue.length, ...(problem ? { problem } : {}), pools };
  }

  onGone(listener: GoneListener): void {
    for (const pool of this.byName.values()) pool.onGone(listener);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.byName.values()].map((p) => p.stop()));
  }
}

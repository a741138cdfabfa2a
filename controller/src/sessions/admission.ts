import { errors } from '../errors.js';
import { RateLimiter } from './rate-limit.js';

export interface AdmissionLimits {
  maxSessions: number;
  maxPerClient: number;
  /** New sessions one client may start per minute (token bucket); 0 is no limit. */
  createsPerMinute: number;
  /** Seconds for Retry-After on capacity errors. */
  retryAfterS: number;
}

/**
 * Who may start a session now: the replica's capacity, each client's own cap and its creation
 * rate. Claims still in flight count as sessions, so a burst cannot overshoot a cap while its
 * claims wait for workers. A place is held from `admit` until the returned function is called.
 */
export class Admission {
  private claiming = 0;
  private readonly claimingByClient = new Map<string, number>();
  private readonly creations: RateLimiter;

  constructor(private readonly limits: AdmissionLimits, now: () => number) {
    this.creations = new RateLimiter(limits.createsPerMinute, now);
  }

  /** Throws the client's error (429/503) when `client` may not start a session beside the `live` ones (all, or a client's). */
  admit(client: string, live: (client?: string) => number): () => void {
    const active = this.claiming + live();
    const mine = (this.claimingByClient.get(client) ?? 0) + live(client);
    if (active >= this.limits.maxSessions) throw errors.atCapacity(this.limits.retryAfterS);
    if (mine >= this.limits.maxPerClient) throw errors.clientLimit(this.limits.retryAfterS);
    // Charged only for a creation that passed the other limits: it is the pool churn being paced.
    const wait = this.creations.take(client);
    if (wait > 0) throw errors.rateLimited(wait);
    this.claiming++;
    this.claimingByClient.set(client, (this.claimingByClient.get(client) ?? 0) + 1);
    return () => {
      this.claiming--;
      const left = (this.claimingByClient.get(client) ?? 1) - 1;
      if (left > 0) this.claimingByClient.set(client, left);
      else this.claimingByClient.delete(client);
    };
  }
}

import { createHash } from 'node:crypto';
import { errors } from './errors.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { EndReason, PoolBackend, SessionWorker } from './pool/types.js';
import { RateLimiter } from './rate-limit.js';
import { isWellFormedToken, newSessionToken, sessionHash } from './tokens.js';

export interface SessionLimits {
  maxSessions: number;
  maxPerClient: number;
  /** New sessions one client may start per minute (token bucket); 0 is no limit. */
  createsPerMinute: number;
  idleTimeoutMs: number;
  maxLifetimeMs: number;
  /** Seconds for Retry-After on capacity errors. */
  retryAfterS: number;
}

export interface SessionView {
  id: string;
  createdAt: string;
  lastActivity: string;
  expiresAt: string;
  state: 'active';
}

/** Why a session should end now, or undefined. Lifetime wins; an exchange in flight is not idle. */
export function reapReason(
  s: { createdAt: number; lastActivity: number },
  busy: boolean,
  now: number,
  limits: Pick<SessionLimits, 'idleTimeoutMs' | 'maxLifetimeMs'>,
): 'lifetime' | 'idle' | undefined {
  if (now - s.createdAt >= limits.maxLifetimeMs) return 'lifetime';
  if (!busy && now - s.lastActivity >= limits.idleTimeoutMs) return 'idle';
  return undefined;
}

export function expiresAt(s: { createdAt: number; lastActivity: number }, limits: Pick<SessionLimits, 'idleTimeoutMs' | 'maxLifetimeMs'>): number {
  return Math.min(s.createdAt + limits.maxLifetimeMs, s.lastActivity + limits.idleTimeoutMs);
}

interface Activity {
  last: number;
  inFlight: number;
}

type Gone = 'session_ended' | 'session_lost';

/** How many ended sessions are remembered to answer 410 instead of 404. */
const TOMBSTONES = 10_000;

/**
 * The session layer over a pool backend: creates sessions within the limits, resolves tokens to
 * workers, tracks activity, ends sessions (by request, idleness, lifetime) and remembers recent
 * ends so an old id answers 410 rather than 404. It holds no state a restart would need: the
 * backend is the source of truth for which sessions exist.
 */
export class Sessions {
  private readonly activity = new Map<string, Activity>();
  private readonly gone = new Map<string, Gone>();
  private claiming = 0;
  private readonly claimingByClient = new Map<string, number>();
  private closing = false;
  private readonly creations: RateLimiter;

  constructor(
    private readonly backend: PoolBackend,
    private readonly limits: SessionLimits,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.creations = new RateLimiter(limits.createsPerMinute, now);
    backend.onGone((hash, worker, kind, why) => {
      if (kind === 'ended') {
        this.forget(hash, 'session_ended');
        return;
      }
      this.forget(hash, 'session_lost');
      this.metrics.sessionsEnded.inc({ reason: 'lost' });
      this.logger.warn({ session: hash.slice(0, 12), worker, why }, 'session lost');
    });
  }

  /** Stops taking new sessions (shutdown); existing ones keep routing. */
  close(): void {
    this.closing = true;
  }

  /** A stable, non-reversible key for per-client limits: never the raw API token. */
  static clientKey(raw: string): string {
    return createHash('sha256').update(`client:${raw}`).digest('hex').slice(0, 16);
  }

  async create(client: string, reqId?: string): Promise<{ token: string; worker: SessionWorker }> {
    if (this.closing) throw errors.shuttingDown();
    let active = this.claiming;
    let mine = this.claimingByClient.get(client) ?? 0;
    for (const s of this.backend.sessions()) {
      active++;
      if (s.client === client) mine++;
    }
    if (active >= this.limits.maxSessions) {
      this.metrics.claimsTotal.inc({ result: 'at_capacity' });
      throw errors.atCapacity(this.limits.retryAfterS);
    }
    if (mine >= this.limits.maxPerClient) {
      this.metrics.claimsTotal.inc({ result: 'client_limit' });
      throw errors.clientLimit(this.limits.retryAfterS);
    }
    // Charged only for a creation that passed the other limits: it is the pool churn being paced.
    const wait = this.creations.take(client);
    if (wait > 0) {
      this.metrics.claimsTotal.inc({ result: 'rate_limited' });
      throw errors.rateLimited(wait);
    }
    const token = newSessionToken();
    const hash = sessionHash(token);
    const started = process.hrtime.bigint();
    this.claiming++;
    this.claimingByClient.set(client, (this.claimingByClient.get(client) ?? 0) + 1);
    try {
      const worker = await this.backend.claim({ hash, client });
      this.metrics.claimsTotal.inc({ result: 'claimed' });
      this.metrics.claimDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
      this.activity.set(hash, { last: this.now(), inFlight: 0 });
      this.publish();
      this.logger.info({ session: hash.slice(0, 12), worker: worker.worker, reqId }, 'session claimed');
      return { token, worker };
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'error';
      this.metrics.claimsTotal.inc({ result: code });
      throw err;
    } finally {
      this.claiming--;
      const left = (this.claimingByClient.get(client) ?? 1) - 1;
      if (left > 0) this.claimingByClient.set(client, left);
      else this.claimingByClient.delete(client);
    }
  }

  /**
   * The worker of a session this replica already sees, found without waiting: the proxy's hot
   * path forwards in the same tick, before Node parses more of the request (a malformed body
   * would otherwise get the parser's 400 instead of the router's answer). `resolve` is the rest.
   */
  known(token: string): SessionWorker | undefined {
    return isWellFormedToken(token) ? this.backend.lookup(sessionHash(token)) : undefined;
  }

  /**
   * The worker of a live session, or the right 404/410 error. A session neither known nor
   * remembered as gone may be one another replica has just made: the backend gets to wait for it.
   */
  async resolve(token: string): Promise<SessionWorker> {
    if (!isWellFormedToken(token)) throw errors.sessionNotFound();
    const hash = sessionHash(token);
    const worker = this.backend.lookup(hash) ?? (this.gone.has(hash) ? undefined : await this.backend.waitForSession(hash));
    if (worker) return worker;
    const gone = this.gone.get(hash);
    if (gone === 'session_ended') throw errors.sessionEnded();
    if (gone === 'session_lost') throw errors.sessionLost();
    throw errors.sessionNotFound();
  }

  async describe(token: string): Promise<SessionView> {
    const worker = await this.resolve(token);
    const last = this.lastActivity(worker);
    const shape = { createdAt: worker.createdAt, lastActivity: last };
    return {
      id: token,
      createdAt: new Date(worker.createdAt).toISOString(),
      lastActivity: new Date(last).toISOString(),
      expiresAt: new Date(expiresAt(shape, this.limits)).toISOString(),
      state: 'active',
    };
  }

  expiresAt(worker: SessionWorker): number {
    return expiresAt({ createdAt: worker.createdAt, lastActivity: this.lastActivity(worker) }, this.limits);
  }

  async end(token: string, reqId?: string): Promise<void> {
    const worker = await this.resolve(token);
    await this.finish(worker, 'deleted', reqId);
  }

  /** Marks the start of an exchange; the returned function marks its end. Both count as activity. */
  begin(hash: string): () => void {
    const now = this.now();
    const entry = this.activity.get(hash) ?? { last: now, inFlight: 0 };
    entry.last = now;
    entry.inFlight++;
    this.activity.set(hash, entry);
    this.backend.recordActivity(hash, now);
    return () => {
      const at = this.now();
      entry.last = at;
      entry.inFlight--;
      this.backend.recordActivity(hash, at);
    };
  }

  /**
   * After a transport error: if the backend no longer knows the session, its worker died under
   * the request and the client is told 410 session_lost instead of a bare 502.
   */
  isGone(hash: string): boolean {
    return this.backend.lookup(hash) === undefined;
  }

  /** Ends every session past its idle timeout or lifetime; run periodically. */
  async reap(): Promise<void> {
    const now = this.now();
    const due: [SessionWorker, EndReason][] = [];
    for (const s of this.backend.sessions()) {
      const entry = this.activity.get(s.hash);
      const reason = reapReason({ createdAt: s.createdAt, lastActivity: this.lastActivity(s) }, (entry?.inFlight ?? 0) > 0, now, this.limits);
      if (reason) due.push([s, reason]);
    }
    await Promise.all(due.map(([s, reason]) => this.finish(s, reason).catch((err: Error) => {
      this.logger.error({ session: s.hash.slice(0, 12), err: err.message }, 'cannot end session');
    })));
  }

  /** Sessions with a live worker, as the backend reports them. */
  count(): number {
    return [...this.backend.sessions()].length;
  }

  private lastActivity(s: SessionWorker): number {
    return Math.max(s.lastActivity, this.activity.get(s.hash)?.last ?? 0);
  }

  /**
   * The tombstone goes first, so a request racing the release already answers 410; it is taken
   * back when the backend did not end the session after all.
   */
  private async finish(worker: SessionWorker, reason: EndReason, reqId?: string): Promise<void> {
    const activity = this.activity.get(worker.hash);
    this.forget(worker.hash, 'session_ended');
    let ended: boolean;
    try {
      ended = await this.backend.release(worker, reason);
    } finally {
      this.publish();
    }
    if (!ended) {
      if (this.backend.lookup(worker.hash)) {
        this.gone.delete(worker.hash);
        if (activity) this.activity.set(worker.hash, activity);
      }
      return;
    }
    this.metrics.sessionsEnded.inc({ reason });
    this.logger.info({ session: worker.hash.slice(0, 12), worker: worker.worker, reason, reqId }, 'session ended');
  }

  private forget(hash: string, why: Gone): void {
    this.activity.delete(hash);
    this.gone.set(hash, why);
    if (this.gone.size > TOMBSTONES) this.gone.delete(this.gone.keys().next().value as string);
    this.publish();
  }

  private publish(): void {
    this.metrics.sessionsActive.set(this.count());
  }
}

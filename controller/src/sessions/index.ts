import { errors } from '../errors.js';
import type { Logger } from '../log.js';
import { claimResult, type Metrics } from '../metrics.js';
import type { EndReason, PoolBackend, SessionWorker } from '../pool/types.js';
import { Activity } from './activity.js';
import { Admission, type AdmissionLimits } from './admission.js';
import { Directory } from './directory.js';
import { dueSessions, expiresAt, reapIntervalMs, type Lifetimes } from './reaper.js';
import { deliverSettings, type Settings } from './delivery.js';
import { choosePools, place, type PlacementDeps } from './placement.js';

export interface SessionLimits extends AdmissionLimits, Lifetimes {
  /** How often an exchange in flight refreshes its session's activity for the other replicas. */
  heartbeatMs: number;
  /** Pool of a session that names none; undefined: the only pool, when there is one. */
  defaultPool: string | undefined;
  /** How long a worker has to take a session's settings. */
  deliveryTimeoutMs: number;
}

export interface SessionView {
  id: string;
  pool: string;
  createdAt: string;
  lastActivity: string;
  expiresAt: string;
  state: 'active';
}

/** A session that ended on this replica's watch: by this replica, or lost with its worker. */
export interface EndedSession {
  hash: string;
  pool: string;
  reason: EndReason | 'lost';
  /** Epoch ms; unknown for a lost session, whose worker is gone from the backend's view. */
  createdAt?: number;
  /** Epoch ms. */
  at: number;
}

export interface CreateOptions {
  reqId?: string;
  /** Pools in order of preference; none: the default pool. */
  pools?: readonly string[];
  /** Delivered to the worker before the client gets its id; never logged, never stored. */
  settings?: Settings;
  /** Aborted when the client has left: the claim is given up, or released as `abandoned`. */
  signal?: AbortSignal;
}

/**
 * The one owner of a session's life on this replica: admission, the claim, routing lookups,
 * activity, and every end (by request, idleness, lifetime, an abandoned claim). It holds no state
 * a restart would need: the backend is the source of truth for which sessions exist.
 */
export class Sessions {
  private readonly admission: Admission;
  private readonly directory: Directory;
  private readonly activity: Activity;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly endListeners: ((ended: EndedSession) => void)[] = [];
  private closing = false;

  constructor(
    private readonly backend: PoolBackend,
    private readonly limits: SessionLimits,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
    /** How settings reach a worker (over HTTP; a test may stand in for the worker). */
    private readonly deliver: typeof deliverSettings = deliverSettings,
  ) {
    this.admission = new Admission(limits, now);
    this.directory = new Directory(backend);
    this.activity = new Activity(backend, now);
    backend.onGone(({ hash, worker, pool }, kind, why) => {
      this.activity.forget(hash);
      this.directory.bury(hash, kind === 'ended' ? 'session_ended' : 'session_lost');
      this.publish();
      if (kind === 'ended') return;
      this.metrics.sessionsEnded.inc({ pool: pool ?? '', reason: 'lost' });
      this.ended({ hash, pool: pool ?? '', reason: 'lost', at: this.now() });
      this.logger.warn({ session: hash.slice(0, 12), worker, pool, why }, 'session lost');
    });
  }

  /** Every end this replica counts in `warmpool_sessions_ended_total`, as it is counted. */
  onEnd(listener: (ended: EndedSession) => void): void {
    this.endListeners.push(listener);
  }

  /** Starts the reaper and the activity heartbeat. */
  start(): void {
    const every = (ms: number, run: () => void) => this.timers.push(setInterval(run, ms));
    every(reapIntervalMs(this.limits), () => void this.reap());
    every(this.limits.heartbeatMs, () => this.activity.heartbeat());
  }

  /** Stops taking new sessions and ending old ones (shutdown); existing ones keep routing. */
  close(): void {
    this.closing = true;
    for (const timer of this.timers) clearInterval(timer);
  }

  /**
   * A new session: admitted within the limits, a worker claimed from its pools, its settings
   * delivered, the claim confirmed to the backend; then, and only then, the client gets the id.
   */
  async create(client: string, options: CreateOptions = {}): Promise<{ token: string; worker: SessionWorker }> {
    const started = process.hrtime.bigint();
    let pools: readonly string[] = [];
    let placed: { token: string; worker: SessionWorker };
    try {
      if (this.closing) throw errors.shuttingDown();
      pools = choosePools(options.pools, this.backend.pools(), this.limits.defaultPool);
      const done = this.admission.admit(client, this.backend.sessions());
      try {
        placed = await place(this.placement(options.reqId), { client, pools, settings: options.settings ?? {}, signal: options.signal });
      } finally {
        done();
      }
    } catch (err) {
      this.metrics.claimsTotal.inc({ pool: pools[0] ?? '', result: claimResult(err) });
      throw err;
    }
    const { worker } = placed;
    this.activity.started(worker.hash);
    if (options.signal?.aborted) {
      // The claim landed after its client left: nobody holds the id, so the pod goes back now
      // rather than sitting claimed until the idle timeout.
      this.metrics.claimsTotal.inc({ pool: worker.pool, result: 'abandoned' });
      await this.finish(worker, 'abandoned', options.reqId).catch((err: Error) => this.cannotEnd(worker, err));
      throw errors.clientClosed();
    }
    this.backend.confirm(worker);
    this.metrics.claimsTotal.inc({ pool: worker.pool, result: 'claimed' });
    this.metrics.claimDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
    this.publish();
    this.logger.info({ session: worker.hash.slice(0, 12), worker: worker.worker, pool: worker.pool, reqId: options.reqId }, 'session claimed');
    return placed;
  }

  private placement(reqId: string | undefined): PlacementDeps {
    return {
      backend: this.backend,
      deliver: (s, settings) => this.deliver(s.endpoint, settings, this.limits.deliveryTimeoutMs),
      end: (s, reason) => this.finish(s, reason, reqId).catch((err: Error) => this.cannotEnd(s, err)),
      metrics: this.metrics,
      logger: this.logger,
      retryAfterS: this.limits.retryAfterS,
    };
  }

  known(token: string): SessionWorker | undefined {
    return this.directory.known(token);
  }

  resolve(token: string): Promise<SessionWorker> {
    return this.directory.resolve(token);
  }

  async describe(token: string): Promise<SessionView> {
    const worker = await this.resolve(token);
    const last = this.lastActivity(worker);
    return {
      id: token,
      pool: worker.pool,
      createdAt: new Date(worker.createdAt).toISOString(),
      lastActivity: new Date(last).toISOString(),
      expiresAt: new Date(this.expiresAt(worker)).toISOString(),
      state: 'active',
    };
  }

  /** When the session ends if it sees no more traffic (its idle end, or its lifetime end if sooner). */
  expiresAt(worker: SessionWorker): number {
    return expiresAt({ createdAt: worker.createdAt, lastActivity: this.lastActivity(worker) }, this.limits);
  }

  async end(token: string, reqId?: string): Promise<void> {
    const worker = await this.resolve(token);
    await this.finish(worker, 'deleted', reqId);
  }

  /**
   * A fresh worker failed the first request of its session before the client heard a byte:
   * nobody holds the session's id, so it ends (as `orphan`) and the request goes elsewhere.
   */
  async discard(worker: SessionWorker, why: string, reqId?: string): Promise<void> {
    this.logger.warn({ session: worker.hash.slice(0, 12), worker: worker.worker, pool: worker.pool, why, reqId }, 'worker failed the first request of its session');
    await this.finish(worker, 'orphan', reqId).catch((err: Error) => this.cannotEnd(worker, err));
  }

  begin(hash: string): () => void {
    return this.activity.begin(hash);
  }

  /**
   * After a transport error: if the backend no longer knows the session, its worker died under
   * the request and the client is told 410 session_lost instead of a bare 502.
   */
  isGone(hash: string): boolean {
    return this.directory.isGone(hash);
  }

  /** Ends every session past its idle timeout or lifetime. */
  async reap(): Promise<void> {
    const due = dueSessions({
      sessions: this.backend.sessions(),
      lastActivity: (s) => this.lastActivity(s),
      busy: (hash) => this.activity.busy(hash),
      now: this.now(),
      limits: this.limits,
    });
    await Promise.all(due.map(([s, reason]) => this.finish(s, reason).catch((err: Error) => this.cannotEnd(s, err))));
  }

  /** Sessions with a live worker, as the backend reports them. */
  count(): number {
    return [...this.backend.sessions()].length;
  }

  private lastActivity(s: SessionWorker): number {
    return Math.max(s.lastActivity, this.activity.last(s.hash));
  }

  /**
   * The tombstone goes first, so a request racing the release already answers 410; it is taken
   * back when the backend did not end the session after all.
   */
  private async finish(worker: SessionWorker, reason: EndReason, reqId?: string): Promise<void> {
    const activity = this.activity.forget(worker.hash);
    this.directory.bury(worker.hash, 'session_ended');
    let ended: boolean;
    try {
      ended = await this.backend.release(worker, reason);
    } finally {
      this.publish();
    }
    if (!ended) {
      if (this.backend.lookup(worker.hash)) {
        this.directory.exhume(worker.hash);
        this.activity.restore(worker.hash, activity);
      }
      return;
    }
    this.metrics.sessionsEnded.inc({ pool: worker.pool, reason });
    this.ended({ hash: worker.hash, pool: worker.pool, reason, createdAt: worker.createdAt, at: this.now() });
    this.logger.info({ session: worker.hash.slice(0, 12), worker: worker.worker, pool: worker.pool, reason, reqId }, 'session ended');
  }

  private ended(session: EndedSession): void {
    for (const listener of this.endListeners) listener(session);
  }

  private cannotEnd(s: SessionWorker, err: Error): void {
    this.logger.error({ session: s.hash.slice(0, 12), err: err.message }, 'cannot end session');
  }

  private publish(): void {
    this.metrics.sessionsActive.set(this.count());
  }
}

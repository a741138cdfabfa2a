/**
 * The contract between the router and a pool of workers. Two implementations: `local` (worker
 * processes on this machine) and `kubernetes` (pods, sessions kept in pod labels). The router
 * never learns which one it talks to.
 */
export interface Endpoint {
  host: string;
  port: number;
}

/** A claimed worker and the session it serves, as the backend's own state reports it. */
export interface SessionWorker {
  /** sha256(token) prefix; the token itself never reaches a backend. */
  readonly hash: string;
  /** Pod or process name, for logs. */
  readonly worker: string;
  readonly endpoint: Endpoint;
  /** Epoch ms. */
  readonly createdAt: number;
  /** Epoch ms of the last activity the backend has persisted (may lag the router's own view). */
  readonly lastActivity: number;
  /** Hash of the client key that created the session, for per-client limits. */
  readonly client: string;
  /** The pool the worker came from. */
  readonly pool: string;
  /**
   * The backend's version of this view (a pod's resourceVersion; opaque, compared for equality
   * only). An idle or lifetime end is conditional on it: if the session changed since the view
   * the decision was made on (another replica wrote activity), the end does not happen.
   */
  readonly version: string;
}

/**
 * Why a session ended. `abandoned`: its client left before the claim landed. `orphan`: a claim
 * nobody can use (its answer was lost, or the pod carries no valid session). `lost` is not a
 * reason a replica ends a session for: it is what a worker that died is reported as (onGone).
 */
export type EndReason = 'deleted' | 'idle' | 'lifetime' | 'abandoned' | 'orphan';

/** A session that went away other than through this replica: its hash, worker and pool. */
export interface GoneSession {
  hash: string;
  worker: string;
  pool: string;
}

export type GoneListener = (session: GoneSession, kind: 'ended' | 'lost', why: string) => void;

export interface ClaimRequest {
  hash: string;
  client: string;
  /**
   * Pools to claim from, in order of preference, each one the backend lists in `pools()`: the
   * first with a warm worker now wins; when none has one, the claim waits for whichever of them
   * turns warm first.
   */
  pools: readonly string[];
  /**
   * Aborted when the client that asked has gone: a claim still waiting in the queue leaves it
   * and rejects with 499 `client_closed`. A claim write already sent may still land; the
   * caller then releases it at once as `abandoned`.
   */
  signal?: AbortSignal;
}

/** One pool's figures. */
export interface PoolCounts {
  warm: number;
  warming: number;
  assigned: number;
  /** How many warm-or-warming workers the pool keeps. */
  size: number;
  /**
   * Why this pool cannot serve a session now, when it cannot (a local pool of size 0, or a
   * worker command that keeps dying before it is ready).
   */
  problem?: string;
}

export interface PoolSnapshot {
  backend: string;
  /** Sums over every pool. */
  warm: number;
  warming: number;
  assigned: number;
  pendingClaims: number;
  /** Why no session can be served at all, when none can; /readyz is false while it is set. */
  problem?: string;
  pools: Record<string, PoolCounts>;
}

/**
 * The state of a backend's view of the cluster: `listing` until the first list, `in_sync` while
 * the watch streams, `reconnecting` after it broke, `api_silent` while the API server answers no
 * request; `none` for a backend with no API to watch.
 */
export type WatchState = 'none' | 'listing' | 'in_sync' | 'reconnecting' | 'api_silent';

export interface PoolBackend {
  readonly name: 'local' | 'kubernetes';
  /** Resolves once the first view of the pools is in (the informers' first lists, or workers spawned). */
  start(): Promise<void>;
  isReady(): boolean;
  /** The pools that take claims now, by name (a kubernetes pool comes and goes with its Deployment). */
  pools(): readonly string[];
  /**
   * Binds a warm worker to the session. Waits in a FIFO queue when none is warm, up to the
   * claim timeout; rejects with a WarmpoolError (503 family) when it cannot.
   */
  claim(request: ClaimRequest): Promise<SessionWorker>;
  lookup(hash: string): SessionWorker | undefined;
  /**
   * `lookup` for a session this replica has not seen (yet): a backend whose view of sessions
   * can lag behind other replicas waits, bounded, for its view to catch up before it calls the
   * session unknown.
   */
  waitForSession(hash: string): Promise<SessionWorker | undefined>;
  sessions(): Iterable<SessionWorker>;
  /**
   * Ends the session seen as `session`: the worker is stopped or deleted. Resolves false when
   * the session was not ended after all: already gone, or (kubernetes) for `idle`, `lifetime`
   * and `orphan`, the session's version changed since `session` was read (another replica
   * recorded activity).
   */
  release(session: SessionWorker, reason: EndReason): Promise<boolean>;
  /** The router saw traffic; a backend may persist it (throttled) so other replicas see it. */
  recordActivity(hash: string, at: number): void;
  /**
   * The session's settings reached its worker and its client gets its id now. Until then a claim
   * is one nobody may ever use (the replica that made it can die before delivering), so a backend
   * whose claims outlive a replica records this at once, and ends claims never confirmed as
   * `orphan` after a bound.
   */
  confirm(session: SessionWorker): void;
  snapshot(): PoolSnapshot;
  /** For the status page; a backend without one has no watch (`none`). */
  watchState?(): WatchState;
  /**
   * Called when a session's worker goes away other than through this replica's release: `lost`
   * when the worker died or was deleted by someone else, `ended` when another replica ended it.
   */
  onGone(listener: GoneListener): void;
  /** Stops maintaining the pool; the local backend also stops every process it started. */
  stop(): Promise<void>;
}

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

export type GoneListener = (hash: string, worker: string, kind: 'ended' | 'lost', why: string) => void;

export interface ClaimRequest {
  hash: string;
  client: string;
  /**
   * Aborted when the client that asked has gone: a claim still waiting in the queue leaves it
   * and rejects with 499 `client_closed`. A claim write already sent may still land; the
   * caller then releases it at once as `abandoned`.
   */
  signal?: AbortSignal;
}

export interface PoolSnapshot {
  backend: string;
  warm: number;
  warming: number;
  assigned: number;
  pendingClaims: number;
  /**
   * Why this pool cannot serve a session now, when it cannot (a local pool of size 0, or a
   * worker command that keeps dying before it is ready); /readyz is false while it is set.
   */
  problem?: string;
}

export interface PoolBackend {
  readonly name: 'local' | 'kubernetes';
  /** Resolves once the first view of the pool is in (the informer's first list, or workers spawned). */
  start(): Promise<void>;
  isReady(): boolean;
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
  snapshot(): PoolSnapshot;
  /**
   * Called when a session's worker goes away other than through this replica's release: `lost`
   * when the worker died or was deleted by someone else, `ended` when another replica ended it.
   */
  onGone(listener: GoneListener): void;
  /** Stops maintaining the pool; the local backend also stops every process it started. */
  stop(): Promise<void>;
}

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
}

export type EndReason = 'deleted' | 'idle' | 'lifetime' | 'orphan' | 'shutdown';

export type GoneListener = (hash: string, worker: string, kind: 'ended' | 'lost', why: string) => void;

export interface ClaimRequest {
  hash: string;
  client: string;
}

export interface PoolSnapshot {
  backend: string;
  warm: number;
  warming: number;
  assigned: number;
  pendingClaims: number;
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
   * Ends the session: the worker is stopped or deleted. Resolves false when the session was not
   * ended after all: already gone, or (kubernetes) the pod changed since an idle or lifetime
   * decision, e.g. another replica recorded activity.
   */
  release(hash: string, reason: EndReason): Promise<boolean>;
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

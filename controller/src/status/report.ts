import type { Counter } from 'prom-client';
import type { Metrics } from '../metrics.js';
import type { PoolBackend, SessionWorker, WatchState } from '../pool/types.js';
import type { EndedSession } from '../sessions/index.js';
import { histogramTotals, Ring, type PoolFigures, type Sample, type StatusHistory } from './history.js';

/** As much of a session hash as the logs show: enough to match a log line, never the id. */
const HASH_SHOWN = 12;
/** Rows of the live sessions table; the count above it is exact. */
const SESSIONS_SHOWN = 50;
export const ENDS_KEPT = 50;

export interface PoolStatus extends PoolFigures {
  /** `warmpool_claims_total` of this pool by result, on this replica. */
  claims: Record<string, number>;
  /** `warmpool_sessions_ended_total` of this pool by reason, on this replica. */
  ends: Record<string, number>;
}

export interface StatusReport {
  replica: string;
  backend: string;
  /** Epoch ms. */
  at: number;
  sampleEveryMs: number;
  health: {
    ready: boolean;
    watch: WatchState;
    problem?: string;
    /** The last warning or error this replica logged. */
    lastProblem?: { at: number; line: string };
  };
  queue: number;
  /** Claims that had to wait in the queue, since start (`warmpool_claim_wait_seconds_count`). */
  waited: number;
  pools: Record<string, PoolStatus>;
  /** Claims counted under no listed pool (a request naming a pool that does not exist). */
  unplacedClaims: Record<string, number>;
  sessions: { count: number; shown: { hash: string; pool: string; ageS: number; expiresInS: number }[] };
  recentEnds: { hash: string; pool: string; reason: string; at: number; livedS?: number }[];
  history: readonly Sample[];
}

export interface ReportDeps {
  replica: string;
  backend: PoolBackend;
  metrics: Metrics;
  history: StatusHistory;
  sampleEveryMs: number;
  /** When a session ends if it sees no more traffic. */
  expiresAt: (session: SessionWorker) => number;
  accepting: () => boolean;
  /** The last warning or error this replica logged. */
  lastProblem: () => { at: number; line: string } | undefined;
  now?: () => number;
}

/** A counter's values by pool, then by its other label. */
async function byPool(counter: Counter, label: 'result' | 'reason'): Promise<Map<string, Record<string, number>>> {
  const out = new Map<string, Record<string, number>>();
  for (const { labels, value } of (await counter.get()).values) {
    const pool = String(labels.pool ?? '');
    const row = out.get(pool) ?? {};
    const key = String(labels[label]);
    row[key] = (row[key] ?? 0) + value;
    out.set(pool, row);
  }
  return out;
}

/**
 * What the status page shows, gathered from the same places /pool and /metrics read, plus the
 * history and the recent ends this replica keeps. No session id, token or setting is in it: a
 * session appears by its hash prefix only.
 */
export class StatusReporter {
  private readonly ends = new Ring<EndedSession>(ENDS_KEPT);

  constructor(private readonly deps: ReportDeps) {}

  recordEnd(ended: EndedSession): void {
    this.ends.push(ended);
  }

  async report(): Promise<StatusReport> {
    const { backend, metrics, history, replica, sampleEveryMs, expiresAt, now = Date.now } = this.deps;
    const at = now();
    const lastProblem = this.deps.lastProblem();
    const snap = backend.snapshot();
    const [claims, ends, waits] = await Promise.all([
      byPool(metrics.claimsTotal, 'result'), byPool(metrics.sessionsEnded, 'reason'), histogramTotals(metrics.claimWait),
    ]);
    const pools: Record<string, PoolStatus> = {};
    for (const [name, counts] of Object.entries(snap.pools)) {
      pools[name] = { ...counts, claims: claims.get(name) ?? {}, ends: ends.get(name) ?? {} };
      claims.delete(name);
    }
    const unplacedClaims: Record<string, number> = {};
    for (const row of claims.values()) for (const [k, v] of Object.entries(row)) unplacedClaims[k] = (unplacedClaims[k] ?? 0) + v;
    const live = [...backend.sessions()].sort((a, b) => a.createdAt - b.createdAt);
    return {
      replica,
      backend: snap.backend,
      at,
      sampleEveryMs,
      health: {
        ready: backend.isReady() && this.deps.accepting(),
        watch: backend.watchState?.() ?? 'none',
        ...(snap.problem ? { problem: snap.problem } : {}),
        ...(lastProblem ? { lastProblem } : {}),
      },
      queue: snap.pendingClaims,
      waited: waits.count,
      pools,
      unplacedClaims,
      sessions: {
        count: live.length,
        shown: live.slice(0, SESSIONS_SHOWN).map((s) => ({
          hash: s.hash.slice(0, HASH_SHOWN),
          pool: s.pool,
          ageS: Math.max(0, Math.round((at - s.createdAt) / 1000)),
          expiresInS: Math.max(0, Math.round((expiresAt(s) - at) / 1000)),
        })),
      },
      recentEnds: [...this.ends.values()].reverse().map((e) => ({
        hash: e.hash.slice(0, HASH_SHOWN),
        pool: e.pool,
        reason: e.reason,
        at: e.at,
        ...(e.createdAt !== undefined ? { livedS: Math.round((e.at - e.createdAt) / 1000) } : {}),
      })),
      history: history.samples(),
    };
  }
}

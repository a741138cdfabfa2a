import type { EndReason, SessionWorker } from '../pool/types.js';

export interface Lifetimes {
  idleTimeoutMs: number;
  maxLifetimeMs: number;
}

/** Why a session should end now, or undefined. Lifetime wins; an exchange in flight is not idle. */
export function reapReason(
  s: { createdAt: number; lastActivity: number },
  busy: boolean,
  now: number,
  limits: Lifetimes,
): 'lifetime' | 'idle' | undefined {
  if (now - s.createdAt >= limits.maxLifetimeMs) return 'lifetime';
  if (!busy && now - s.lastActivity >= limits.idleTimeoutMs) return 'idle';
  return undefined;
}

/** When a session ends if nothing happens: its idle end or its lifetime end, whichever is first. */
export function expiresAt(s: { createdAt: number; lastActivity: number }, limits: Lifetimes): number {
  return Math.min(s.createdAt + limits.maxLifetimeMs, s.lastActivity + limits.idleTimeoutMs);
}

/** How often the reaper looks: a quarter of the shortest bound, between 50 ms and 5 s. */
export function reapIntervalMs(limits: Lifetimes): number {
  return Math.max(50, Math.min(5000, limits.idleTimeoutMs / 4, limits.maxLifetimeMs / 4));
}

export interface ReapInput {
  sessions: Iterable<SessionWorker>;
  /** Last activity of a session as this replica knows it (the backend's view may lag). */
  lastActivity(s: SessionWorker): number;
  busy(hash: string): boolean;
  now: number;
  limits: Lifetimes;
}

/**
 * The sessions due to end, each with the view it was decided on: the end is conditional on that
 * view's version, so activity another replica writes meanwhile cancels it.
 */
export function dueSessions(input: ReapInput): [SessionWorker, EndReason][] {
  const due: [SessionWorker, EndReason][] = [];
  for (const s of input.sessions) {
    const reason = reapReason({ createdAt: s.createdAt, lastActivity: input.lastActivity(s) }, input.busy(s.hash), input.now, input.limits);
    if (reason) due.push([s, reason]);
  }
  return due;
}

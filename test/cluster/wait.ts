/** Polling with a deadline, for the cluster tests: the deadline guards against hangs, it is no timing assertion. */
import { eventually } from '../integration/harness.js';

/** `eventually` with the cluster tier's pace: a slower poll (each try is an API call) and a longer deadline. */
export function waitUntil<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  return eventually(what, probe, timeoutMs, { intervalMs: 250 });
}

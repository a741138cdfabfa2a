/** Polling with a deadline, for the cluster tests: the deadline guards against hangs, it is no timing assertion. */
import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves with the first value `probe` returns that is not undefined; errors count as "not yet". */
export async function waitUntil<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(250);
  }
  throw new Error(`timed out waiting until ${what}${last ? ` (last error: ${String(last)})` : ''}`);
}

import { setTimeout as delay } from 'node:timers/promises';

/** Time as the local pool sees it: injected, so unit tests can drive backoff and probes. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or at once when `signal` aborts; never rejects. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) => delay(ms, undefined, { signal }).catch(() => undefined),
};

import { setTimeout as sleep } from 'node:timers/promises';
import { startController, waitWarm, type Controller } from '../test/integration/harness.js';
import { median, QUICK, round, stopController } from './lib.js';

/** POST /sessions, then a streamed chat on it: ms from the first byte sent to the first token. */
async function firstToken(c: Controller): Promise<{ ms: number; id: string }> {
  const t0 = performance.now();
  const created = await fetch(`${c.base}/sessions`, { method: 'POST' });
  if (created.status !== 201) throw new Error(`POST /sessions answered ${created.status}: ${await created.text()}`);
  const { id } = (await created.json()) as { id: string };
  const res = await fetch(`${c.base}/sessions/${id}/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ message: 'hello, how does the warm pool work?' }),
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error('stream ended before a token');
    text += decoder.decode(value, { stream: true });
    if (text.includes('"token"')) break;
  }
  const ms = performance.now() - t0;
  await reader.cancel();
  return { ms: round(ms, 1), id };
}

async function end(c: Controller, id: string): Promise<void> {
  await (await fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' })).arrayBuffer();
}

/**
 * Time to first token of a new session. Warm: a warm worker is waiting. Cold: the pool was just
 * emptied by another session, so this one waits for a worker to start and load its model, which
 * is what every session would wait without a pool. POOL_SIZE=0 is tried too, to record what it
 * does with the local backend.
 */
export async function benchTtft(): Promise<Record<string, unknown>> {
  const modelLoadDelayMs = 2000;
  const n = QUICK ? 2 : 7;
  const c = await startController({ POOL_SIZE: '1', LOG_LEVEL: 'info', MODEL_LOAD_DELAY_MS: String(modelLoadDelayMs), CLAIM_TIMEOUT_MS: '30000' });
  const warm: number[] = [];
  const cold: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      await waitWarm(c, 1);
      await sleep(200);
      const w = await firstToken(c);
      warm.push(w.ms);
      // The pool is empty now (its one warm worker went to w): this session waits for the refill.
      const k = await firstToken(c);
      cold.push(k.ms);
      await end(c, w.id);
      await end(c, k.id);
      console.log(`   warm ${w.ms} ms, cold ${k.ms} ms`);
    }
  } finally {
    await stopController(c);
  }

  const claimTimeoutMs = 3000;
  const z = await startController({ POOL_SIZE: '0', LOG_LEVEL: 'info', MODEL_LOAD_DELAY_MS: String(modelLoadDelayMs), CLAIM_TIMEOUT_MS: String(claimTimeoutMs) });
  let poolSizeZero: Record<string, unknown>;
  try {
    const t0 = performance.now();
    const res = await fetch(`${z.base}/sessions`, { method: 'POST' });
    poolSizeZero = { claimTimeoutMs, status: res.status, body: await res.json(), afterMs: round(performance.now() - t0, 0) };
  } finally {
    await stopController(z);
  }
  const warmMs = median(warm);
  const coldMs = median(cold);
  return { modelLoadDelayMs, samples: n, warmMs: warm, coldMs: cold, warmMedianMs: warmMs, coldMedianMs: coldMs, coldOverWarm: round(coldMs / warmMs, 1), poolSizeZero };
}

import { createSession, startController, waitWarm } from '../test/integration/harness.js';
import { envPort, QUICK, round, stopController } from './lib.js';
import { gaps, gapStats, sseArrivals } from './streams.js';

/**
 * Streamed OpenAI chat completions (`POST /v1/chat/completions`, `stream: true`) from the same
 * reference worker, directly and through a session's base URL, alternating: the gaps between
 * content chunks, as the streams part measures them for /chat.
 */
export async function benchOpenAi(): Promise<Record<string, unknown>> {
  const tokenDelayMs = 20;
  const replies = QUICK ? 6 : 40;
  const c = await startController({ POOL_SIZE: '1', LOG_LEVEL: 'info', TOKEN_DELAY_MS: String(tokenDelayMs) });
  try {
    await waitWarm(c, 1);
    const id = await createSession(c);
    const { pid } = (await (await fetch(`${c.base}/sessions/${id}/healthz`)).json()) as { pid: number };
    const direct = `http://127.0.0.1:${envPort(pid)}/v1/chat/completions`;
    const via = `${c.base}/sessions/${id}/v1/chat/completions`;
    // Content chunks only: the first chunk carries the role and an empty content.
    const isToken = (e: string) => e.includes('"delta":{"content"');
    const out = { direct: [] as number[], warmpool: [] as number[] };
    for (let i = 0; i < replies; i++) {
      const request = { model: 'warmpool-bigram', stream: true, messages: [{ role: 'user', content: `how does the warm pool keep workers ready? ${i}` }] };
      out.direct.push(...gaps(await sseArrivals(direct, request, isToken)));
      out.warmpool.push(...gaps(await sseArrivals(via, request, isToken)));
    }
    const d = gapStats(out.direct, tokenDelayMs);
    const w = gapStats(out.warmpool, tokenDelayMs);
    return { tokenDelayMs, replies, direct: d, warmpool: w, p50AddedMs: round(w.p50Ms - d.p50Ms, 3), p99AddedMs: round(w.p99Ms - d.p99Ms, 3) };
  } finally {
    await stopController(c);
  }
}

import { interArrival } from './streams.js';

/**
 * Streamed OpenAI chat completions (`POST /v1/chat/completions`, `stream: true`) from the same
 * reference worker, directly and through a session's base URL: the gaps between the chunks that
 * carry content (the first chunk carries the role and an empty content).
 */
export function benchOpenAi(): Promise<Record<string, unknown>> {
  return interArrival(
    '/v1/chat/completions',
    (i) => ({ model: 'warmpool-bigram', stream: true, messages: [{ role: 'user', content: `how does the warm pool keep workers ready? ${i}` }] }),
    (e) => e.includes('"delta":{"content"'),
  );
}

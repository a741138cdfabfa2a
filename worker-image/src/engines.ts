import { setTimeout as sleep } from 'node:timers/promises';
import type { Model } from './model.js';

export interface Turn {
  message: string;
  reply: string;
}

/** Where replies come from: the built-in model, or an OpenAI-compatible model server. */
export interface ChatEngine {
  /** Yields the reply to `message`, token by token, given the earlier turns of this session. */
  stream(history: readonly Turn[], message: string, signal: AbortSignal): AsyncIterable<string>;
}

export function localEngine(model: Model, tokenDelayMs: number): ChatEngine {
  return {
    async *stream(history, message, signal) {
      const tokens = model.reply(message, history.length + 1);
      for (let i = 0; i < tokens.length; i++) {
        if (i > 0 && tokenDelayMs > 0) await sleep(tokenDelayMs, undefined, { signal });
        yield tokens[i] as string;
      }
    },
  };
}

export class UpstreamModelError extends Error {
  readonly code = 'model_unavailable';
}

/**
 * Forwards chat to an OpenAI-compatible server (llama.cpp, vLLM, ...) with `stream: true`, so the
 * worker streams what the model server streams; the conversation is sent each time because
 * those servers are stateless.
 */
export function openAiEngine(baseUrl: string, model: string, apiKey: string | undefined): ChatEngine {
  const url = `${baseUrl.replace(/\/+$/, '')}/chat/completions`;
  return {
    async *stream(history, message, signal) {
      const messages = history.flatMap((t) => [
        { role: 'user', content: t.message },
        { role: 'assistant', content: t.reply },
      ]);
      messages.push({ role: 'user', content: message });
      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
          },
          body: JSON.stringify({ model, messages, stream: true }),
          signal,
        });
      } catch (err) {
        throw new UpstreamModelError(`model server unreachable: ${(err as Error).message}`);
      }
      if (!res.ok || !res.body) throw new UpstreamModelError(`model server answered ${res.status}`);
      const decoder = new TextDecoder();
      let buffered = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffered += decoder.decode(chunk, { stream: true });
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') return;
          const token = (JSON.parse(data) as { choices?: { delta?: { content?: string } }[] })
            .choices?.[0]?.delta?.content;
          if (token) yield token;
        }
      }
    },
  };
}

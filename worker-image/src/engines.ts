import { setTimeout as sleep } from 'node:timers/promises';
import type { Model } from './model.js';

export interface Turn {
  message: string;
  reply: string;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Per-reply choices: from the request, else the session's settings, else the engine's defaults. */
export interface ReplyOptions {
  model?: string;
  temperature?: number;
  maxTokens?: number;
}

/** Where replies come from: the built-in model, or an OpenAI-compatible model server. */
export interface ChatEngine {
  /** The model name replies are attributed to when a request names none. */
  readonly model: string;
  /** Whether any model name is passed on (a model server decides), or only `model` exists. */
  readonly forwards: boolean;
  /** Yields the reply to the conversation `messages` (its last one is the user's new turn), token by token. */
  stream(messages: readonly ChatMessage[], options: ReplyOptions, signal: AbortSignal): AsyncIterable<string>;
}

/** The conversation a worker's own history stands for, with the session's system prompt first. */
export function historyMessages(history: readonly Turn[], system: string | undefined): ChatMessage[] {
  const messages: ChatMessage[] = system ? [{ role: 'system', content: system }] : [];
  for (const t of history) messages.push({ role: 'user', content: t.message }, { role: 'assistant', content: t.reply });
  return messages;
}

export const LOCAL_MODEL = 'warmpool-bigram';

export function localEngine(model: Model, tokenDelayMs: number): ChatEngine {
  return {
    model: LOCAL_MODEL,
    forwards: false,
    async *stream(messages, options, signal) {
      const system = messages.filter((m) => m.role === 'system').map((m) => m.content).join('\n');
      const turn = messages.filter((m) => m.role === 'user').length;
      const tokens = model.reply(messages.at(-1)?.content ?? '', turn, system);
      const count = Math.min(tokens.length, options.maxTokens ?? Infinity);
      for (let i = 0; i < count; i++) {
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
    model,
    forwards: true,
    async *stream(messages, options, signal) {
      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}),
          },
          body: JSON.stringify({
            model: options.model ?? model,
            messages,
            stream: true,
            ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
            ...(options.maxTokens === undefined ? {} : { max_tokens: options.maxTokens }),
          }),
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

/**
 * The OpenAI chat-completions protocol, without I/O: what a request may say, which conversation
 * it stands for, and the JSON a reply is made of. Unknown request fields are ignored, as OpenAI
 * clients send many the reference model has no use for.
 */
import { randomBytes } from 'node:crypto';
import { historyMessages, type ChatEngine, type ChatMessage, type ReplyOptions, type Turn } from './engines.js';
import { countTokens } from './model.js';
import type { Settings } from './settings.js';

/** An error in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with its status. */
export class OpenAiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly type = status >= 500 ? 'server_error' : 'invalid_request_error',
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export interface CompletionRequest {
  messages: ChatMessage[];
  model?: string;
  temperature?: number;
  maxTokens?: number;
  stream: boolean;
  includeUsage: boolean;
}

const invalid = (param: string, message: string) => new OpenAiError(400, 'invalid_value', message, param);

function content(value: unknown, role: string, param: string): string {
  if (typeof value === 'string') return value;
  if (value === null && role === 'assistant') return '';
  if (Array.isArray(value)) {
    return value.map((part: unknown, i) => {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (p?.type !== 'text' || typeof p.text !== 'string') throw invalid(`${param}[${i}]`, 'only text content parts are supported');
      return p.text;
    }).join('');
  }
  throw invalid(param, 'content must be a string or an array of text parts');
}

function message(value: unknown, i: number): ChatMessage {
  const m = value as { role?: unknown; content?: unknown } | null;
  if (typeof m !== 'object' || m === null) throw invalid(`messages[${i}]`, 'each message must be an object');
  const role = m.role === 'developer' ? 'system' : m.role;
  if (role !== 'system' && role !== 'user' && role !== 'assistant') {
    throw invalid(`messages[${i}].role`, `unsupported role ${JSON.stringify(m.role)} (supported: system, developer, user, assistant)`);
  }
  return { role, content: content(m.content, role, `messages[${i}].content`) };
}

function optionalNumber(body: Record<string, unknown>, key: string, ok: (n: number) => boolean, rule: string): number | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !ok(value)) throw invalid(key, `${key} must be ${rule}`);
  return value;
}

/** Checks a `POST /v1/chat/completions` body; the last message must be the user's new turn. */
export function parseCompletionRequest(body: unknown): CompletionRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('body', 'the body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b.messages) || b.messages.length === 0) throw invalid('messages', 'messages must be a non-empty array');
  const messages = b.messages.map(message);
  if (messages.at(-1)?.role !== 'user') throw invalid('messages', 'the last message must be from the user (the new turn)');
  if (b.model !== undefined && (typeof b.model !== 'string' || b.model === '')) throw invalid('model', 'model must be a non-empty string');
  if (b.stream !== undefined && b.stream !== null && typeof b.stream !== 'boolean') throw invalid('stream', 'stream must be a boolean');
  optionalNumber(b, 'n', (x) => x === 1, '1 (one choice per request)');
  const streamOptions = b.stream_options as { include_usage?: unknown } | undefined | null;
  if (streamOptions !== undefined && streamOptions !== null && (typeof streamOptions !== 'object' || !['boolean', 'undefined'].includes(typeof streamOptions.include_usage))) {
    throw invalid('stream_options', 'stream_options must be {"include_usage": boolean}');
  }
  const positive = (x: number) => Number.isInteger(x) && x > 0;
  return {
    messages,
    model: b.model as string | undefined,
    temperature: optionalNumber(b, 'temperature', (x) => x >= 0 && x <= 2, 'a number from 0 to 2'),
    maxTokens: optionalNumber(b, 'max_completion_tokens', positive, 'a positive integer') ?? optionalNumber(b, 'max_tokens', positive, 'a positive integer'),
    stream: b.stream === true,
    includeUsage: streamOptions?.include_usage === true,
  };
}

/** The model a reply is attributed to: the request's, the session's, or the engine's own. */
export function resolveModel(requested: string | undefined, settings: Settings, engine: ChatEngine): string {
  const model = requested ?? settings.model ?? engine.model;
  if (!engine.forwards && model !== engine.model) {
    throw new OpenAiError(404, 'model_not_found', `The model \`${model}\` does not exist (this worker serves \`${engine.model}\`)`, 'model');
  }
  return model;
}

export interface NewTurn {
  /** What the reply is computed from: system prompt, earlier turns, then the new user message. */
  context: ChatMessage[];
  /** The user's new message, the one recorded in the worker's history. */
  message: string;
  options: ReplyOptions;
}

/**
 * The turn a request stands for. A stateless client resends the whole conversation; a
 * session-affine one may send only the new turn. Either way only the last (user) message is new
 * and recorded. When the client sent earlier turns, they are the context, as for any OpenAI
 * server (an edited or regenerated conversation is answered as sent); when it sent none, the
 * worker's own history is. The request's system messages replace the session's system prompt.
 */
export function newTurn(request: CompletionRequest, history: readonly Turn[], settings: Settings, model: string): NewTurn {
  const system = request.messages.filter((m) => m.role === 'system');
  const earlier = request.messages.slice(0, -1).filter((m) => m.role !== 'system');
  const last = request.messages.at(-1) as ChatMessage;
  const prompt: ChatMessage[] = system.length > 0 ? system : settings.system ? [{ role: 'system', content: settings.system }] : [];
  return {
    context: [...prompt, ...(earlier.length > 0 ? earlier : historyMessages(history, undefined)), last],
    message: last.content,
    options: { model, temperature: request.temperature ?? settings.temperature, maxTokens: request.maxTokens },
  };
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Token counts as the built-in model counts them (words and punctuation); an estimate when forwarding. */
export function usage(context: readonly ChatMessage[], completionTokens: number): Usage {
  const prompt = context.reduce((sum, m) => sum + countTokens(m.content), 0);
  return { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: prompt + completionTokens };
}

/** What every object of one completion shares: its id, creation second and model. */
export interface CompletionHead {
  id: string;
  created: number;
  model: string;
}

export function completionHead(model: string): CompletionHead {
  return { id: `chatcmpl-${randomBytes(12).toString('base64url')}`, created: Math.floor(Date.now() / 1000), model };
}

export type FinishReason = 'stop' | 'length';

export function completion(head: CompletionHead, reply: string, finish: FinishReason, counts: Usage) {
  return {
    id: head.id,
    object: 'chat.completion',
    created: head.created,
    model: head.model,
    choices: [{ index: 0, message: { role: 'assistant', content: reply, refusal: null }, logprobs: null, finish_reason: finish }],
    usage: counts,
  };
}

/** One `chat.completion.chunk`: a delta, the finish reason on the last one, or (no choices) the usage. */
export function chunk(head: CompletionHead, delta: { role?: 'assistant'; content?: string } | null, finish: FinishReason | null = null, counts?: Usage) {
  return {
    id: head.id,
    object: 'chat.completion.chunk',
    created: head.created,
    model: head.model,
    choices: delta ? [{ index: 0, delta, logprobs: null, finish_reason: finish }] : [],
    ...(counts ? { usage: counts } : {}),
  };
}

export function modelList(models: readonly string[]) {
  return { object: 'list', data: models.map(modelObject) };
}

export function modelObject(id: string) {
  return { id, object: 'model', created: 0, owned_by: 'warmpool' };
}

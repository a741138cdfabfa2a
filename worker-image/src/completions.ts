/**
 * The OpenAI-compatible routes of the worker (`/v1/...`): every answer, errors included, in the
 * shape OpenAI clients parse, so an unmodified SDK raises its own error types.
 */
import type http from 'node:http';
import type { ChatEngine, Turn } from './engines.js';
import {
  chunk, completion, completionHead, modelList, modelObject, newTurn, OpenAiError, parseCompletionRequest, resolveModel, usage,
  type CompletionRequest, type FinishReason, type NewTurn,
} from './openai.js';
import type { Settings } from './settings.js';

export interface Conversation {
  readonly engine: ChatEngine;
  readonly history: readonly Turn[];
  readonly loaded: boolean;
  settings(): Settings;
  /** Streams the reply to `turn` token by token, records the turn, and returns it with its token count and number. */
  reply(turn: NewTurn, route: string, signal: AbortSignal): AsyncGenerator<string, { reply: string; tokens: number; turn: number }>;
}

/** A failure before the reply started, as the worker's own code, status and message. */
interface Failure {
  code: string;
  status?: number;
  message: string;
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

export function toOpenAiError(err: unknown): OpenAiError {
  if (err instanceof OpenAiError) return err;
  const f = err as Failure;
  if (f.code === 'model_unavailable') return new OpenAiError(502, f.code, f.message);
  if (typeof f.status === 'number' && typeof f.code === 'string') return new OpenAiError(f.status, f.code, f.message);
  return new OpenAiError(500, 'internal', 'internal error');
}

function onlyMethod(req: http.IncomingMessage, method: string): void {
  if (req.method !== method) throw new OpenAiError(405, 'method_not_allowed', `${req.method} is not allowed here; use ${method}`);
}

/** Serves `path` (under /v1/); `readBody` reads the request body as JSON. */
export async function serveOpenAi(req: http.IncomingMessage, res: http.ServerResponse, path: string, conv: Conversation, readBody: () => Promise<unknown>): Promise<void> {
  try {
    if (!conv.loaded) throw new OpenAiError(503, 'model_loading', 'the model is loading');
    const models = [...new Set([conv.settings().model ?? conv.engine.model, conv.engine.model])];
    if (path === '/v1/models') {
      onlyMethod(req, 'GET');
      return send(res, 200, modelList(models));
    }
    if (path.startsWith('/v1/models/')) {
      onlyMethod(req, 'GET');
      const id = decodeURIComponent(path.slice('/v1/models/'.length));
      if (!models.includes(id)) throw new OpenAiError(404, 'model_not_found', `The model \`${id}\` does not exist`, 'model');
      return send(res, 200, modelObject(id));
    }
    if (path !== '/v1/chat/completions') throw new OpenAiError(404, 'unknown_url', `Unknown request URL: ${req.method} ${path}`);
    onlyMethod(req, 'POST');
    const type = req.headers['content-type'];
    if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) {
      throw new OpenAiError(415, 'unsupported_media_type', 'the body must be application/json');
    }
    const request = parseCompletionRequest(await readBody());
    const model = resolveModel(request.model, conv.settings(), conv.engine);
    await complete(res, conv, request, model);
  } catch (err) {
    if ((err as Error).name === 'AbortError') return;
    const e = toOpenAiError(err);
    if (!res.headersSent) return send(res, e.status, e.body(), e.status === 405 ? { allow: path === '/v1/chat/completions' ? 'POST' : 'GET' } : {});
    // The reply had started: OpenAI clients read an error event in the stream as an error.
    res.end(`data: ${JSON.stringify(e.body())}\n\n`);
  }
}

async function complete(res: http.ServerResponse, conv: Conversation, request: CompletionRequest, model: string): Promise<void> {
  const turn = newTurn(request, conv.history, conv.settings(), model);
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  const gen = conv.reply(turn, '/v1/chat/completions', abort.signal);
  const head = completionHead(model);
  const finish = (tokens: number): FinishReason => (request.maxTokens !== undefined && tokens >= request.maxTokens ? 'length' : 'stop');
  // The first token is awaited before the status is sent, so a model that fails at once gets a real error status.
  let step = await gen.next();
  if (!request.stream) {
    while (!step.done) step = await gen.next();
    const { reply, tokens } = step.value;
    return send(res, 200, completion(head, reply, finish(tokens), usage(turn.context, tokens)));
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const event = (body: unknown) => res.write(`data: ${JSON.stringify(body)}\n\n`);
  event(chunk(head, { role: 'assistant', content: '' }));
  while (!step.done) {
    event(chunk(head, { content: step.value }));
    step = await gen.next();
  }
  event(chunk(head, {}, finish(step.value.tokens)));
  if (request.includeUsage) event(chunk(head, null, null, usage(turn.context, step.value.tokens)));
  res.end('data: [DONE]\n\n');
}

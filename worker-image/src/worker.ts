import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { historyMessages, type ChatEngine, type Turn } from './engines.js';
import { serveOpenAi, type Conversation } from './completions.js';
import type { NewTurn } from './openai.js';
import { parseSettings, SettingsError, type Settings } from './settings.js';

export interface WorkerOptions {
  /** Resolves when the model is loaded; until then /healthz answers 503 and chat is refused. */
  engine: Promise<ChatEngine>;
  maxBodyBytes?: number;
  /** Writes one structured log line (the entry point prints JSON to stdout). */
  log?: (fields: Record<string, unknown>) => void;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: code, message });
}

class BadInput extends Error {
  constructor(readonly code: string, readonly status: number, message: string) {
    super(message);
  }
}

async function readJson(req: http.IncomingMessage, limit: number): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BadInput('body_too_large', 413, `body over ${limit} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new BadInput('invalid_json', 400, 'body is not JSON');
  }
}

function chatMessage(parsed: unknown): string {
  const message = (parsed as { message?: unknown } | null)?.message;
  if (typeof message !== 'string' || message.length === 0) {
    throw new BadInput('invalid_message', 400, 'body must be {"message": "<non-empty string>"}');
  }
  return message;
}

/**
 * The reference chatbot worker: one process holds one conversation (the history proves session
 * affinity through the router). Turns are numbered in the order they complete.
 */
export function createWorker(options: WorkerOptions): http.Server {
  const limit = options.maxBodyBytes ?? 1024 * 1024;
  const log = options.log ?? (() => undefined);
  const history: Turn[] = [];
  let settings: Settings | undefined;
  let engine: ChatEngine | undefined;
  options.engine.then((e) => { engine = e; }, () => undefined);

  const conversation: Conversation = {
    get engine() { return engine as ChatEngine; },
    history,
    get loaded() { return engine !== undefined; },
    settings: () => settings ?? {},
    async *reply(turn, route, signal) {
      let reply = '';
      let tokens = 0;
      for await (const token of (engine as ChatEngine).stream(turn.context, turn.options, signal)) {
        reply += token;
        tokens++;
        yield token;
      }
      history.push({ message: turn.message, reply });
      const number = history.length;
      log({ msg: 'turn', route, turn: number, tokens, user: settings?.user });
      return { reply, tokens, turn: number };
    },
  };

  /** A /chat or /ws message as a turn on the worker's own history, with the session's settings. */
  function chatTurn(message: string): NewTurn {
    const s = conversation.settings();
    return {
      context: [...historyMessages(history, s.system), { role: 'user', content: message }],
      message,
      options: { model: s.model, temperature: s.temperature },
    };
  }

  function acceptSettings(engine: ChatEngine, body: unknown): void {
    if (settings) throw new BadInput('settings_already_delivered', 409, 'this session\'s settings were already delivered');
    const parsed = parseSettings(body);
    if (parsed.model !== undefined && !engine.forwards && parsed.model !== engine.model) {
      throw new SettingsError(`settings.model: this worker serves only ${JSON.stringify(engine.model)}`);
    }
    settings = parsed;
    log({ msg: 'session settings', user: parsed.user, settings: Object.keys(parsed) });
  }

  const server = http.createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    try {
      if (path === '/v1' || path.startsWith('/v1/')) {
        return await serveOpenAi(req, res, path, conversation, () => readJson(req, limit));
      }
      const loaded = engine !== undefined;
      if (path === '/healthz' && req.method === 'GET') {
        return loaded ? sendJson(res, 200, { status: 'ok', pid: process.pid }) : sendError(res, 503, 'loading', 'model is loading');
      }
      if (path === '/history' && req.method === 'GET') {
        return sendJson(res, 200, { turns: history });
      }
      if (path === '/session' && req.method === 'POST') {
        if (!engine) return sendError(res, 503, 'loading', 'model is loading');
        acceptSettings(engine, await readJson(req, limit));
        res.writeHead(204).end();
        return;
      }
      if (path === '/chat' && req.method === 'POST') {
        if (!loaded) return sendError(res, 503, 'loading', 'model is loading');
        const message = chatMessage(await readJson(req, limit));
        const abort = new AbortController();
        res.on('close', () => abort.abort());
        const gen = conversation.reply(chatTurn(message), '/chat', abort.signal);
        if (!(req.headers.accept ?? '').includes('text/event-stream')) {
          let step = await gen.next();
          while (!step.done) step = await gen.next();
          return sendJson(res, 200, { reply: step.value.reply, turn: step.value.turn });
        }
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.flushHeaders();
        let step = await gen.next();
        while (!step.done) {
          res.write(`data: ${JSON.stringify({ token: step.value })}\n\n`);
          step = await gen.next();
        }
        res.write(`data: ${JSON.stringify({ reply: step.value.reply, turn: step.value.turn })}\n\n`);
        res.end('data: [DONE]\n\n');
        return;
      }
      sendError(res, 404, 'not_found', `no route for ${req.method} ${path}`);
    } catch (err) {
      if (res.headersSent) return void res.destroy();
      if (err instanceof BadInput || err instanceof SettingsError) return sendError(res, err.status, err.code, err.message);
      if ((err as { code?: string }).code === 'model_unavailable') {
        return sendError(res, 502, 'model_unavailable', (err as Error).message);
      }
      if ((err as Error).name === 'AbortError') return;
      sendError(res, 500, 'internal', 'internal error');
    }
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: limit });
  server.on('upgrade', (req, socket, head) => {
    if ((req.url ?? '').split('?')[0] !== '/ws' || !engine) {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => serveSocket(ws));
  });

  /** Frames are answered one at a time, in order, so turns stay numbered as they were sent. */
  function serveSocket(ws: WebSocket): void {
    const abort = new AbortController();
    ws.on('close', () => abort.abort());
    let queue = Promise.resolve();
    ws.on('message', (data) => {
      queue = queue.then(async () => {
        let message: unknown;
        try {
          message = (JSON.parse(data.toString()) as { message?: unknown }).message;
        } catch {
          message = undefined;
        }
        if (typeof message !== 'string' || message.length === 0) {
          ws.send(JSON.stringify({ type: 'error', error: 'invalid_message', message: 'frame must be {"message": "..."}' }));
          return;
        }
        const gen = conversation.reply(chatTurn(message), '/ws', abort.signal);
        let step = await gen.next();
        while (!step.done) {
          ws.send(JSON.stringify({ type: 'token', token: step.value }));
          step = await gen.next();
        }
        ws.send(JSON.stringify({ type: 'reply', reply: step.value.reply, turn: step.value.turn }));
      }).catch(() => ws.terminate());
    });
  }

  return server;
}

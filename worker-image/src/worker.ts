import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import type { ChatEngine, Turn } from './engines.js';

export interface WorkerOptions {
  engine: ChatEngine;
  /** Resolves when the model is loaded; until then /healthz answers 503 and chat is refused. */
  loaded: Promise<void>;
  maxBodyBytes?: number;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: code, message });
}

async function readMessage(req: http.IncomingMessage, limit: number): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BadInput('body_too_large', 413, `body over ${limit} bytes`);
    chunks.push(chunk);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new BadInput('invalid_json', 400, 'body is not JSON');
  }
  const message = (parsed as { message?: unknown } | null)?.message;
  if (typeof message !== 'string' || message.length === 0) {
    throw new BadInput('invalid_message', 400, 'body must be {"message": "<non-empty string>"}');
  }
  return message;
}

class BadInput extends Error {
  constructor(readonly code: string, readonly status: number, message: string) {
    super(message);
  }
}

/**
 * The reference chatbot worker: one process holds one conversation (the history proves session
 * affinity through the router). Turns are numbered in the order they complete.
 */
export function createWorker(options: WorkerOptions): http.Server {
  const { engine } = options;
  const limit = options.maxBodyBytes ?? 1024 * 1024;
  const history: Turn[] = [];
  let loaded = false;
  options.loaded.then(() => { loaded = true; }, () => undefined);

  async function* chat(message: string, signal: AbortSignal): AsyncGenerator<string, Turn & { turn: number }> {
    let reply = '';
    for await (const token of engine.stream(history, message, signal)) {
      reply += token;
      yield token;
    }
    history.push({ message, reply });
    return { message, reply, turn: history.length };
  }

  const server = http.createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (path === '/healthz' && req.method === 'GET') {
        return loaded ? sendJson(res, 200, { status: 'ok', pid: process.pid }) : sendError(res, 503, 'loading', 'model is loading');
      }
      if (path === '/history' && req.method === 'GET') {
        return sendJson(res, 200, { turns: history });
      }
      if (path === '/chat' && req.method === 'POST') {
        if (!loaded) return sendError(res, 503, 'loading', 'model is loading');
        const message = await readMessage(req, limit);
        const abort = new AbortController();
        res.on('close', () => abort.abort());
        const gen = chat(message, abort.signal);
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
      if (err instanceof BadInput) return sendError(res, err.status, err.code, err.message);
      if ((err as { code?: string }).code === 'model_unavailable') {
        return sendError(res, 502, 'model_unavailable', (err as Error).message);
      }
      if ((err as Error).name === 'AbortError') return;
      sendError(res, 500, 'internal', 'internal error');
    }
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: limit });
  server.on('upgrade', (req, socket, head) => {
    if ((req.url ?? '').split('?')[0] !== '/ws' || !loaded) {
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
        const gen = chat(message, abort.signal);
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

import type http from 'node:http';
import { Readable, Transform } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { errors, type WarmpoolError } from '../errors.js';
import { sendError } from '../http/respond.js';
import type { Endpoint } from '../pool/types.js';
import { responseHeaders, rewriteRequestHeaders } from './headers.js';
import { TIMEOUT_CODES, type ForwardTarget } from './target.js';

export interface ExchangeOptions {
  trustProxy: boolean;
  upstreamTimeoutMs: number;
  maxBodyBytes: number;
}

function origin(endpoint: Endpoint): string {
  return endpoint.host.includes(':') ? `http://[${endpoint.host}]:${endpoint.port}` : `http://${endpoint.host}:${endpoint.port}`;
}

/** The upstream side of one exchange: abortable before undici has even started it. */
class Upstream {
  private controller: Dispatcher.DispatchController | undefined;
  private cutEarly = false;
  /** Set once the worker's response has ended or failed: nothing left to abort. */
  settled = false;

  started(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.cutEarly) controller.abort(new Error('request cut by the proxy'));
  }

  cut(): void {
    if (this.controller) this.controller.abort(new Error('request cut by the proxy'));
    else this.cutEarly = true;
  }
}

/** A body read whole beforehand, framed by its length (a chunked one included). */
function held(h: http.IncomingHttpHeaders, body: Buffer): Buffer | null {
  if (body.length > 0 || h['content-length'] !== undefined || h['transfer-encoding'] !== undefined) h['content-length'] = String(body.length);
  return body.length > 0 ? body : null;
}

/**
 * Plain requests (JSON, streamed SSE replies) are forwarded with undici's dispatcher over
 * keep-alive connections: `npm run bench` measured it well ahead of http-proxy-3 on this path
 * (docs/benchmarks.md). Streamed bodies flow both ways with backpressure; a client that leaves
 * aborts the worker's side.
 */
export function createExchanger(options: ExchangeOptions) {
  const dispatcher = new Agent({ connections: null, pipelining: 1 });
  /** Exchanges in flight, so a shutdown can end the streams among them cleanly. */
  const inFlight = new Map<http.ServerResponse, Upstream>();

  /**
   * A body without Content-Length is counted as it streams. Past the limit the client gets 413,
   * the rest of its body is read and dropped (so the connection stays usable), and the upstream
   * request is aborted: the worker never acts on a truncated body.
   */
  function bodyLimiter(req: http.IncomingMessage, res: http.ServerResponse, target: ForwardTarget, upstream: Upstream): Transform {
    let seen = 0;
    const limiter: Transform = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        seen += chunk.length;
        if (seen <= options.maxBodyBytes) return callback(null, chunk);
        if (!res.headersSent) answer(res, target, errors.bodyTooLarge(options.maxBodyBytes));
        req.unpipe(limiter);
        req.resume();
        upstream.cut();
        callback();
      },
    });
    req.pipe(limiter);
    return limiter;
  }

  function answer(res: http.ServerResponse, target: ForwardTarget, err: WarmpoolError): void {
    target.exchange.answered(err.status);
    sendError(res, err);
  }

  /** What refuses the request before the worker is involved, or undefined. */
  function refusal(req: http.IncomingMessage): WarmpoolError | undefined {
    const declared = req.headers['content-length'];
    const coding = req.headers['transfer-encoding'];
    if (declared !== undefined && Number(declared) > options.maxBodyBytes) return errors.bodyTooLarge(options.maxBodyBytes);
    // Node has taken off the chunked framing; another coding under it (`gzip, chunked`) would
    // reach the worker as a body it has no way to know is encoded (RFC 9112 6.1: 501).
    if (coding !== undefined && coding.trim().toLowerCase() !== 'chunked') return errors.unsupportedTransferCoding();
    return undefined;
  }

  /**
   * Reads a request's whole body (refused as `web` would refuse it: over the limit, or in a
   * transfer coding the worker could not know of), so that it can be sent more than once. Past
   * the limit the rest is read and dropped, so the connection stays usable for the 413.
   */
  function hold(req: http.IncomingMessage): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const refused = refusal(req);
      if (refused) {
        req.resume();
        return reject(refused);
      }
      const chunks: Buffer[] = [];
      let seen = 0;
      req.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen <= options.maxBodyBytes) chunks.push(chunk);
        else reject(errors.bodyTooLarge(options.maxBodyBytes));
      });
      req.once('end', () => resolve(Buffer.concat(chunks)));
      req.once('close', () => {
        if (!req.complete) reject(errors.clientClosed());
      });
    });
  }

  function handler(res: http.ServerResponse, target: ForwardTarget, upstream: Upstream, giveBack: (why: string) => boolean): Dispatcher.DispatchHandler {
    const fail = (err: NodeJS.ErrnoException) => {
      if (upstream.settled) return;
      // A worker that stayed silent for the whole upstream timeout has had its chance: the
      // client has waited that long already.
      if (err.code !== 'UND_ERR_HEADERS_TIMEOUT' && giveBack(err.code ?? err.name)) return;
      upstream.settled = true;
      if (res.writableEnded || res.destroyed) return;
      if (res.headersSent) return void res.destroy();
      answer(res, target, TIMEOUT_CODES.has(err.code ?? '') ? errors.upstreamTimeout() : target.failure(err));
    };
    return {
      onRequestStart: (controller) => upstream.started(controller),
      onResponseStart(_controller, statusCode, headers, statusMessage) {
        if (statusCode < 200) return;
        // Giving back cuts the worker's side: its answer is never read.
        if (statusCode >= 500 && giveBack(`answered ${statusCode}`)) return;
        target.exchange.firstByte();
        target.exchange.answered(statusCode);
        const out = responseHeaders(headers, target.responseHeaders);
        if (statusMessage) res.writeHead(statusCode, statusMessage, out);
        else res.writeHead(statusCode, out);
        // A streamed reply (SSE) shows its status at once, not with its first token.
        if (headers['content-length'] === undefined) res.flushHeaders();
      },
      onResponseData(controller, chunk) {
        if (res.write(chunk) || controller.paused) return;
        controller.pause();
        res.once('drain', () => controller.resume());
      },
      onResponseEnd() {
        upstream.settled = true;
        res.end();
      },
      onResponseError: (_controller, err) => fail(err as NodeJS.ErrnoException),
    };
  }

  function web(req: http.IncomingMessage, res: http.ServerResponse, target: ForwardTarget): void {
    const upstream = new Upstream();
    inFlight.set(res, upstream);
    const over = () => {
      inFlight.delete(res);
      // The client went away (or was answered early): stop the worker's side too.
      if (!upstream.settled) {
        upstream.settled = true;
        upstream.cut();
      }
      target.done();
    };
    res.once('close', over);
    /** Hands the exchange back to its caller, when it may send it elsewhere and nothing was answered yet. */
    const giveBack = (why: string): boolean => {
      const { retry } = target;
      if (!retry || upstream.settled || res.headersSent || res.destroyed) return false;
      res.off('close', over);
      over();
      retry(why);
      return true;
    };
    const refused = target.held ? undefined : refusal(req);
    if (refused) {
      upstream.settled = true;
      answer(res, target, refused);
      req.resume();
      return;
    }
    const h = req.headers;
    rewriteRequestHeaders(req, false, options.trustProxy);
    const body = target.held ? held(h, target.held) : streamed(req, res, target, upstream);
    // undici frames the body itself, and Node has already answered any 100-continue.
    delete h['transfer-encoding'];
    delete h.expect;
    const handle = handler(res, target, upstream, giveBack);
    try {
      dispatcher.dispatch({
        origin: origin(target.endpoint),
        path: target.url,
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        headers: h as Record<string, string | string[]>,
        body,
        headersTimeout: options.upstreamTimeoutMs,
        bodyTimeout: options.upstreamTimeoutMs,
      }, handle);
    } catch (err) {
      handle.onResponseError?.(undefined as never, err as Error);
    }
  }

  /** The client's body as it streams in, counted against the limit when its length is not declared. */
  function streamed(req: http.IncomingMessage, res: http.ServerResponse, target: ForwardTarget, upstream: Upstream): Readable | null {
    const h = req.headers;
    if (h['content-length'] === undefined && h['transfer-encoding'] !== undefined) return bodyLimiter(req, res, target, upstream);
    return h['content-length'] !== undefined && h['content-length'] !== '0' ? req : null;
  }

  /**
   * At the shutdown deadline: a streamed reply (SSE) is ended the way the protocol allows, with
   * its chunked body closed properly (a client sees the stream end, not a network error, and its
   * EventSource reconnects); the worker's side is aborted. Resolves once those endings are
   * written (a second at most) with how many, and how many other exchanges are still in flight
   * (the caller cuts those).
   */
  async function endStreams(): Promise<{ ended: number; others: number }> {
    const ending: Promise<void>[] = [];
    for (const [res, upstream] of inFlight) {
      if (!String(res.getHeader('content-type') ?? '').startsWith('text/event-stream')) continue;
      inFlight.delete(res);
      ending.push(new Promise((resolve) => res.end(resolve)));
      upstream.settled = true;
      upstream.cut();
    }
    const others = inFlight.size;
    await Promise.race([Promise.all(ending), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    return { ended: ending.length, others };
  }

  return { web, hold, endStreams, close: () => void dispatcher.destroy() };
}

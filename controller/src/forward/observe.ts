import type http from 'node:http';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

export interface ExchangeInfo {
  kind: 'control' | 'http' | 'websocket';
  /** What the worker was asked for (never the client's `/sessions/{id}` prefix). */
  url: string;
}

/**
 * The one place that counts the client port's answers and writes the access log: one line per
 * exchange when it is over, whoever answered it (the worker, or the router with an error).
 */
export function createObserver(metrics: Metrics, logger: Logger) {
  function open(req: http.IncomingMessage, info: ExchangeInfo) {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    let status: number | undefined;
    let session: { hash: string; worker: string } | undefined;
    let closed = false;
    const exchange = {
      /** The answer's status, counted once, whether the worker's or the router's. */
      answered(code: number): void {
        if (status !== undefined) return;
        status = code;
        metrics.proxyRequests.inc({ code: String(code) });
        if (info.kind === 'websocket' && code !== 101) metrics.websocketsRefused.inc({ code: String(code) });
      },
      /** The worker's response headers arrived. */
      firstByte(): void {
        metrics.proxyTtfb.observe(seconds());
      },
      /** The exchange reached a session's worker: the log line names its hash (never the id) and the worker. */
      reached(worker: { hash: string; worker: string }): void {
        session = worker;
      },
      /** Writes the access log line, once; `outcome` says how it ended when not normally. */
      close(outcome?: string): void {
        if (closed) return;
        closed = true;
        logger.info({
          reqId: req.headers['x-request-id'],
          method: req.method,
          url: info.url,
          kind: info.kind,
          status: status ?? 0,
          ms: Math.round(seconds() * 1000),
          ...(session ? { session: session.hash.slice(0, 12), worker: session.worker } : {}),
          ...(outcome ? { outcome } : {}),
        }, 'exchange');
      },
      /** Closes the exchange when `res` closes, with its status if nothing was counted yet. */
      endsWith(res: http.ServerResponse): void {
        res.once('close', () => {
          exchange.answered(res.statusCode);
          exchange.close(res.writableFinished ? undefined : 'cut');
        });
      },
    };
    return exchange;
  }
  return { open };
}

export type Observer = ReturnType<typeof createObserver>;
export type Exchange = ReturnType<Observer['open']>;

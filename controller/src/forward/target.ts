import type { WarmpoolError } from '../errors.js';
import type { Endpoint } from '../pool/types.js';
import type { Exchange } from './observe.js';

/** One exchange to forward: where, what, and what to tell whom when it ends. */
export interface ForwardTarget {
  endpoint: Endpoint;
  /** Path and query the worker sees. */
  url: string;
  /** Headers added to the client's response (the cookie of an implicit session). */
  responseHeaders?: Record<string, string>;
  /** Counts and logs the exchange. */
  exchange: Exchange;
  /** Called once when the exchange is over, however it ended. */
  done: () => void;
  /**
   * Turns a transport failure into the client's error: a refused connection may mean the
   * worker died, which the session layer reports as 410 `session_lost`.
   */
  failure: (err: NodeJS.ErrnoException) => WarmpoolError;
  /**
   * The request's body, read whole beforehand (the first request of an implicit session), so
   * the request can be sent again to another worker.
   */
  held?: Buffer;
  /**
   * When set (with `held`), a worker that fails before the client got any byte (no connection,
   * a reset, a 5xx) is not answered for: the exchange is given back through this, with why, and
   * the caller forwards the request again elsewhere.
   */
  retry?: (why: string) => void;
}

/** undici's and Node's names for a worker that stayed silent too long. */
export const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);

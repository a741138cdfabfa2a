/**
 * Every error a client can see is one of these: a stable `code` to match on, the HTTP status,
 * and whether trying again later can succeed. Callers match on `code`, never on the message.
 */
export class WarmpoolError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    /** Seconds a client should wait before trying again (sent as Retry-After). */
    readonly retryAfterS?: number,
    /** The fault underneath, for logs (never sent to a client). */
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'WarmpoolError';
  }

  toJSON(): { error: string; message: string } {
    return { error: this.code, message: this.message };
  }
}

export const errors = {
  sessionNotFound: () => new WarmpoolError('session_not_found', 404, 'no such session'),
  sessionRequired: () =>
    new WarmpoolError('session_not_found', 404, 'a WebSocket needs a session: create one with POST /sessions and name it in the path, X-Session-Id or the cookie'),
  sessionEnded: () => new WarmpoolError('session_ended', 410, 'this session has ended'),
  sessionLost: () => new WarmpoolError('session_lost', 410, 'the worker of this session is gone'),
  noWarmWorker: (retryAfterS: number) =>
    new WarmpoolError('no_warm_worker', 503, 'no warm worker became available in time', retryAfterS),
  claimQueueFull: (retryAfterS: number) =>
    new WarmpoolError('claim_queue_full', 503, 'too many session requests are already waiting', retryAfterS),
  atCapacity: (retryAfterS: number) =>
    new WarmpoolError('at_capacity', 503, 'the maximum number of sessions is reached', retryAfterS),
  clientLimit: (retryAfterS: number) =>
    new WarmpoolError('client_session_limit', 429, 'this client holds its maximum number of sessions', retryAfterS),
  rateLimited: (retryAfterS: number) =>
    new WarmpoolError('rate_limited', 429, 'this client is starting sessions too fast', retryAfterS),
  poolNotFound: (name: string) => new WarmpoolError('pool_not_found', 404, `no pool named ${JSON.stringify(name)}`),
  poolRequired: (pools: string) => new WarmpoolError('pool_required', 400, `name a pool in "pool": there is no DEFAULT_POOL and several pools (${pools})`),
  invalidBody: (message: string) => new WarmpoolError('invalid_body', 400, message),
  unsupportedMediaType: () => new WarmpoolError('unsupported_media_type', 415, 'the body of POST /sessions is JSON (content-type: application/json)'),
  settingsTooLarge: (limit: number) => new WarmpoolError('settings_too_large', 413, `settings over ${limit} bytes as JSON`),
  settingsRejected: (message: string) => new WarmpoolError('settings_rejected', 400, message),
  workerFailed: (retryAfterS: number) =>
    new WarmpoolError('worker_failed', 503, 'no worker accepted the session\'s settings after several tries', retryAfterS),
  unauthorized: () => new WarmpoolError('unauthorized', 401, 'a valid bearer token is required'),
  bodyTooLarge: (limit: number) => new WarmpoolError('body_too_large', 413, `request body over ${limit} bytes`),
  unsupportedTransferCoding: () =>
    new WarmpoolError('unsupported_transfer_coding', 501, 'only the chunked transfer coding is supported on request bodies'),
  badRequest: (message: string) => new WarmpoolError('bad_request', 400, message),
  headersTooLarge: () => new WarmpoolError('headers_too_large', 431, 'request headers over the size limit'),
  uriTooLong: (limit: number) => new WarmpoolError('uri_too_long', 414, `request target over ${limit} bytes`),
  requestTimeout: () => new WarmpoolError('request_timeout', 408, 'the request headers did not arrive in time'),
  expectationFailed: () => new WarmpoolError('expectation_failed', 417, 'the only expectation supported is 100-continue'),
  reservedPath: () => new WarmpoolError('reserved_path', 403, 'a worker\'s /session route takes settings from the controller only'),
  notFound: () => new WarmpoolError('not_found', 404, 'no such route'),
  methodNotAllowed: () => new WarmpoolError('method_not_allowed', 405, 'method not allowed on this route'),
  upstreamUnavailable: () => new WarmpoolError('upstream_unavailable', 502, 'the session worker did not answer'),
  upstreamTimeout: () => new WarmpoolError('upstream_timeout', 504, 'the session worker took too long'),
  backendUnavailable: (retryAfterS: number, cause?: unknown) =>
    new WarmpoolError('backend_unavailable', 503, 'the pool backend cannot take claims right now', retryAfterS, cause),
  /** Nobody reads this answer (the client left while it waited); it names the case in logs and metrics. */
  clientClosed: () => new WarmpoolError('client_closed', 499, 'the client closed the connection before the session was ready'),
  shuttingDown: () => new WarmpoolError('shutting_down', 503, 'this replica is shutting down', 1),
  internal: () => new WarmpoolError('internal', 500, 'internal error'),
} as const;

export function isWarmpoolError(err: unknown): err is WarmpoolError {
  return err instanceof WarmpoolError;
}

/**
 * The client's answer for whatever a request handler threw, or undefined for a fault of ours.
 * A URIError can only come from decoding the client's own percent-escapes (express decodes
 * route parameters, so `GET /sessions/%zz` throws one): that is the client's malformed path.
 */
export function clientErrorOf(err: unknown): WarmpoolError | undefined {
  if (isWarmpoolError(err)) return err;
  if (err instanceof URIError) return errors.badRequest('the path has a malformed percent-escape');
  return undefined;
}

import type http from 'node:http';

/** Headers that describe one connection, not the message (RFC 9110 7.6.1), plus the proxy ones. */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade'];

/** Who the client is and how it came, as a proxy in front tells it: believed only behind a trusted proxy. */
const CLIENT_WRITTEN = ['forwarded', 'x-real-ip', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'];

function connectionTokens(value: unknown): string[] {
  return String(value ?? '').split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
}

/**
 * The request headers as the worker gets them, rewritten in place: no hop-by-hop headers (an
 * upgrade keeps `connection` and `upgrade`, which are the handshake), and the router's own
 * X-Forwarded-For/-Proto/-Host. What the client wrote about its origin (`Forwarded`,
 * `X-Real-IP`, `X-Forwarded-*`) is dropped unless `trustProxy`, where a proxy of the operator's
 * wrote it; then the router appends to it. Credentials are not this function's business: the
 * http layer strips them before a request gets here.
 */
export function rewriteRequestHeaders(req: http.IncomingMessage, upgrade: boolean, trustProxy: boolean): void {
  const h = req.headers;
  for (const name of [...HOP_BY_HOP, ...connectionTokens(h.connection)]) {
    if (upgrade && (name === 'connection' || name === 'upgrade')) continue;
    delete h[name];
  }
  const given = { for: h['x-forwarded-for'], proto: h['x-forwarded-proto'], host: h['x-forwarded-host'] };
  if (!trustProxy) for (const name of CLIENT_WRITTEN) delete h[name];
  const remote = req.socket.remoteAddress ?? '';
  h['x-forwarded-for'] = trustProxy && given.for ? `${String(given.for)}, ${remote}` : remote;
  h['x-forwarded-proto'] = trustProxy && given.proto ? given.proto : (upgrade ? 'ws' : 'http');
  h['x-forwarded-host'] = trustProxy && given.host ? given.host : (h.host ?? '');
}

/** The worker's response headers as the client gets them: without hop-by-hop ones, with the session's own. */
export function responseHeaders(upstream: http.IncomingHttpHeaders, extra: Record<string, string> | undefined): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = { ...upstream };
  // Node frames the body for its own client (chunked, or close-delimited for HTTP/1.0).
  for (const name of [...HOP_BY_HOP, ...connectionTokens(upstream.connection), 'transfer-encoding']) delete out[name];
  for (const [name, value] of Object.entries(extra ?? {})) {
    const key = name.toLowerCase();
    if (key === 'set-cookie') {
      const existing = upstream['set-cookie'] ?? [];
      out['set-cookie'] = [...(Array.isArray(existing) ? existing : [existing]), value];
    } else {
      out[key] = value;
    }
  }
  return out;
}

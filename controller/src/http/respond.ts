import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { WarmpoolError } from '../errors.js';

/** An error answer on a response: JSON `{error, message}`, Retry-After when given. */
export function sendError(res: http.ServerResponse, err: WarmpoolError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(err.toJSON());
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  if (err.retryAfterS !== undefined) headers['retry-after'] = err.retryAfterS;
  res.writeHead(err.status, headers);
  res.end(body);
}

/** How long a socket answered by sendSocketError may stay open for its client to read the answer. */
const LINGER_MS = 2000;

/**
 * An HTTP error on a socket with no ServerResponse: one that asked for an upgrade or a CONNECT,
 * or that sent a request Node could not parse. Node no longer reads such a socket, so after the
 * answer it would never see the client's close and would keep the socket (and block a graceful
 * shutdown) forever. It is read and drained until the client closes, and destroyed after a
 * short linger at most; destroying it at once could reset the connection before the client
 * has read the answer.
 */
export function sendSocketError(socket: Duplex, err: WarmpoolError): void {
  const body = JSON.stringify(err.toJSON());
  const retry = err.retryAfterS !== undefined ? `retry-after: ${err.retryAfterS}\r\n` : '';
  socket.end(
    `HTTP/1.1 ${err.status} ${http.STATUS_CODES[err.status] ?? 'Error'}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\n${retry}connection: close\r\n\r\n${body}`,
  );
  socket.resume();
  const linger = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  socket.once('close', () => clearTimeout(linger));
}

import { errors } from '../errors.js';

/**
 * Whether a path holds a dot-segment in any spelling: `.` or `..` written plainly or
 * percent-encoded (`%2e`), between slashes written plainly, percent-encoded (`%2F`) or as a
 * backslash (`\`, `%5C`), which some servers and frameworks treat as a slash.
 */
export function hasDotSegment(path: string): boolean {
  const plain = path.replace(/%2e/gi, '.').replace(/%2f|%5c|\\/gi, '/');
  return plain.split('/').some((segment) => segment === '.' || segment === '..');
}

/**
 * The longest request target forwarded. The router takes 16 KiB of request line and headers, as
 * Node's servers do by default; a worker given a target near that, plus the forwarding headers
 * the router adds, would refuse it with a bare 431 or a closed connection. Half of it (as
 * nginx's default buffers) leaves the headers their room and the client a clear 414.
 */
const MAX_TARGET_BYTES = 8192;

/**
 * Refuses, with 414 uri_too_long, a target over MAX_TARGET_BYTES, and with 400 bad_request, a request target that no ordinary client sends and that the
 * readers along the way could route differently:
 * - anything but a path (origin-form): `*` (asterisk-form) and `http://host/...`
 *   (absolute-form, what a client sends to a forward proxy; RFC 9112 3.2.2 asks an origin to
 *   accept it, but no client of an origin sends it). warmpool is an origin to its clients,
 *   reached directly or through an ingress, both of which send a path; forwarding
 *   another form would hand the worker a target naming some other host, and undici refuses
 *   `*` (which surfaced as a 502 blaming the worker).
 * - a fragment (`#`), which is never part of a request target (RFC 9112 3.2), so that
 *   `/sessions/{id}/x#y` cannot slip past the session route.
 * - a dot-segment in the path. Clients remove dot-segments before sending (RFC 3986 5.2.4;
 *   browsers, fetch and curl all do), so only a crafted request carries one, and it is
 *   ambiguous: `/sessions/A/../B/history` is session A's request to this router but B's to
 *   any normalising proxy or worker framework that reads it after us. Rather than pick one
 *   reading (forwarding it to A would leave every worker image to resolve the traversal
 *   safely; normalising it would route on a path the client did not send), it is refused.
 * Empty segments (`//`) and percent-escapes are left alone: they are unambiguous and some
 * applications use them.
 */
export function checkRequestTarget(url: string): void {
  if (url.length > MAX_TARGET_BYTES) throw errors.uriTooLong(MAX_TARGET_BYTES);
  if (!url.startsWith('/')) throw errors.badRequest('the request target must be a path');
  if (url.includes('#')) throw errors.badRequest('a request target has no fragment');
  const q = url.indexOf('?');
  if (hasDotSegment(q < 0 ? url : url.slice(0, q))) throw errors.badRequest('the path has a dot-segment');
}

/**
 * Whether a worker path is its settings route, `/session`, in any spelling a worker framework
 * might route there (any case, percent-escapes, repeated or trailing slashes). The route takes a
 * session's settings once, from the controller, before the client has its id; a client that
 * reached it through the router could set a session's system prompt, or a `user` for the
 * worker's logs, itself.
 */
export function isSettingsRoute(url: string): boolean {
  const q = url.indexOf('?');
  let path = q < 0 ? url : url.slice(0, q);
  try {
    path = decodeURIComponent(path);
  } catch {
    // Left as written: a malformed escape is no spelling of /session.
  }
  return path.toLowerCase().replace(/[/\\]+/g, '/').replace(/\/$/, '') === '/session';
}

import { errors } from '../errors.js';
import { checkRequestTarget, isSettingsRoute } from './request-target.js';

/** `/sessions/{id}` and `/sessions/{id}/{rest}`, matched on the raw (undecoded) path. */
const SESSION_PATH = /^\/sessions\/([^/?#]+)(\/[^?#]*)?$/;

/** What a request on the client port is for; `url` is what the access log may show of it. */
export type Route =
  | { kind: 'control'; url: string }
  | { kind: 'explicit'; token: string; url: string }
  | { kind: 'implicit'; url: string };

export function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q) };
}

/**
 * The control API (`/sessions`, `/sessions/{id}`), a session named in the path
 * (`/sessions/{id}/{rest}`, forwarded as `/{rest}`), or any other path, whose session comes from
 * a header or cookie. Throws 400 for a target no ordinary client sends (see request-target), and
 * 403 for the worker's settings route, before any session is looked up or claimed.
 */
export function route(url: string): Route {
  checkRequestTarget(url);
  const { path, query } = splitUrl(url);
  if (path === '/sessions') return { kind: 'control', url: path };
  const m = SESSION_PATH.exec(path);
  const rest = m?.[2];
  // The id never reaches a log line.
  if (m && rest === undefined) return { kind: 'control', url: '/sessions/{id}' };
  const forwarded: Route = m ? { kind: 'explicit', token: m[1] as string, url: rest + query } : { kind: 'implicit', url };
  if (isSettingsRoute(forwarded.url)) throw errors.reservedPath();
  return forwarded;
}

/**
 * The id in a control path as the client wrote it. express hands handlers a percent-decoded
 * parameter, which would let `/sessions/%41...` name a session that the proxied form of the same
 * path (matched undecoded) does not find; every route takes the id undecoded instead.
 */
export function rawSessionId(url: string): string {
  return SESSION_PATH.exec(splitUrl(url).path)?.[1] ?? '';
}

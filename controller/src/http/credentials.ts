import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { Config } from '../config.js';
import { errors } from '../errors.js';

/**
 * Checks a bearer token against the configured ones in time independent of where they differ:
 * both sides are hashed first so the comparison always runs on equal lengths.
 */
export function tokenMatcher(tokens: readonly string[]): (candidate: string) => boolean {
  const digests = tokens.map((t) => createHash('sha256').update(t).digest());
  return (candidate) => {
    const d = createHash('sha256').update(candidate).digest();
    let ok = false;
    for (const known of digests) ok = timingSafeEqual(known, d) || ok;
    return ok;
  };
}

/** The value of the request's cookie `name`, if it sends one. */
export function cookieValue(req: http.IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** A stable, non-reversible key for per-client limits: never the raw API token. */
function clientKey(raw: string): string {
  return createHash('sha256').update(`client:${raw}`).digest('hex').slice(0, 16);
}

/** `/sessions/{id}` at the start of a path: what a page served under a session sends in its Referer. */
const SESSION_PREFIX = /^\/sessions\/[^/?#]+(?=\/|$)/;

/**
 * The Referer a worker may see: the router's `/sessions/{id}` prefix taken off its path (the
 * worker sees its own paths without it), and none at all if the id is still in it anywhere, or
 * if it is not a URL.
 */
export function refererForWorker(referer: string, token: string | undefined): string | undefined {
  let url: URL;
  try {
    url = new URL(referer);
  } catch {
    return undefined;
  }
  url.pathname = url.pathname.replace(SESSION_PREFIX, '') || '/';
  const out = url.toString();
  return token !== undefined && out.includes(token) ? undefined : out;
}

type CredentialConfig = Pick<Config, 'API_TOKENS' | 'TRUST_PROXY' | 'SESSION_COOKIE' | 'SESSION_MAX_LIFETIME_S'>;

/**
 * The one owner of what a request carries about who sends it: the API bearer token, the session
 * id (header or cookie), the client's identity for limits, and what of all that a worker may see
 * (nothing: the worker is the session's, not the client's).
 */
export function createCredentials(config: CredentialConfig) {
  const authOn = config.API_TOKENS.length > 0;
  const tokenOk = tokenMatcher(config.API_TOKENS);
  const cookieName = config.SESSION_COOKIE;
  const cookiePrefix = `${cookieName}=`;
  const lifetimeS = Math.ceil(config.SESSION_MAX_LIFETIME_S);

  function bearer(req: http.IncomingMessage): string | undefined {
    return /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
  }

  return {
    authorize(req: http.IncomingMessage): void {
      if (!authOn) return;
      const token = bearer(req);
      if (token === undefined || !tokenOk(token)) throw errors.unauthorized();
    },

    /**
     * Whose limits a request counts against: its API token when auth is on, else its address.
     * Behind a trusted proxy that is the last X-Forwarded-For entry, the one the proxy appended:
     * entries before it are whatever the client sent, so keying on them would let a client pick
     * a fresh identity per request.
     */
    clientOf(req: http.IncomingMessage): string {
      if (authOn) return clientKey(`token:${bearer(req) ?? ''}`);
      const forwarded = config.TRUST_PROXY ? String(req.headers['x-forwarded-for'] ?? '').split(',').pop()?.trim() : '';
      return clientKey(`addr:${forwarded || req.socket.remoteAddress || ''}`);
    },

    /** The session id a request names by header or cookie (a path names it itself). */
    sessionToken(req: http.IncomingMessage): string | undefined {
      const header = req.headers['x-session-id'];
      if (typeof header === 'string' && header !== '') return header.trim();
      return cookieValue(req, cookieName);
    },

    sessionCookie(token: string): string {
      return `${cookieName}=${token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${lifetimeS}`;
    },

    /** Takes off the request everything that names the session or the client's credentials. */
    stripForWorker(req: http.IncomingMessage, token: string | undefined): void {
      const h = req.headers;
      delete h['x-session-id'];
      delete h.authorization;
      if (h.cookie) {
        const kept = h.cookie.split(';').map((c) => c.trim()).filter((c) => c && !c.startsWith(cookiePrefix));
        if (kept.length > 0) h.cookie = kept.join('; ');
        else delete h.cookie;
      }
      if (h.referer !== undefined) {
        const referer = refererForWorker(h.referer, token);
        if (referer === undefined) delete h.referer;
        else h.referer = referer;
      }
    },
  };
}

export type Credentials = ReturnType<typeof createCredentials>;

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { Config } from '../config.js';
import { cookieValue, createCredentials, tokenMatcher } from '../http/credentials.js';

export const ADMIN_COOKIE = 'warmpool_admin';
/** A login lasts a working day; a restart of the replica ends it sooner (the key is per process). */
const LOGIN_S = 12 * 3600;

type AuthConfig = Pick<Config, 'API_TOKENS' | 'TRUST_PROXY' | 'SESSION_COOKIE' | 'SESSION_MAX_LIFETIME_S'>;

/**
 * Who may see the status page when API_TOKENS is set: a script sends a bearer token, as on the
 * client port; a browser posts a token once to the login form and gets a cookie in return. The
 * cookie holds no token: an expiry and its HMAC under a key this process drew at start, HttpOnly
 * and SameSite=Strict, so no page script and no other site's request carries it.
 */
export function createAdminAuth(config: AuthConfig, now: () => number = Date.now) {
  const on = config.API_TOKENS.length > 0;
  const credentials = createCredentials(config);
  const tokenOk = tokenMatcher(config.API_TOKENS);
  const key = randomBytes(32);
  const sign = (expiry: string) => createHmac('sha256', key).update(expiry).digest();

  function cookieOk(value: string | undefined): boolean {
    const m = /^(\d{1,15})\.([A-Za-z0-9_-]{43})$/.exec(value ?? '');
    if (!m) return false;
    const [, expiry, mac] = m as unknown as [string, string, string];
    return Number(expiry) > now() && timingSafeEqual(sign(expiry), Buffer.from(mac, 'base64url'));
  }

  return {
    on,

    allowed(req: http.IncomingMessage): boolean {
      if (!on || cookieOk(cookieValue(req, ADMIN_COOKIE))) return true;
      try {
        credentials.authorize(req);
        return true;
      } catch {
        return false;
      }
    },

    /** The Set-Cookie of a login with `token`, or undefined when the token is not one of API_TOKENS. */
    login(token: string): string | undefined {
      if (!on || !tokenOk(token)) return undefined;
      const expiry = String(now() + LOGIN_S * 1000);
      return `${ADMIN_COOKIE}=${expiry}.${sign(expiry).toString('base64url')}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${LOGIN_S}`;
    },

    logout(): string {
      return `${ADMIN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
    },
  };
}

export type AdminAuth = ReturnType<typeof createAdminAuth>;

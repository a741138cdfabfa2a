import type http from 'node:http';
import { POOL_NAME } from '../config.js';
import { errors } from '../errors.js';
import type { Settings } from '../sessions/delivery.js';

/** What `POST /sessions` asks for. */
export interface SessionRequest {
  pools?: readonly string[];
  settings?: Settings;
}

/** More pools than any preference list needs; it bounds what one request makes the router try. */
const MAX_POOLS = 16;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Room around the settings for the rest of the body (the pool list, spacing). */
export const BODY_ALLOWANCE = 4096;

/**
 * The body of `POST /sessions`, checked: `{"pool": name | [names], "settings": {...}}`, both
 * optional, nothing else. A pool name that cannot be one (wrong shape) is a malformed body, not
 * an unknown pool. Settings are measured as the JSON the worker will receive.
 */
export function parseSessionRequest(body: unknown, maxSettingsBytes: number): SessionRequest {
  if (body === undefined) return {};
  if (!isPlainObject(body)) throw errors.invalidBody('the body must be a JSON object: {"pool": ..., "settings": {...}}');
  const unknown = Object.keys(body).find((k) => k !== 'pool' && k !== 'settings');
  if (unknown !== undefined) throw errors.invalidBody(`unknown field ${JSON.stringify(unknown).slice(0, 80)}: the body takes "pool" and "settings"`);
  const out: { pools?: readonly string[]; settings?: Settings } = {};
  if (body.pool !== undefined) {
    const pools = typeof body.pool === 'string' ? [body.pool] : body.pool;
    if (!Array.isArray(pools) || pools.length === 0 || pools.length > MAX_POOLS || !pools.every((p) => typeof p === 'string' && POOL_NAME.test(p))) {
      throw errors.invalidBody(`"pool" must be a pool name or a list of 1 to ${MAX_POOLS} of them`);
    }
    out.pools = pools as string[];
  }
  if (body.settings !== undefined) {
    if (!isPlainObject(body.settings)) throw errors.invalidBody('"settings" must be a JSON object');
    if (Buffer.byteLength(JSON.stringify(body.settings)) > maxSettingsBytes) throw errors.settingsTooLarge(maxSettingsBytes);
    out.settings = body.settings;
  }
  return out;
}

/** Whether a request carries a body at all (a length over zero, or a transfer coding). */
export function hasBody(req: http.IncomingMessage): boolean {
  return Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
}

/** What body-parser's failures mean to a client, by their stable `type`. */
export function bodyError(err: unknown, limit: number): Error | undefined {
  const type = (err as { type?: unknown } | null)?.type;
  if (type === 'entity.too.large') return errors.bodyTooLarge(limit);
  if (type === 'entity.parse.failed') return errors.invalidBody('the body is not valid JSON');
  if (type === 'encoding.unsupported' || type === 'charset.unsupported') return errors.unsupportedMediaType();
  if (type === 'request.aborted' || type === 'request.size.invalid') return errors.badRequest('the body ended early or its length is wrong');
  return undefined;
}

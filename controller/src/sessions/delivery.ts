import { request } from 'undici';
import type { Endpoint } from '../pool/types.js';

export type Settings = Readonly<Record<string, unknown>>;

/** What a worker did with a session's settings. */
export type Delivery =
  | { outcome: 'accepted' }
  /** The worker refused them (4xx): they are wrong for it, and another worker would say the same. */
  | { outcome: 'rejected'; message: string }
  /** The worker failed (5xx, no connection, no answer in time): another worker may do better. */
  | { outcome: 'failed'; why: string };

function host(endpoint: Endpoint): string {
  return endpoint.host.includes(':') ? `[${endpoint.host}]:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`;
}

/** The worker's own words for a refusal, from its `{"error","message"}` body when it has one. */
async function refusal(body: { text(): Promise<string> }, status: number): Promise<string> {
  const text = await body.text().catch(() => '');
  try {
    const parsed = JSON.parse(text) as { message?: unknown; error?: unknown };
    if (typeof parsed.message === 'string') return `the worker refused the settings: ${parsed.message}`;
  } catch {
    // Not JSON: the status says enough.
  }
  return `the worker refused the settings (${status})`;
}

/**
 * Hands a claimed worker its session's settings: `POST /session {"settings": ...}`, once, before
 * the client gets its id. A worker without the route (404) takes no settings: empty settings are
 * then accepted, others refused. The settings go nowhere else: not to a log, not to Kubernetes.
 */
export async function deliverSettings(endpoint: Endpoint, settings: Settings, timeoutMs: number): Promise<Delivery> {
  try {
    const res = await request(`http://${host(endpoint)}/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ settings }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
      // The connection is never used again (the session's traffic goes through the proxy's own
      // agent), so it closes now rather than idling on both ends until a keep-alive timer ends
      // it (in a burst of claims, that late close cost CPU on both ends: docs/benchmarks.md).
      reset: true,
    });
    const status = res.statusCode;
    if (status >= 400 && status < 500 && status !== 404) return { outcome: 'rejected', message: await refusal(res.body, status) };
    await res.body.dump();
    if ((status >= 200 && status < 300) || (status === 404 && Object.keys(settings).length === 0)) return { outcome: 'accepted' };
    if (status === 404) return { outcome: 'rejected', message: 'the worker of this pool takes no settings' };
    return { outcome: 'failed', why: `answered ${status}` };
  } catch (err) {
    return { outcome: 'failed', why: (err as NodeJS.ErrnoException).code ?? (err as Error).name };
  }
}

/**
 * A session's settings, delivered once by the router right after the claim (`POST /session`),
 * before the client has its id. Unknown keys are refused rather than ignored, so a misspelt
 * setting fails the session's creation instead of silently doing nothing.
 */
export interface Settings {
  /** System prompt: steers every reply of the session, and is the default system message of completions. */
  system?: string;
  /** Who the session is for, as the operator names them: shown in the worker's log lines. */
  user?: string;
  /** Default model of completions; passed on when forwarding to a model server. */
  model?: string;
  /** Default sampling temperature, 0 to 2; passed on when forwarding. */
  temperature?: number;
}

export class SettingsError extends Error {
  readonly code = 'invalid_settings';
  readonly status = 400;
}

const MAX_TEXT = 8192;

function text(value: unknown, key: string): string {
  if (typeof value !== 'string' || value.length > MAX_TEXT) {
    throw new SettingsError(`settings.${key} must be a string of at most ${MAX_TEXT} characters`);
  }
  return value;
}

/** The body of `POST /session`, `{"settings": {...}}` (no `settings`: none). */
export function parseSettings(body: unknown): Settings {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new SettingsError('body must be {"settings": {...}}');
  }
  const raw = (body as { settings?: unknown }).settings ?? {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new SettingsError('settings must be an object');
  const settings: Settings = {};
  for (const [key, value] of Object.entries(raw)) {
    if (key === 'system' || key === 'user' || key === 'model') {
      settings[key] = text(value, key);
    } else if (key === 'temperature') {
      if (typeof value !== 'number' || !(value >= 0 && value <= 2)) throw new SettingsError('settings.temperature must be a number from 0 to 2');
      settings.temperature = value;
    } else {
      throw new SettingsError(`unknown setting ${JSON.stringify(key)} (known: system, user, model, temperature)`);
    }
  }
  return Object.freeze(settings);
}

import { readFileSync } from 'node:fs';
import { MISS_RATE_RANGE, SIZING_DEFAULTS, SIZING_LIMITS, parseMissRate } from './pool/sizing.js';

export interface ConfigProblem {
  readonly variable: string;
  readonly message: string;
}

/**
 * A bad environment: every bad variable at once, so a user fixes them in one round. Each line of
 * the message names its variable; main prints them and exits 1.
 */
export class ConfigError extends Error {
  readonly code = 'invalid_config';
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(problems.map((p) => `${p.variable}: ${p.message}`).join('\n'));
    this.name = 'ConfigError';
  }
}

/** What a parser throws; parseConfig adds the variable's name and collects it. */
class BadValue extends Error {}

type Parser<T> = (raw: string) => T;

const integer = (min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> => (raw) => {
  if (!/^-?\d+$/.test(raw.trim())) throw new BadValue(`must be an integer, got ${JSON.stringify(raw)}`);
  const value = Number(raw);
  if (value < min || value > max) throw new BadValue(`must be between ${min} and ${max}, got ${value}`);
  return value;
};

/** Durations in seconds accept fractions, so tests and small setups can use sub-second values. */
const seconds = (min: number): Parser<number> => (raw) => {
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value)) {
    throw new BadValue(`must be a number of seconds, got ${JSON.stringify(raw)}`);
  }
  if (value < min) throw new BadValue(`must be at least ${min}, got ${value}`);
  return value;
};

/** A target miss rate: the one parser the pool annotation uses too. */
const missRate: Parser<number> = (raw) => {
  const value = parseMissRate(raw);
  if (value === undefined) throw new BadValue(`must be ${MISS_RATE_RANGE}, got ${JSON.stringify(raw)}`);
  return value;
};

const boolean: Parser<boolean> = (raw) => {
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  throw new BadValue(`must be true or false, got ${JSON.stringify(raw)}`);
};

const oneOf = <T extends string>(...values: T[]): Parser<T> => (raw) => {
  if (!(values as string[]).includes(raw)) {
    throw new BadValue(`must be one of ${values.join(', ')}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
};

const pattern = (re: RegExp, what: string): Parser<string> => (raw) => {
  if (!re.test(raw)) throw new BadValue(`must be ${what}, got ${JSON.stringify(raw)}`);
  return raw;
};

const text: Parser<string> = (raw) => raw;

/** Empty: unset, so the caller's fallback applies. */
const optional = <T>(parse: Parser<T>): Parser<T | undefined> => (raw) => (raw.trim() === '' ? undefined : parse(raw));

/** A pool name: a DNS label, as the `warmpool.dev/pool` label value and metric label need. */
export const POOL_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

const poolName = pattern(POOL_NAME, 'a pool name (lower-case letters, digits and dashes, at most 63)');

export interface LocalPoolSpec {
  readonly name: string;
  readonly size: number;
  /** Empty: LOCAL_WORKER_CMD, or the reference worker. */
  readonly command: string;
}

/** `name=size[:command];...`: several local pools, each with its own size and worker command. */
const localPools: Parser<readonly LocalPoolSpec[]> = (raw) => {
  const specs: LocalPoolSpec[] = [];
  for (const part of raw.split(';').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([^=]+)=(\d+)(?::(.*))?$/.exec(part);
    if (!m) throw new BadValue(`must be name=size[:command][;name=size[:command]...], got ${JSON.stringify(part)}`);
    const name = poolName((m[1] as string).trim());
    if (specs.some((s) => s.name === name)) throw new BadValue(`names the pool ${name} twice`);
    specs.push(Object.freeze({ name, size: integer(0, 10000)(m[2] as string), command: (m[3] ?? '').trim() }));
  }
  return Object.freeze(specs);
};

/** A Kubernetes label key or value (qualified name rules, simplified to what labels accept). */
const LABEL_PART = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

const tokenList: Parser<string[]> = (raw) => {
  const tokens = raw.split(/[\s,]+/).filter(Boolean);
  for (const t of tokens) {
    if (t.length < 16) throw new BadValue('each token must be at least 16 characters');
  }
  return tokens;
};

interface Key<T> {
  default: string;
  doc: string;
  parse: Parser<T>;
}

function key<T>(defaultValue: string, doc: string, parse: Parser<T>): Key<T> {
  return { default: defaultValue, doc, parse };
}

/**
 * Every setting, its default and its meaning. The README's configuration table is checked
 * against this list by a unit test, so the two cannot drift apart.
 */
export const CONFIG_KEYS = {
  PORT: key('8080', 'Client port: the session API and proxied session traffic.', integer(0, 65535)),
  ADMIN_PORT: key('9090', 'Admin port: the status page (/), /status.json, /metrics, /healthz, /readyz, /pool. Keep it off the Service.', integer(0, 65535)),
  STATUS_SAMPLE_S: key('5', 'Interval between the samples the status page charts.', seconds(0.1)),
  STATUS_HISTORY_S: key('900', 'How far back the status page\'s charts go (samples are kept in memory, at most 10000).', seconds(1)),
  LISTEN_HOST: key('0.0.0.0', 'Address both ports bind to.', text),
  BACKEND: key('auto', 'Pool backend: `kubernetes`, `local` (worker processes on 127.0.0.1), or `auto` (kubernetes when in a cluster, or when a kubeconfig has a current context whose cluster has a server; else local).', oneOf('auto', 'kubernetes', 'local')),
  NAMESPACE: key('warmpool', 'Namespace of the worker pods (kubernetes backend).', pattern(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a namespace name')),
  POOL_LABEL_KEY: key('assigned', 'Label whose value is `not_assigned` on warm pods and `assigned` on claimed ones.', pattern(LABEL_PART, 'a label key')),
  POOL_SIZE: key('3', 'Warm workers to keep ready, in each pool that does not say otherwise.', integer(0, 10000)),
  POOL_MIN_SIZE: key('', 'Default smallest size of a kubernetes pool (its Deployment\'s `warmpool.dev/min-size` annotation overrides it). Empty: `POOL_SIZE`.', optional(integer(0, 10000))),
  POOL_MAX_SIZE: key('', 'Default largest size of a kubernetes pool (annotation `warmpool.dev/max-size`). Empty: `POOL_SIZE`.', optional(integer(0, 10000))),
  POOL_TARGET_MISS_RATE: key(String(SIZING_DEFAULTS.targetMissRate), 'Default share of new sessions allowed to wait for a worker to start, which adaptive sizing (min-size < max-size) sizes a kubernetes pool for (annotation `warmpool.dev/target-miss-rate`).', missRate),
  POOL_RATE_WINDOW_S: key(String(SIZING_DEFAULTS.rateWindowS), 'Default window over which adaptive sizing measures a pool\'s claim rate, seconds (annotation `warmpool.dev/rate-window-seconds`).', integer(SIZING_LIMITS.minWindowS, SIZING_LIMITS.maxWindowS)),
  POOL_SCALE_DOWN_WINDOW_S: key(String(SIZING_DEFAULTS.scaleDownWindowS), 'Default time a smaller size must be asked for before adaptive sizing shrinks a pool, seconds; it then shrinks by at most a quarter per quarter of this window (annotation `warmpool.dev/scale-down-window-seconds`).', integer(SIZING_LIMITS.minWindowS, SIZING_LIMITS.maxWindowS)),
  DEFAULT_POOL: key('', 'Pool of a session that names none (and of implicit sessions). Empty: the only pool, when there is exactly one.', optional(poolName)),
  MAX_SETTINGS_BYTES: key('16384', 'Largest `settings` object of `POST /sessions`, as JSON; larger gets 413 `settings_too_large`.', integer(2, 1024 * 1024)),
  DELIVERY_TIMEOUT_MS: key('5000', 'How long a claimed worker has to accept a session\'s settings (`POST /session`) before it is released and another is claimed.', integer(1)),
  LOCAL_POOLS: key('', 'Local pools, `name=size[:command];...` (a command without `;`). Empty: one pool `chatbot` of `POOL_SIZE` workers running `LOCAL_WORKER_CMD`.', localPools),
  WORKER_PORT: key('8080', 'Port the worker listens on inside its pod (kubernetes backend).', integer(1, 65535)),
  MAX_SESSIONS: key('100', 'Most sessions at once; beyond it new sessions get 503 `at_capacity`.', integer(1)),
  MAX_SESSIONS_PER_CLIENT: key('10', 'Most sessions one client (API token, or address) holds at once; beyond it 429.', integer(1)),
  SESSION_CREATE_RATE: key('30', 'New sessions one client (API token, or address) may start per minute on one replica, with a burst of as many; beyond it 429 `rate_limited`. 0: no limit.', integer(0)),
  CLAIM_TIMEOUT_MS: key('10000', 'How long a new session waits for a warm worker before 503 `no_warm_worker`.', integer(0)),
  MAX_PENDING_CLAIMS: key('100', 'Most session requests waiting for a warm worker; beyond it 503 `claim_queue_full`.', integer(0)),
  SESSION_IDLE_TIMEOUT_S: key('900', 'A session with no traffic for this long is ended and its worker deleted.', seconds(0.1)),
  SESSION_MAX_LIFETIME_S: key('14400', 'A session is ended this long after it was created, busy or not.', seconds(0.1)),
  ACTIVITY_FLUSH_S: key('30', 'Shortest interval between writes of a session\'s last activity to its pod (kubernetes backend).', seconds(0.1)),
  AUTO_SESSION: key('true', 'A request to any other path without a session claims one for it (returned in `X-Session-Id` and the cookie).', boolean),
  SESSION_COOKIE: key('warmpool_session', 'Name of the session cookie.', pattern(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'a cookie name')),
  API_TOKENS: key('', 'Comma-separated bearer tokens (16+ characters each); when set, creating a session needs one. Empty: no auth.', tokenList),
  API_TOKENS_FILE: key('', 'File with one bearer token per line, read at start (instead of or beside `API_TOKENS`).', text),
  TRUST_PROXY: key('false', 'Trust `X-Forwarded-*` from the client (only behind a proxy you run): the client address is the last `X-Forwarded-For` entry, the one your proxy added.', boolean),
  UPSTREAM_TIMEOUT_S: key('300', 'Longest silence from a worker on a proxied request before 504 (chat replies are slow).', seconds(0.1)),
  HEADERS_TIMEOUT_S: key('10', 'Time a client has to send its request headers.', seconds(0.1)),
  MAX_BODY_BYTES: key('1048576', 'Largest request body; larger gets 413.', integer(0)),
  SHUTDOWN_TIMEOUT_S: key('10', 'On SIGTERM, how long in-flight requests may finish before connections are closed.', seconds(0)),
  LOG_LEVEL: key('info', 'pino log level: fatal, error, warn, info, debug, trace, silent.', oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent')),
  LOCAL_WORKER_CMD: key('', 'Command for a local worker, run by `/bin/sh` as `exec <command>` in its own process group and given `HOST`/`PORT`; it must answer `GET /healthz`. Empty: the reference worker.', text),
} as const;

type Keys = typeof CONFIG_KEYS;
type Parsed = { readonly [K in keyof Keys]: Keys[K] extends Key<infer T> ? T : never };

export interface Config extends Omit<Parsed, 'API_TOKENS' | 'API_TOKENS_FILE'> {
  /** Tokens from API_TOKENS and API_TOKENS_FILE together; empty means auth is off. */
  readonly API_TOKENS: readonly string[];
}

type Env = Readonly<Record<string, string | undefined>>;

const isSet = (env: Env, name: string) => env[name] !== undefined && env[name] !== '';

/** Two listeners on one port cannot both start; the variable the user set is the one at fault. */
function portClash(env: Env, out: Record<string, unknown>): ConfigProblem | undefined {
  const port = out.PORT;
  if (port === undefined || port === 0 || port !== out.ADMIN_PORT) return undefined;
  const [variable, other] = isSet(env, 'ADMIN_PORT') || !isSet(env, 'PORT') ? ['ADMIN_PORT', 'PORT'] : ['PORT', 'ADMIN_PORT'];
  const which = isSet(env, other) ? `${other}=${port}` : `${other}'s default, ${port}`;
  return { variable, message: `must differ from ${other}: both are ${port} (${which}); the client and admin ports cannot share one port` };
}

function readTokens(out: Record<string, unknown>, readFile: (p: string) => string): string[] {
  const tokens = [...(out.API_TOKENS as string[] | undefined ?? [])];
  const file = out.API_TOKENS_FILE as string | undefined;
  if (!file) return tokens;
  let content: string;
  try {
    content = readFile(file);
  } catch (err) {
    throw new BadValue(`cannot read ${file}: ${(err as Error).message}`);
  }
  return [...tokens, ...tokenList(content)];
}

/**
 * Parses and validates the whole environment once. An unset or empty variable takes its
 * default. Every bad variable is reported, in one ConfigError. The result is frozen: nothing
 * changes configuration after start.
 */
export function parseConfig(env: Env, readFile = (p: string) => readFileSync(p, 'utf8')): Config {
  const out: Record<string, unknown> = {};
  const problems: ConfigProblem[] = [];
  const attempt = (variable: string, run: () => void) => {
    try {
      run();
    } catch (err) {
      if (!(err instanceof BadValue)) throw err;
      problems.push({ variable, message: err.message });
    }
  };
  for (const [name, spec] of Object.entries(CONFIG_KEYS) as [keyof Keys, Key<unknown>][]) {
    attempt(name, () => {
      out[name] = spec.parse(isSet(env, name) ? env[name] as string : spec.default);
    });
  }
  attempt('API_TOKENS_FILE', () => {
    out.API_TOKENS = Object.freeze(readTokens(out, readFile));
  });
  delete out.API_TOKENS_FILE;
  const clash = portClash(env, out);
  if (clash) problems.push(clash);
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(out) as unknown as Config;
}

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { errors } from '../../controller/src/errors.js';
import { ECHO_WORKER, createSession, eventually, parseLine, startController, waitWarm, workerPid, type Controller } from './harness.js';

/**
 * Hostile and malformed client input, mostly as properties: whatever a client sends, the
 * controller answers with a JSON error of a stable code (never 500, and no 502/504 while the
 * workers are healthy), keeps running, and a request carrying one session's token never reaches
 * another session's worker. Requests go over raw sockets so that nothing normalises them first.
 */

const MAX_BODY_BYTES = 1000;
/** Every code errors.ts can produce: "a stable code" means one of these. */
const CODES = new Set(Object.values(errors).map((make) => make(1 as never).code));
/** Bounded runs keep the file well under a minute on 2 cores. */
const RUNS = { numRuns: 150 };

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Bytes after the first final response (a well-behaved server sends none before closing). */
  rest: Buffer;
}

/** Parses the first final response in `buf`; undefined while it is incomplete. */
function parseReply(buf: Buffer, closed: boolean, head: boolean): Reply | undefined {
  let at = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) return undefined;
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3}) /.exec(lines[0] ?? '');
    if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const start = end + 4;
    if (status < 200 && status !== 101) {
      at = start;
      continue;
    }
    if (head || status === 204 || status === 304 || status === 101) return { status, headers, body: Buffer.alloc(0), rest: buf.subarray(start) };
    if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const chunks: Buffer[] = [];
      let pos = start;
      for (;;) {
        const eol = buf.indexOf('\r\n', pos);
        if (eol < 0) return undefined;
        const size = parseInt(buf.subarray(pos, eol).toString('latin1'), 16);
        if (size === 0) {
          const trailerEnd = buf.indexOf('\r\n\r\n', eol);
          if (trailerEnd < 0) return undefined;
          return { status, headers, body: Buffer.concat(chunks), rest: buf.subarray(trailerEnd + 4) };
        }
        if (buf.length < eol + 2 + size + 2) return undefined;
        chunks.push(buf.subarray(eol + 2, eol + 2 + size));
        pos = eol + 2 + size + 2;
      }
    }
    const length = headers['content-length'];
    if (length !== undefined) {
      const n = Number(length);
      if (buf.length < start + n) return undefined;
      return { status, headers, body: buf.subarray(start, start + n), rest: buf.subarray(start + n) };
    }
    return closed ? { status, headers, body: buf.subarray(start), rest: Buffer.alloc(0) } : undefined;
  }
}

interface Exchange {
  /** The first final response, or undefined when the server closed without one. */
  reply: Reply | undefined;
  raw: Buffer;
}

/**
 * Writes `request` (in `parts`, one per write, when given) on a fresh connection and resolves
 * with the first final response, or once the server closes. `untilClose` waits for the close
 * even after a response, to see whether anything follows it.
 */
function exchange(c: Controller, request: string | Buffer | (string | Buffer)[], opts: { head?: boolean; untilClose?: boolean; timeoutMs?: number } = {}): Promise<Exchange> {
  const { port } = new URL(c.base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1');
    let raw = Buffer.alloc(0);
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      let reply: Reply | undefined;
      try {
        reply = parseReply(raw, closed, opts.head ?? false);
      } catch (err) {
        settled = true;
        socket.destroy();
        reject(err as Error);
        return;
      }
      if (!closed && (reply === undefined || opts.untilClose)) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ reply, raw });
    };
    const timer = setTimeout(() => {
      settled = true;
      socket.destroy();
      reject(new Error(`no answer in time; got ${JSON.stringify(raw.toString('latin1').slice(0, 300))}`));
    }, opts.timeoutMs ?? 10_000);
    socket.on('data', (d: Buffer) => {
      raw = Buffer.concat([raw, d]);
      finish(false);
    });
    // A reset after the answer is the server dropping a request it already refused.
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    for (const part of Array.isArray(request) ? request : [request]) socket.write(typeof part === 'string' ? Buffer.from(part, 'latin1') : part);
  });
}

/** A raw HTTP/1.1 request; `Connection: close` unless the headers say otherwise. */
function rawRequest(method: string, target: string, headers: [string, string][] = [], body: Buffer | string = ''): Buffer {
  const all: [string, string][] = [['Host', 'warmpool.test'], ...headers];
  if (!headers.some(([name]) => name.toLowerCase() === 'connection')) all.push(['Connection', 'close']);
  const head = `${method} ${target} HTTP/1.1\r\n${all.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), typeof body === 'string' ? Buffer.from(body, 'latin1') : body]);
}

interface Echo {
  url: string;
  pid: number;
  seen: number;
  sha256: string;
}

/** `length` pseudo-random bytes from `seed` (xorshift): a failing body shrinks by its length, not byte by byte. */
function bytesOf(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function json<T>(reply: Reply): T {
  return JSON.parse(reply.body.toString('utf8')) as T;
}

/** Asserts the answer is the controller's own JSON error with a stable code; returns the code. */
function assertError(reply: Reply, what: string, head = false): string {
  assert.match(reply.headers['content-type'] ?? '', /^application\/json/, `${what}: a JSON error (${reply.status})`);
  if (head) return '';
  const body = json<{ error: string; message: string }>(reply);
  assert.ok(CODES.has(body.error), `${what}: ${body.error} is a code from errors.ts`);
  assert.equal(typeof body.message, 'string', `${what}: a message`);
  return body.error;
}

/** Controller-made 5xx that are not faults: capacity (503) and an unsupported body coding (501). */
const EXPECTED_5XX = new Set([501, 503]);

// A hang (a controller that never answers or never stops) fails the suite instead of stalling the run.
describe('bad input, property-based', { timeout: 180_000 }, () => {
  let c: Controller;
  /** Live sessions A and B, one ended by DELETE, one whose worker died. */
  let A: string;
  let B: string;
  let ended: string;
  let lost: string;
  let pidA: number;
  let pidB: number;

  /** How many requests a session's echo worker had received (this read counts as one more). */
  async function seen(id: string): Promise<number> {
    return ((await (await fetch(`${c.base}/sessions/${id}/count`)).json()) as Echo).seen;
  }

  before(async () => {
    // MAX_SESSIONS=2 with A and B live: any claim a fuzzed request triggers (POST /sessions, or
    // AUTO_SESSION on a path without a session) is answered 503 at_capacity at once, so the
    // properties never wait for or use up a warm worker.
    c = await startController({
      POOL_SIZE: '3',
      MAX_SESSIONS: '2',
      MAX_BODY_BYTES: String(MAX_BODY_BYTES),
      HEADERS_TIMEOUT_S: '1',
      TRUST_PROXY: 'true',
      LOCAL_WORKER_CMD: ECHO_WORKER,
    });
    await waitWarm(c, 3);
    ended = await createSession(c);
    assert.equal((await fetch(`${c.base}/sessions/${ended}`, { method: 'DELETE' })).status, 204);
    lost = await createSession(c);
    process.kill(await workerPid(c, lost), 'SIGKILL');
    await eventually('the killed worker\'s session to be lost', async () => ((await fetch(`${c.base}/sessions/${lost}`)).status === 410 || undefined));
    await waitWarm(c, 2);
    A = await createSession(c);
    B = await createSession(c);
    pidA = await workerPid(c, A);
    pidB = await workerPid(c, B);
    assert.notEqual(pidA, pidB, 'A and B have workers of their own');
  });

  after(async () => {
    await c?.stop();
  });

  /** Who answered: A's worker (the only 2xx possible here), or the controller with a JSON error. */
  function assertAnswer(reply: Reply | undefined, what: string, head = false): string | undefined {
    assert.ok(reply, `${what}: an answer, not a bare close`);
    assert.ok(reply.status < 500 || EXPECTED_5XX.has(reply.status), `${what}: ${reply.status} is not a fault`);
    if (reply.status < 300) {
      if (!head) assert.equal(json<Echo>(reply).pid, pidA, `${what}: a 2xx comes from A's worker`);
      return undefined;
    }
    return assertError(reply, what, head);
  }

  test('when paths are arbitrary (dot-segments, encoded slashes, NUL, bad escapes, unicode, very long) under any route and method, then the answer is never 500 and every error is JSON with a stable code', async () => {
    const before = await seen(B);
    // Weighted so that most paths are well-formed enough to be routed, not refused by the parser.
    const segment = fc.oneof(
      { weight: 6, arbitrary: fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=:@%-]{1,24}$/) },
      { weight: 4, arbitrary: fc.constantFrom('..', '.', '%2e%2e', '%2E%2e', '.%2e', '%2F', '%2f..', '%5C', '\\', '', '%00', '%zz', '%', '%2', '%e9', '%C3%A9', '%ff', ';', '%3B', '*', '?', '?a=1', '#', '#x', '@', ':', '~', 'sessions', 'healthz') },
      { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }).map((s) => encodeURIComponent(s)) },
      // Raw bytes past ASCII and control bytes: the request line is no longer valid HTTP.
      { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }).map((s) => Buffer.from(s, 'utf8').toString('latin1')) },
      { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => 'a'.repeat(n)) },
    );
    const prefix = fc.constantFrom('', '/', '/sessions', '/sessions/', `/sessions/${'A'.repeat(22)}`, '/sessions/%zz', '/sessions/x', '//sessions', '/SESSIONS');
    const live = fc.constant('live');
    const request = fc.record({
      method: fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...http.METHODS) }, { weight: 1, arbitrary: fc.constantFrom('FOO', 'get', 'G ET', '') }),
      prefix: fc.oneof(prefix, live),
      segments: fc.array(segment, { maxLength: 3 }),
      carrier: fc.constantFrom('none', 'header', 'cookie'),
      upgrade: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
    });
    await fc.assert(fc.asyncProperty(request, async (r) => {
      // A's token is always followed by a rest (at least `/`), so no fuzzed DELETE ends session A.
      const rest = r.segments.length ? `/${r.segments.join('/')}` : r.prefix === 'live' ? '/' : '';
      const path = (r.prefix === 'live' ? `/sessions/${A}` : r.prefix) + rest;
      const headers: [string, string][] = [];
      if (r.carrier === 'header') headers.push(['X-Session-Id', A]);
      if (r.carrier === 'cookie') headers.push(['Cookie', `warmpool_session=${A}`]);
      if (r.upgrade) headers.push(['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Version', '13'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==']);
      const what = `${r.method} ${path.slice(0, 200)}`;
      const { reply } = await exchange(c, rawRequest(r.method, path || '/', headers), { head: r.method === 'HEAD' });
      assertAnswer(reply, what, r.method === 'HEAD');
    }), RUNS);
    assert.equal(await seen(B), before + 1, 'B\'s worker got no request but the counting one');
  });

  test('when a path has a malformed percent-escape in a session id of the control API, then the answer is 400 bad_request, not 500', async () => {
    for (const [method, path] of [['GET', '/sessions/%zz'], ['DELETE', '/sessions/%'], ['GET', '/sessions/%E0%A4%A'], ['PATCH', '/sessions/%zz']] as const) {
      const { reply } = await exchange(c, rawRequest(method, path));
      assert.ok(reply, `${method} ${path}: answered`);
      assert.equal(reply.status, 400, `${method} ${path}`);
      assert.equal(assertError(reply, path), 'bad_request');
    }
  });

  test('when the request target is over 8 KiB, then the answer is 414 uri_too_long and nothing is forwarded; just under, the worker gets it', async () => {
    const before = await seen(B);
    for (const path of [`/sessions/${A}/${'a'.repeat(8192)}`, `/sessions/${B}/${'a'.repeat(16_200)}`, `/${'a'.repeat(8192)}`]) {
      const { reply } = await exchange(c, rawRequest('GET', path));
      assert.ok(reply, 'answered');
      assert.deepEqual([reply.status, assertError(reply, path.slice(0, 40))], [414, 'uri_too_long']);
    }
    assert.equal(await seen(B), before + 1, 'B\'s worker got nothing but the counting request');
    const under = `/sessions/${A}/${'a'.repeat(8000)}`;
    const { reply } = await exchange(c, rawRequest('GET', under));
    assert.equal(reply?.status, 200);
  });

  test('when the request target is not a path (asterisk- or absolute-form) or has a fragment, then the answer is 400 bad_request and no session is claimed for it', async () => {
    for (const target of ['*', `http://127.0.0.1:1/sessions/${B}/history`, '/echo#x', `/sessions/${A}/x#y`]) {
      for (const headers of [[], [['X-Session-Id', A]]] as [string, string][][]) {
        const { reply } = await exchange(c, rawRequest('OPTIONS', target, headers));
        assert.ok(reply, `${target}: answered`);
        assert.equal(reply.status, 400, `${target} ${headers.length ? 'with' : 'without'} a session`);
        assert.equal(assertError(reply, target), 'bad_request');
        assert.equal(reply.headers['x-session-id'], undefined, `${target}: no session was claimed`);
      }
    }
  });

  test('when header names and values are arbitrary (odd session ids, cookies, credentials, forwarding, request ids, lengths), then the answer is never 500', async () => {
    const tokenName = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,30}$/);
    const name = fc.oneof(
      fc.constantFrom('X-Session-Id', 'Cookie', 'Authorization', 'X-Forwarded-For', 'X-Forwarded-Proto', 'X-Forwarded-Host', 'X-Request-Id', 'Content-Length', 'Host', 'Connection', 'Expect', 'Upgrade', 'TE', 'Keep-Alive', 'Trailer', 'Proxy-Authorization', 'Accept'),
      tokenName,
    );
    const value = fc.oneof(
      fc.constantFrom(A, ` ${A} `, `${A}, ${A}`, B.toLowerCase(), `warmpool_session=${A}`, `warmpool_session=${A}; warmpool_session=zz`, 'warmpool_session=', '=;=;', 'Bearer ', 'Bearer x y', 'keep-alive, x-session-id, cookie', 'close', 'upgrade', 'websocket', 'h2c', '100-continue', 'x, y', '-1', '1e3', '0x10', '99999999999999999999', '5, 5', '', ' ', '\t'),
      fc.stringMatching(/^[\t\x20-\x7e]{0,60}$/),
      fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b.filter((x) => x === 9 || (x >= 0x20 && x !== 0x7f))).toString('latin1')),
      fc.integer({ min: 0, max: 3000 }).map(String),
    );
    const request = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS'),
      target: fc.constantFrom(`/sessions/${A}/echo`, '/echo', '/sessions', `/sessions/${'Q'.repeat(22)}`, `/sessions/${ended}/echo`),
      headers: fc.array(fc.tuple(name, value), { maxLength: 6 }),
    });
    await fc.assert(fc.asyncProperty(request, async (r) => {
      // A body that matches a plain declared length, so the exchange always completes: framing
      // errors are the raw-socket tests' business.
      const declared = r.headers.find(([n]) => n.toLowerCase() === 'content-length')?.[1];
      const body = declared !== undefined && /^\s*\d{1,4}\s*$/.test(declared) ? 'x'.repeat(Number(declared)) : '';
      const what = `${r.method} ${r.target} ${JSON.stringify(r.headers)}`;
      const { reply } = await exchange(c, rawRequest(r.method, r.target, r.headers, body), { head: r.method === 'HEAD' });
      assertAnswer(reply, what, r.method === 'HEAD');
    }), RUNS);
  });

  test('when session ids are random, malformed or of ended sessions, then every route answers 404 session_not_found, 410 session_ended or 410 session_lost', async () => {
    const unknown = fc.oneof(
      fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b).toString('base64url')),
      fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b).toString('base64url')).filter((s) => s.length !== 22),
      fc.stringMatching(/^[A-Za-z0-9_~!$&'()*+,=:@-]{1,60}$/),
    );
    const id = fc.oneof(
      unknown.map((value) => ({ value, error: 'session_not_found', status: 404 })),
      fc.constant(0).map(() => ({ value: ended, error: 'session_ended', status: 410 })),
      fc.constant(0).map(() => ({ value: lost, error: 'session_lost', status: 410 })),
    );
    const via = fc.constantFrom('GET /sessions/{id}', 'DELETE /sessions/{id}', 'GET /sessions/{id}/echo', 'POST /sessions/{id}/chat', 'header', 'cookie', 'websocket path', 'websocket header');
    await fc.assert(fc.asyncProperty(id, via, async (s, how) => {
      const [method, template] = how.includes(' /') ? how.split(' ') as [string, string] : ['GET', '/echo'];
      // A function, not a string: an id like "$'" is a replacement pattern in String.replace.
      const target = template.replace('{id}', () => s.value);
      const headers: [string, string][] = [];
      if (how.endsWith('header')) headers.push(['X-Session-Id', s.value]);
      if (how === 'cookie') headers.push(['Cookie', `theme=dark; warmpool_session=${s.value}`]);
      if (how.startsWith('websocket')) headers.push(['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Version', '13'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==']);
      const wsTarget = how === 'websocket path' ? `/sessions/${s.value}/ws` : how === 'websocket header' ? '/ws' : target;
      const { reply } = await exchange(c, rawRequest(method, wsTarget, headers));
      assert.ok(reply, `${how}: answered`);
      assert.equal(reply.status, s.status, `${how} ${s.value}`);
      assert.equal(assertError(reply, `${how} ${s.value}`), s.error);
    }), RUNS);
  });

  test('when bodies are random bytes, declared or chunked, to POST /sessions and to a session path, then the worker gets them intact up to MAX_BODY_BYTES and 413 past it, never 500', async () => {
    const request = fc.record({
      length: fc.oneof(fc.integer({ min: 0, max: 1200 }), fc.integer({ min: 900, max: 3000 })),
      seed: fc.integer(),
      target: fc.constantFrom('/sessions', `/sessions/${A}/echo`),
      framing: fc.constantFrom('length', 'chunked'),
      cuts: fc.array(fc.integer({ min: 1, max: 700 }), { maxLength: 4 }),
      extension: fc.constantFrom('', ';a=b', ';x'),
    });
    await fc.assert(fc.asyncProperty(request, async (r) => {
      const bytes = bytesOf(r.length, r.seed);
      let payload: Buffer;
      const headers: [string, string][] = [['Content-Type', 'application/octet-stream']];
      if (r.framing === 'length') {
        headers.push(['Content-Length', String(bytes.length)]);
        payload = bytes;
      } else {
        headers.push(['Transfer-Encoding', 'chunked']);
        const chunks: Buffer[] = [];
        let at = 0;
        for (const cut of [...r.cuts, bytes.length]) {
          const piece = bytes.subarray(at, Math.min(bytes.length, at + cut));
          at += piece.length;
          if (piece.length) chunks.push(Buffer.from(`${piece.length.toString(16)}${r.extension}\r\n`), piece, Buffer.from('\r\n'));
        }
        if (at < bytes.length) chunks.push(Buffer.from(`${(bytes.length - at).toString(16)}\r\n`), bytes.subarray(at), Buffer.from('\r\n'));
        payload = Buffer.concat([...chunks, Buffer.from('0\r\n\r\n')]);
      }
      const what = `${r.target} ${r.framing} ${bytes.length} bytes`;
      const { reply } = await exchange(c, rawRequest('POST', r.target, headers, payload));
      assert.ok(reply, `${what}: answered`);
      const over = bytes.length > MAX_BODY_BYTES;
      if (r.target === '/sessions') {
        // POST /sessions reads JSON only: a declared oversized body is refused by its length
        // before anything else, any other by its type; an empty one is no body (and this
        // replica is at capacity).
        const tooLarge = over && r.framing === 'length';
        const empty = bytes.length === 0 && r.framing === 'length';
        assert.equal(reply.status, tooLarge ? 413 : empty ? 503 : 415, what);
        assert.equal(assertError(reply, what), tooLarge ? 'body_too_large' : empty ? 'at_capacity' : 'unsupported_media_type');
      } else if (over) {
        assert.equal(reply.status, 413, what);
        assert.equal(assertError(reply, what), 'body_too_large');
      } else {
        assert.equal(reply.status, 200, what);
        const echo = json<Echo>(reply);
        assert.equal(echo.pid, pidA, what);
        assert.equal(echo.sha256, createHash('sha256').update(bytes).digest('hex'), `${what}: the worker got the body intact`);
      }
    }), RUNS);
  });

  test('when a huge body length is declared, then 413 comes at once without the body being sent', async () => {
    for (const target of ['/sessions', `/sessions/${A}/chat`]) {
      for (const length of ['1001', '1073741824', '9007199254740991']) {
        const { reply } = await exchange(c, rawRequest('POST', target, [['Content-Length', length]], 'x'));
        assert.ok(reply, `${target} ${length}: answered`);
        assert.equal(reply.status, 413, `${target} ${length}`);
        assert.equal(assertError(reply, target), 'body_too_large');
      }
    }
  });

  test('when a header value holds a bare CR, a bare LF, an obs-fold or a NUL, then the answer is 400 bad_request and nothing reaches the worker', async () => {
    const before = await seen(A);
    const breaker = fc.constantFrom('\n', '\r', '\r\n ', '\r\n\t', '\0', '\nX-Injected: 1', '\rX-Injected: 1');
    const header = fc.tuple(fc.constantFrom('X-Note', 'X-Session-Id', 'Cookie', 'X-Forwarded-For', 'User-Agent'), fc.stringMatching(/^[a-z0-9]{0,12}$/), breaker, fc.stringMatching(/^[a-z0-9]{1,12}$/));
    await fc.assert(fc.asyncProperty(header, async ([name, left, bad, right]) => {
      const value = name === 'X-Session-Id' ? A : name === 'Cookie' ? `warmpool_session=${A}` : left;
      const request = `GET /sessions/${A}/echo HTTP/1.1\r\nHost: x\r\n${name}: ${value}${bad}${right}\r\nConnection: close\r\n\r\n`;
      const { reply } = await exchange(c, request);
      assert.ok(reply, `${JSON.stringify(bad)}: answered`);
      assert.equal(reply.status, 400, `${name} with ${JSON.stringify(bad)}`);
      assert.equal(assertError(reply, JSON.stringify(bad)), 'bad_request');
    }), { numRuns: 60 });
    assert.equal(await seen(A), before + 1, 'A\'s worker got no request but the counting one');
  });

  test('when request headers are over the size limit, then the answer is 431 headers_too_large', async () => {
    for (const headers of [[['X-Big', 'a'.repeat(20_000)]], Array.from({ length: 600 }, (_, i) => [`X-H${i}`, 'v'.repeat(30)])] as [string, string][][]) {
      const { reply } = await exchange(c, rawRequest('GET', `/sessions/${A}/echo`, headers));
      assert.ok(reply, 'answered');
      assert.equal(reply.status, 431);
      assert.equal(assertError(reply, 'big headers'), 'headers_too_large');
    }
  });

  test('when a client sends its headers slowly, then it is cut off after HEADERS_TIMEOUT_S with 408 request_timeout or a close', async () => {
    const { port } = new URL(c.base);
    const socket = net.connect(Number(port), '127.0.0.1');
    let got = '';
    let closed = false;
    socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
    socket.on('error', () => undefined);
    socket.on('close', () => { closed = true; });
    socket.write(`GET /sessions/${A}/echo HTTP/1.1\r\nHost: x\r\n`);
    // One more header line every 200 ms: never finished, never idle long.
    const drip = setInterval(() => { if (!closed) socket.write('X-Drip: 1\r\n'); }, 200);
    try {
      // Node's default sweep every 30 s would leave the connection open far longer than this.
      await eventually('the slow client to be cut off', () => (closed ? true : undefined), 10_000);
    } finally {
      clearInterval(drip);
      socket.destroy();
    }
    if (got) {
      const reply = parseReply(Buffer.from(got, 'latin1'), true, false);
      assert.ok(reply, 'a whole answer');
      assert.equal(reply.status, 408);
      assert.equal(assertError(reply, 'slow headers'), 'request_timeout');
    }
  });

  test('when a request carries both Transfer-Encoding: chunked and Content-Length, or two different Content-Lengths, then the answer is 400 and the worker sees no request, smuggled or not', async () => {
    const before = await seen(A);
    const smuggled = `GET /sessions/${A}/smuggled HTTP/1.1\r\nHost: x\r\n\r\n`;
    const cases = [
      `POST /sessions/${A}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /sessions/${A}/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: ${4 + smuggled.length}\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /sessions/${A}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
      `POST /sessions/${A}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0, ${smuggled.length}\r\n\r\n${smuggled}`,
      `POST /sessions/${A}/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`,
      `POST /echo HTTP/1.1\r\nHost: x\r\nX-Session-Id: ${A}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\nContent-Length: 3\r\n\r\n0\r\n\r\n${smuggled}`,
    ];
    for (const request of cases) {
      const { reply } = await exchange(c, request, { untilClose: true });
      assert.ok(reply, `answered: ${request.slice(0, 120)}`);
      assert.equal(reply.status, 400, request.slice(0, 160));
      assert.equal(assertError(reply, 'smuggling'), 'bad_request');
      assert.equal(reply.rest.length, 0, 'one answer, nothing after it');
    }
    assert.equal(await seen(A), before + 1, 'A\'s worker got no request but the counting one');
  });

  test('when a body has a transfer coding other than chunked, then the answer is 501 unsupported_transfer_coding, once, and the worker sees nothing', async () => {
    const before = await seen(A);
    for (const coding of ['gzip, chunked', 'deflate,chunked']) {
      const { reply } = await exchange(c, rawRequest('POST', `/sessions/${A}/echo`, [['Transfer-Encoding', coding]], '3\r\nabc\r\n0\r\n\r\n'), { untilClose: true });
      assert.ok(reply, `${coding}: answered`);
      assert.equal(reply.status, 501, coding);
      assert.equal(assertError(reply, coding), 'unsupported_transfer_coding');
      assert.equal(reply.rest.length, 0, `${coding}: one answer, nothing after it`);
    }
    // Node hands over the request before it finds this body unparseable: the early answer must
    // not be followed by a second status line from the parse error.
    const { reply } = await exchange(c, rawRequest('POST', `/sessions/${A}/echo`, [['Transfer-Encoding', 'identity']], 'abc'), { untilClose: true });
    assert.ok(reply, 'identity: answered');
    assert.equal(reply.status, 501);
    assert.equal(reply.rest.toString('latin1'), '', 'identity: one answer, nothing after it');
    assert.equal(await seen(A), before + 1, 'A\'s worker got no request but the counting one');
  });

  test('when a client sends an Expect other than 100-continue or a CONNECT, then the answer is a JSON 417 or 405', async () => {
    const expect = await exchange(c, rawRequest('POST', `/sessions/${A}/echo`, [['Expect', 'teapot'], ['Content-Length', '2']], 'hi'));
    assert.ok(expect.reply, 'expect: answered');
    assert.equal(expect.reply.status, 417);
    assert.equal(assertError(expect.reply, 'expect'), 'expectation_failed');
    const connect = await exchange(c, `CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n`);
    assert.ok(connect.reply, 'connect: answered');
    assert.equal(connect.reply.status, 405);
    assert.equal(assertError(connect.reply, 'connect'), 'method_not_allowed');
  });

  test('when a WebSocket upgrade names an unknown, ended or no session, or is malformed, then it gets a JSON 404/410/400 on the socket and the controller stays up', async () => {
    const upgrade: [string, string][] = [['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Version', '13'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==']];
    const cases: [string, [string, string][], number, string][] = [
      [`/sessions/${'Z'.repeat(22)}/ws`, upgrade, 404, 'session_not_found'],
      ['/ws', [...upgrade, ['X-Session-Id', 'nope']], 404, 'session_not_found'],
      [`/sessions/${ended}/ws`, upgrade, 410, 'session_ended'],
      ['/ws', [...upgrade, ['Cookie', `warmpool_session=${ended}`]], 410, 'session_ended'],
      [`/sessions/${lost}/ws`, upgrade, 410, 'session_lost'],
      ['/ws', upgrade, 404, 'session_not_found'],
      [`/sessions/${A}`, upgrade, 404, 'not_found'],
      ['/sessions', upgrade, 404, 'not_found'],
      [`/sessions/${A}/../${B}/ws`, upgrade, 400, 'bad_request'],
      ['*', [...upgrade, ['X-Session-Id', A]], 400, 'bad_request'],
    ];
    for (const [target, headers, status, code] of cases) {
      const { reply } = await exchange(c, rawRequest('GET', target, headers));
      assert.ok(reply, `${target}: answered`);
      assert.equal(reply.status, status, target);
      assert.equal(assertError(reply, target), code);
    }
    // Malformed upgrades: garbage in place of the protocol, key and version, and a body after them.
    for (const headers of [
      [['Connection', 'Upgrade'], ['Upgrade', '\x7f\x80garbage'], ['X-Session-Id', 'x']],
      [['Connection', 'Upgrade, Upgrade'], ['Upgrade', 'websocket, h2c'], ['Sec-WebSocket-Key', '!!!'], ['Sec-WebSocket-Version', '99'], ['X-Session-Id', A]],
      [['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Content-Length', '5'], ['X-Session-Id', 'bad']],
    ] as [string, string][][]) {
      const { reply } = await exchange(c, [rawRequest('GET', '/ws', headers), 'hello'], { untilClose: true });
      if (reply) assertAnswer(reply, JSON.stringify(headers));
    }
    assert.equal((await fetch(`${c.admin}/healthz`)).status, 200);
  });

  test('when a client keeps a refused upgrade\'s socket open, then the controller closes it instead of keeping it forever', async () => {
    const { port } = new URL(c.base);
    // allowHalfOpen: this client does not close its side when the controller closes its own.
    const socket = net.connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true });
    let got = '';
    let dropped = false;
    socket.on('data', (d: Buffer) => { got += d.toString('latin1'); });
    socket.on('error', () => { dropped = true; });
    socket.on('close', () => { dropped = true; });
    socket.write(rawRequest('GET', '/ws', [['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['X-Session-Id', 'nope']]));
    // Bytes keep coming: a socket the controller still holds takes them; one it let go resets.
    const keepTalking = setInterval(() => { if (!dropped) socket.write('x'); }, 100);
    try {
      await eventually('the controller to let the socket go', () => (dropped ? true : undefined), 15_000);
    } finally {
      clearInterval(keepTalking);
      socket.destroy();
    }
    const reply = parseReply(Buffer.from(got, 'latin1'), true, false);
    assert.ok(reply, 'the answer came before the socket went');
    assert.equal(reply.status, 404);
  });

  test('when requests carry only A\'s token with paths that spell B\'s session by traversal, encoding or doubled slashes, then none reaches B\'s worker', async () => {
    const before = await seen(B);
    /**
     * What is answered, decided: a path with a dot-segment in any spelling is refused 400
     * (see checkRequestTarget: it means A to us and B to anything that normalises it later);
     * a path that names a session explicitly is routed by that name only, raw, never decoded
     * (so `B%00` is simply no session); and any other path, `//sessions/B/...` included, goes to
     * the session the header or cookie names, unchanged.
     */
    const cases: [string, 'path' | 'header' | 'cookie', number, string | undefined][] = [
      [`/sessions/${A}/../${B}/history`, 'path', 400, 'bad_request'],
      [`/sessions/${A}/..%2F${B}/history`, 'path', 400, 'bad_request'],
      [`/sessions/${A}%2F..%2F${B}/history`, 'path', 400, 'bad_request'],
      [`/sessions/${A}/%2e%2e/%2e%2e/sessions/${B}/history`, 'path', 400, 'bad_request'],
      [`/sessions/${A}/..\\..\\sessions\\${B}\\history`, 'path', 400, 'bad_request'],
      [`/sessions/${B}%00/history`, 'header', 404, 'session_not_found'],
      [`/sessions/${B}%2F/history`, 'cookie', 404, 'session_not_found'],
      [`//sessions/${B}/history`, 'header', 200, undefined],
      [`//sessions/${B}/history`, 'cookie', 200, undefined],
      [`/x/../sessions/${B}/history`, 'header', 400, 'bad_request'],
      [`/./sessions/${B}/history`, 'cookie', 400, 'bad_request'],
    ];
    for (const [path, carrier, status, code] of cases) {
      const headers: [string, string][] = carrier === 'header' ? [['X-Session-Id', A]] : carrier === 'cookie' ? [['Cookie', `warmpool_session=${A}`]] : [];
      const { reply } = await exchange(c, rawRequest('GET', path, headers));
      assert.ok(reply, `${path}: answered`);
      assert.equal(reply.status, status, `${path} via ${carrier}`);
      if (code) assert.equal(assertError(reply, path), code);
      else {
        const echo = json<Echo>(reply);
        assert.equal(echo.pid, pidA, `${path}: A's worker answered`);
        assert.equal(echo.url, path, `${path}: forwarded unchanged`);
      }
    }
    const encodedLast = (t: string) => `${t.slice(0, -1)}%${t.charCodeAt(t.length - 1).toString(16).toUpperCase()}`;
    const trick = fc.record({
      carrier: fc.constantFrom('path', 'header', 'cookie'),
      climb: fc.array(fc.oneof(
        { weight: 1, arbitrary: fc.constantFrom('/..', '/.', '/%2e%2e', '/%2E%2E', '/.%2e', '/%2e.', '/..%2F', '%2F..', '%5C..', '\\..') },
        { weight: 3, arbitrary: fc.constantFrom('//', '/%00', '/', '', '/x', '/%2F', '/;', '/...') },
      ), { maxLength: 3 }),
      sessions: fc.constantFrom('/sessions', '/SESSIONS', '/%73essions', 'sessions', '/sessions/', ''),
      sep: fc.constantFrom('/', '%2F', '//', '/./', '/%2e/', '%5C'),
      b: fc.constantFrom(B, `${B}%00`, `${B}%2F`, `${B}%20`, `${B};x`, `${B}%3B`, encodedLast(B), B.toLowerCase(), `${B}.`),
      rest: fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom('/history', '/echo', '%2Fhistory', '/history?x=/sessions/B', '//history') },
        { weight: 1, arbitrary: fc.constantFrom('/../history', '/./history', '/%2e%2e/history') },
      ),
    });
    const legitB = new RegExp(`^/sessions/${B}(?:[/?]|$)`);
    await fc.assert(fc.asyncProperty(trick, async (t) => {
      const body = `${t.climb.join('')}${t.sessions}${t.sep}${t.b}${t.rest}`;
      const path = t.carrier === 'path' ? `/sessions/${A}${body.startsWith('/') ? '' : '/'}${body}` : body;
      // A plain `/sessions/B/...` is B's own request: it names B's token where a session goes.
      fc.pre(!legitB.test(path));
      const headers: [string, string][] = t.carrier === 'header' ? [['X-Session-Id', A]] : t.carrier === 'cookie' ? [['Cookie', `warmpool_session=${A}`]] : [];
      const { reply } = await exchange(c, rawRequest('GET', path, headers));
      const code = assertAnswer(reply, path);
      if (code !== undefined) assert.ok(['bad_request', 'session_not_found'].includes(code), `${path}: ${code}`);
    }), { numRuns: 200 });
    assert.equal(await seen(B), before + 1, 'B\'s worker got no request but the counting one');
  });

  test('when all of that is over, then the controller is alive, healthy, and logged no unexpected error', async () => {
    assert.equal(c.proc.exitCode, null, 'the controller process is running');
    assert.equal((await fetch(`${c.admin}/healthz`)).status, 200);
    assert.equal((await fetch(`${c.base}/sessions/${A}/echo`)).status, 200);
    assert.equal(await c.stop(), 0, 'a graceful stop: no refused socket holds the server open');
    const bad = c.output.filter((l) => {
      const line = parseLine(l);
      return line === undefined ? l.trim() !== '' : line.msg === 'unexpected error' || line.msg === 'proxy error' || line.level === 'error' || line.level === 'fatal';
    });
    assert.deepEqual(bad, [], 'no unexpected error, no proxy error and nothing unparseable in the logs');
  });
});

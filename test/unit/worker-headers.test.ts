import assert from 'node:assert/strict';
import type http from 'node:http';
import { describe, test } from 'node:test';
import { createCredentials, refererForWorker } from '../../controller/src/http/credentials.js';
import { rewriteRequestHeaders } from '../../controller/src/forward/headers.js';

const TOKEN = 'AbCdEfGhIjKlMnOpQrStUv';

function request(headers: http.IncomingHttpHeaders): http.IncomingMessage {
  return { headers, socket: { remoteAddress: '127.0.0.9' } } as unknown as http.IncomingMessage;
}

describe('what a worker sees', () => {
  test('when a page under /sessions/{id}/ sends its Referer, then the worker gets it without the session prefix', () => {
    assert.equal(refererForWorker(`http://chat.example/sessions/${TOKEN}/app/page?x=1`, TOKEN), 'http://chat.example/app/page?x=1');
    assert.equal(refererForWorker(`http://chat.example/sessions/${TOKEN}`, TOKEN), 'http://chat.example/');
    assert.equal(refererForWorker('http://chat.example/plain', TOKEN), 'http://chat.example/plain');
  });

  test('when the id is anywhere else in the Referer, or it is not a URL, then the worker gets no Referer', () => {
    assert.equal(refererForWorker(`http://chat.example/page?session=${TOKEN}`, TOKEN), undefined);
    assert.equal(refererForWorker('not a url', TOKEN), undefined);
  });

  test('when a request carries the id, the API token and the session cookie, then none of them reaches the worker and other cookies do', () => {
    const creds = createCredentials({ API_TOKENS: ['x'.repeat(16)], TRUST_PROXY: false, SESSION_COOKIE: 'warmpool_session', SESSION_MAX_LIFETIME_S: 60 });
    const req = request({
      'x-session-id': TOKEN,
      authorization: `Bearer ${'x'.repeat(16)}`,
      cookie: `theme=dark; warmpool_session=${TOKEN}; lang=en`,
      referer: `http://h/sessions/${TOKEN}/index.html`,
    });
    creds.stripForWorker(req, TOKEN);
    assert.deepEqual(req.headers, { cookie: 'theme=dark; lang=en', referer: 'http://h/index.html' });
    assert.ok(!JSON.stringify(req.headers).includes(TOKEN));
  });

  test('when TRUST_PROXY is off, then Forwarded, X-Real-IP and X-Forwarded-* written by the client are replaced by the router\'s own', () => {
    const req = request({ host: 'h', forwarded: 'for=1.2.3.4', 'x-real-ip': '1.2.3.4', 'x-forwarded-for': '1.2.3.4', 'x-forwarded-host': 'evil', 'x-forwarded-proto': 'https' });
    rewriteRequestHeaders(req, false, false);
    assert.deepEqual(req.headers, { host: 'h', 'x-forwarded-for': '127.0.0.9', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'h' });
  });

  test('when TRUST_PROXY is on, then the proxy\'s headers are kept and the router appends the peer address', () => {
    const req = request({ host: 'h', forwarded: 'for=1.2.3.4', 'x-real-ip': '1.2.3.4', 'x-forwarded-for': '1.2.3.4', 'x-forwarded-proto': 'https' });
    rewriteRequestHeaders(req, false, true);
    assert.equal(req.headers.forwarded, 'for=1.2.3.4');
    assert.equal(req.headers['x-real-ip'], '1.2.3.4');
    assert.equal(req.headers['x-forwarded-for'], '1.2.3.4, 127.0.0.9');
    assert.equal(req.headers['x-forwarded-proto'], 'https');
  });
});

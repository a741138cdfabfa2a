import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { clientErrorOf, errors, WarmpoolError } from '../../controller/src/errors.js';
import { checkRequestTarget, hasDotSegment, isSettingsRoute } from '../../controller/src/http/request-target.js';
import { route } from '../../controller/src/http/router.js';

function refusal(url: string): string | undefined {
  try {
    checkRequestTarget(url);
    return undefined;
  } catch (err) {
    assert.ok(err instanceof WarmpoolError, `${url}: a WarmpoolError`);
    assert.equal(err.code, 'bad_request', url);
    assert.equal(err.status, 400, url);
    return err.message;
  }
}

describe('request targets', () => {
  test('when a path holds a dot-segment in any spelling, then it is found', () => {
    for (const path of ['/..', '/.', '/a/../b', '/a/./b', '/a/..', '/%2e%2e/x', '/%2E%2e/x', '/.%2e/x', '/%2e./x', '/a/..%2Fb', '/a%2F..%2Fb', '/a%2f.%2fb', '/a\\..\\b', '/a%5C..%5Cb', '/a/%2e']) {
      assert.equal(hasDotSegment(path), true, path);
    }
  });

  test('when dots are only part of a segment, then it is no dot-segment', () => {
    for (const path of ['/', '/a.b', '/.well-known/x', '/...', '/a..', '/..a', '/%2e%2e%2e', '//x', '/a%2Fb', '/v1.2/x', '/a/b.']) {
      assert.equal(hasDotSegment(path), false, path);
    }
  });

  test('when a target is a path without fragment or dot-segment, then it passes, query included', () => {
    for (const url of ['/', '/sessions', '/sessions/abc/chat?x=1', '//sessions/x', '/a%zz', '/x?next=/../../etc', '/x?a=.&b=..']) {
      assert.equal(refusal(url), undefined, url);
    }
  });

  test('when a target is not origin-form, has a fragment or a dot-segment in its path, then it is refused 400 bad_request', () => {
    assert.match(refusal('*') ?? '', /must be a path/);
    assert.match(refusal('http://127.0.0.1:1/x') ?? '', /must be a path/);
    assert.match(refusal('x/y') ?? '', /must be a path/);
    assert.match(refusal('/x#y') ?? '', /fragment/);
    assert.match(refusal('/sessions/A/../B/history') ?? '', /dot-segment/);
    assert.match(refusal('/sessions/A/%2e%2e/B?x=1') ?? '', /dot-segment/);
  });
});

describe('client errors', () => {
  test('when a handler throws a WarmpoolError, then the client gets it as it is', () => {
    const err = errors.sessionEnded();
    assert.equal(clientErrorOf(err), err);
  });

  test('when decoding the client\'s percent-escapes throws a URIError, then the client gets 400 bad_request', () => {
    let thrown: unknown;
    try {
      decodeURIComponent('%zz');
    } catch (err) {
      thrown = err;
    }
    const mapped = clientErrorOf(thrown);
    assert.equal(mapped?.code, 'bad_request');
    assert.equal(mapped?.status, 400);
  });

  test('when anything else is thrown, then it is no client error (the caller logs it and answers 500)', () => {
    assert.equal(clientErrorOf(new Error('boom')), undefined);
    assert.equal(clientErrorOf(new TypeError('x is undefined')), undefined);
    assert.equal(clientErrorOf('a string'), undefined);
  });
});

describe('the worker settings route', () => {
  test('when a client names /session in any spelling, explicit or implicit, then the router refuses it with 403 reserved_path', () => {
    const id = 'A'.repeat(22);
    for (const url of ['/session', '/SESSION', '/session/', '//session', '/%73ession', '/Session?x=1', `/sessions/${id}/session`, `/sessions/${id}//Session/`]) {
      assert.throws(() => route(url), (e: WarmpoolError) => e.code === 'reserved_path' && e.status === 403, url);
    }
  });

  test('when a path only looks like it, then it is routed as usual', () => {
    const id = 'A'.repeat(22);
    assert.deepEqual(route('/sessions'), { kind: 'control', url: '/sessions' });
    assert.deepEqual(route(`/sessions/${id}/sessions`), { kind: 'explicit', token: id, url: '/sessions' });
    assert.deepEqual(route('/session-info'), { kind: 'implicit', url: '/session-info' });
    assert.equal(isSettingsRoute('/v1/session'), false);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { tokenMatcher } from '../../controller/src/http/credentials.js';
import { isWellFormedToken, newSessionToken, sessionHash } from '../../controller/src/sessions/tokens.js';

describe('session tokens', () => {
  test('when a token is made, then it is 128 bits in base64url and every one differs', () => {
    const tokens = new Set(Array.from({ length: 1000 }, newSessionToken));
    assert.equal(tokens.size, 1000);
    for (const t of tokens) {
      assert.ok(isWellFormedToken(t), 'isWellFormedToken(t)');
      assert.equal(Buffer.from(t, 'base64url').length, 16);
    }
  });

  test('when a string is not of the token shape, then it is rejected', () => {
    for (const bad of ['', 'short', 'a'.repeat(23), `${'a'.repeat(21)}=`, `${'a'.repeat(21)}/`, '../../etc/passwd'.padEnd(22, 'a')]) {
      assert.equal(isWellFormedToken(bad), false, bad);
    }
  });

  test('when a token is hashed, then the label value is 40 hex characters that do not contain it', () => {
    const t = newSessionToken();
    const h = sessionHash(t);
    assert.match(h, /^[0-9a-f]{40}$/);
    assert.equal(sessionHash(t), h);
    assert.notEqual(sessionHash(newSessionToken()), h);
  });

  test('when bearer tokens are checked, then only configured ones pass, whatever their length', () => {
    const ok = tokenMatcher(['first-token-0123456789', 'second-token-0123456789']);
    assert.equal(ok('first-token-0123456789'), true);
    assert.equal(ok('second-token-0123456789'), true);
    assert.equal(ok('first-token-012345678'), false);
    assert.equal(ok(''), false);
    assert.equal(tokenMatcher([])('anything'), false);
  });
});

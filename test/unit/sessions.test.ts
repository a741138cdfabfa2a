import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { expiresAt, reapReason } from '../../controller/src/sessions/reaper.js';

const limits = { idleTimeoutMs: 1000, maxLifetimeMs: 10_000 };

describe('reaper decisions', () => {
  test('when a session is quiet past the idle timeout, then it is reaped as idle', () => {
    assert.equal(reapReason({ createdAt: 0, lastActivity: 0 }, false, 1000, limits), 'idle');
    assert.equal(reapReason({ createdAt: 0, lastActivity: 500 }, false, 1000, limits), undefined);
  });

  test('when an exchange is in flight, then the session is not idle however old its last activity', () => {
    assert.equal(reapReason({ createdAt: 0, lastActivity: 0 }, true, 5000, limits), undefined);
  });

  test('when a session passes its lifetime, then it is reaped even while busy', () => {
    assert.equal(reapReason({ createdAt: 0, lastActivity: 9999 }, true, 10_000, limits), 'lifetime');
  });

  test('when the expiry is computed, then it is the earlier of idle and lifetime ends', () => {
    assert.equal(expiresAt({ createdAt: 0, lastActivity: 100 }, limits), 1100);
    assert.equal(expiresAt({ createdAt: 0, lastActivity: 9500 }, limits), 10_000);
  });
});

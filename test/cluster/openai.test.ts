/**
 * The official openai client through the kubernetes backend: the same session base URL as on
 * the local backend, reaching a pod the real ReplicaSet started and the controller claimed.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { createSession, type Controller } from '../integration/harness.js';
import { poolFixture, type PoolFixture } from './fixture.js';
import { kubeconfigPath } from './paths.js';
import { waitUntil } from './wait.js';

const MODEL = 'warmpool-bigram';

describe('the openai client on the loopback cluster', () => {
  let f: PoolFixture;
  let c: Controller;
  before(async () => {
    assert.ok(existsSync(kubeconfigPath), `no cluster: ${kubeconfigPath} is missing (npm run cluster:up)`);
    f = await poolFixture('wp-openai', { TOKEN_DELAY_MS: '20' });
    c = await f.controller('replica-openai', { POOL_SIZE: '1' });
    await waitUntil('a warm pod', () => f.warmReady(1));
  });
  after(() => f.teardown());

  test('when a session completes, streams, then reads its history, then both turns are on its own pod, in order', async () => {
    const id = await createSession(c);
    assert.ok(await f.podOf(id), 'the session has a claimed pod');
    const client = new OpenAI({ baseURL: `${c.base}/sessions/${id}/v1`, apiKey: 'unused', maxRetries: 0 });

    const completion = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hello from the cluster' }] });
    assert.ok((completion.choices[0]?.message.content ?? '').length > 0, 'a reply');
    assert.ok((completion.usage?.completion_tokens ?? 0) > 0, 'usage counts');

    const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'how does the warm pool keep workers ready?' }], stream: true });
    const deltas: string[] = [];
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) deltas.push(content);
    }
    assert.ok(deltas.length >= 2, `several chunks, got ${deltas.length}`);

    const history = (await (await fetch(`${c.base}/sessions/${id}/history`)).json()) as { turns: { message: string; reply: string }[] };
    assert.deepEqual(history.turns.map((t) => t.message), ['hello from the cluster', 'how does the warm pool keep workers ready?']);
    assert.equal(history.turns[0]?.reply, completion.choices[0]?.message.content);
    assert.equal(history.turns[1]?.reply, deltas.join(''));
  });
});

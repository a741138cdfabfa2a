import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { createSession, startController, waitWarm, workerPid, type Controller } from './harness.js';

const TOKEN_DELAY_MS = 40;
const MODEL = 'warmpool-bigram';

/** The official client, pointed at one session's own worker. */
function clientFor(c: Controller, id: string): OpenAI {
  return new OpenAI({ baseURL: `${c.base}/sessions/${id}/v1`, apiKey: 'unused', maxRetries: 0 });
}

async function history(c: Controller, id: string): Promise<{ message: string; reply: string }[]> {
  return ((await (await fetch(`${c.base}/sessions/${id}/history`)).json()) as { turns: { message: string; reply: string }[] }).turns;
}

async function refusal(call: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, `expected the SDK's APIError, got ${String(err)}`);
    return err;
  }
  assert.fail('the call succeeded');
}

describe('the official openai client through warmpool on the local backend', () => {
  let c: Controller;
  before(async () => {
    c = await startController({ POOL_SIZE: '2', TOKEN_DELAY_MS: String(TOKEN_DELAY_MS) });
    await waitWarm(c, 2);
  });
  after(async () => {
    await c.stop();
  });

  test('when a session asks for a completion, then it gets the reply with usage counts, from the model /v1/models lists', async () => {
    const client = clientFor(c, await createSession(c));
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
    const completion = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hello, how does the pool work?' }] });
    assert.equal(completion.object, 'chat.completion');
    const content = completion.choices[0]?.message.content ?? '';
    assert.ok(content.length > 0, 'content.length > 0');
    assert.equal(completion.choices[0]?.finish_reason, 'stop');
    assert.ok(completion.usage, 'usage is present');
    assert.ok(completion.usage.prompt_tokens > 0 && completion.usage.completion_tokens > 0, JSON.stringify(completion.usage));
    assert.equal(completion.usage.total_tokens, completion.usage.prompt_tokens + completion.usage.completion_tokens);
  });

  test('when a completion is streamed, then every chunk arrives, in order, as the worker produces it', async () => {
    const id = await createSession(c);
    const stream = await clientFor(c, id).chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'how does the warm pool keep workers ready?' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const deltas: string[] = [];
    const arrivals: number[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) {
        deltas.push(content);
        arrivals.push(performance.now());
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assert.ok(deltas.length >= 10, `expected several chunks, got ${deltas.length}`);
    assert.equal(deltas.join(''), (await history(c, id)).at(-1)?.reply, 'the chunks, in order, make the reply the worker recorded');
    assert.equal(usage?.completion_tokens, deltas.length);
    // The worker sleeps TOKEN_DELAY_MS between tokens: a path that held chunks back would deliver
    // them together at the end, with gaps near zero. A loaded machine only lengthens gaps.
    const gaps = arrivals.slice(1).map((t, i) => t - (arrivals[i] as number));
    const spaced = gaps.filter((g) => g >= TOKEN_DELAY_MS / 2).length;
    assert.ok(spaced >= gaps.length / 2, `most gaps should be near TOKEN_DELAY_MS, got ${gaps.map((g) => g.toFixed(1)).join(', ')}`);
  });

  test('when a stateless client sends two turns, the second with the whole conversation, then both land on the same worker and each is recorded once', async () => {
    const id = await createSession(c);
    const client = clientFor(c, id);
    const pid = await workerPid(c, id);
    const first = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'first turn' }] });
    const reply = first.choices[0]?.message.content ?? '';
    await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'first turn' }, { role: 'assistant', content: reply }, { role: 'user', content: 'second turn' }],
    });
    assert.equal(await workerPid(c, id), pid);
    assert.deepEqual((await history(c, id)).map((t) => t.message), ['first turn', 'second turn']);
  });

  test('when two sessions use the client, then each lands on its own worker with only its own turns', async () => {
    const a = await createSession(c);
    const b = await createSession(c);
    assert.notEqual(await workerPid(c, a), await workerPid(c, b));
    await clientFor(c, a).chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'only for a' }] });
    await clientFor(c, b).chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'only for b' }] });
    assert.deepEqual((await history(c, a)).map((t) => t.message), ['only for a']);
    assert.deepEqual((await history(c, b)).map((t) => t.message), ['only for b']);
  });

  test('when the client has no session and AUTO_SESSION is on, then plain /v1 claims one and X-Session-Id keeps it there', async () => {
    const anonymous = new OpenAI({ baseURL: `${c.base}/v1`, apiKey: 'unused', maxRetries: 0 });
    const { response } = await anonymous.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'one' }] }).withResponse();
    const id = response.headers.get('x-session-id');
    assert.ok(id, 'the first answer names the new session');
    const pinned = new OpenAI({ baseURL: `${c.base}/v1`, apiKey: 'unused', maxRetries: 0, defaultHeaders: { 'X-Session-Id': id } });
    await pinned.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'two' }] });
    assert.deepEqual((await history(c, id)).map((t) => t.message), ['one', 'two']);
  });

  test('when a request is bad, then the SDK raises its own BadRequestError with status 400', async () => {
    const client = clientFor(c, await createSession(c));
    const empty = await refusal(client.chat.completions.create({ model: MODEL, messages: [] }));
    assert.ok(empty instanceof OpenAI.BadRequestError, String(empty));
    assert.equal(empty.status, 400);
    assert.equal(empty.param, 'messages');
    const hot = await refusal(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], temperature: 5 }));
    assert.ok(hot instanceof OpenAI.BadRequestError, String(hot));
    const unknown = await refusal(client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }));
    assert.ok(unknown instanceof OpenAI.NotFoundError, String(unknown));
    assert.equal(unknown.code, 'model_not_found');
  });

  test('when the session has ended, then the SDK raises an APIError with status 410', async () => {
    const id = await createSession(c);
    const client = clientFor(c, id);
    await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'before the end' }] });
    assert.equal((await fetch(`${c.base}/sessions/${id}`, { method: 'DELETE' })).status, 204);
    const ended = await refusal(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'after the end' }] }));
    assert.equal(ended.status, 410);
    assert.equal(ended.error, 'session_ended');
  });
});

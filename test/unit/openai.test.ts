import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LOCAL_MODEL, type ChatEngine } from '../../worker-image/src/engines.js';
import { trainModel } from '../../worker-image/src/model.js';
import { newTurn, OpenAiError, parseCompletionRequest, resolveModel, usage } from '../../worker-image/src/openai.js';
import { parseSettings, SettingsError } from '../../worker-image/src/settings.js';

const user = (content: string) => ({ role: 'user' as const, content });
const assistant = (content: string) => ({ role: 'assistant' as const, content });

function rejects(body: unknown, param: string): void {
  assert.throws(() => parseCompletionRequest(body), (err: unknown) => {
    assert.ok(err instanceof OpenAiError, String(err));
    assert.equal(err.status, 400);
    assert.equal(err.param, param);
    assert.equal(err.body().error.type, 'invalid_request_error');
    return true;
  });
}

describe('completion request validation', () => {
  test('when the body is well formed, then its fields are read, developer counts as system and text parts are joined', () => {
    const r = parseCompletionRequest({
      model: 'm',
      messages: [{ role: 'developer', content: 'be brief' }, { role: 'user', content: [{ type: 'text', text: 'hel' }, { type: 'text', text: 'lo' }] }],
      temperature: 0.5,
      max_tokens: 7,
      stream: true,
      stream_options: { include_usage: true },
      top_p: 0.9,
    });
    assert.deepEqual(r, {
      messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello' }],
      model: 'm', temperature: 0.5, maxTokens: 7, stream: true, includeUsage: true,
    });
  });

  test('when max_completion_tokens is given, then it wins over max_tokens', () => {
    assert.equal(parseCompletionRequest({ messages: [user('x')], max_tokens: 9, max_completion_tokens: 3 }).maxTokens, 3);
  });

  test('when a request is malformed, then it is refused with 400 naming the parameter', () => {
    rejects([], 'body');
    rejects(null, 'body');
    rejects({}, 'messages');
    rejects({ messages: [] }, 'messages');
    rejects({ messages: [user('a'), assistant('b')] }, 'messages');
    rejects({ messages: ['hello'] }, 'messages[0]');
    rejects({ messages: [{ role: 'tool', content: 'x' }, user('a')] }, 'messages[0].role');
    rejects({ messages: [{ role: 'user', content: 5 }] }, 'messages[0].content');
    rejects({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content[0]');
    rejects({ messages: [user('a')], model: 3 }, 'model');
    rejects({ messages: [user('a')], temperature: 3 }, 'temperature');
    rejects({ messages: [user('a')], temperature: 'hot' }, 'temperature');
    rejects({ messages: [user('a')], max_tokens: 0 }, 'max_tokens');
    rejects({ messages: [user('a')], max_tokens: 1.5 }, 'max_tokens');
    rejects({ messages: [user('a')], stream: 'yes' }, 'stream');
    rejects({ messages: [user('a')], stream_options: { include_usage: 'yes' } }, 'stream_options');
    rejects({ messages: [user('a')], n: 2 }, 'n');
  });

  test('when an assistant message has null content (a tool call), then it reads as empty text', () => {
    assert.equal(parseCompletionRequest({ messages: [{ role: 'assistant', content: null }, user('a')] }).messages[0]?.content, '');
  });
});

describe('the turn a request stands for', () => {
  const history = [{ message: 'one', reply: 'first reply' }];
  const request = (messages: unknown[]) => parseCompletionRequest({ messages });

  test('when a session-affine client sends only the new turn, then the worker\'s history is the context and only that turn is new', () => {
    const t = newTurn(request([user('two')]), history, {}, LOCAL_MODEL);
    assert.equal(t.message, 'two');
    assert.deepEqual(t.context, [user('one'), assistant('first reply'), user('two')]);
  });

  test('when a stateless client resends the whole conversation, then the earlier turns are not new: only the last message is', () => {
    const t = newTurn(request([user('one'), assistant('first reply'), user('two')]), history, {}, LOCAL_MODEL);
    assert.equal(t.message, 'two');
    assert.deepEqual(t.context, [user('one'), assistant('first reply'), user('two')]);
  });

  test('when a client sends earlier turns the worker does not have, then they are the context of the reply, as sent', () => {
    const t = newTurn(request([user('edited'), assistant('other'), user('two')]), history, {}, LOCAL_MODEL);
    assert.deepEqual(t.context, [user('edited'), assistant('other'), user('two')]);
  });

  test('when the session has a system setting, then it is the system message unless the request brings its own', () => {
    const settings = { system: 'talk about labels', temperature: 0.2 };
    const byDefault = newTurn(request([user('two')]), [], settings, LOCAL_MODEL);
    assert.deepEqual(byDefault.context, [{ role: 'system', content: 'talk about labels' }, user('two')]);
    assert.equal(byDefault.options.temperature, 0.2);
    const own = newTurn(parseCompletionRequest({ messages: [{ role: 'system', content: 'mine' }, user('two')], temperature: 1 }), history, settings, LOCAL_MODEL);
    assert.deepEqual(own.context, [{ role: 'system', content: 'mine' }, user('one'), assistant('first reply'), user('two')]);
    assert.equal(own.options.temperature, 1);
  });

  test('when usage is counted, then prompt tokens cover the whole context', () => {
    assert.deepEqual(usage([user('hello there'), assistant('hi.')], 4), { prompt_tokens: 4, completion_tokens: 4, total_tokens: 8 });
  });
});

describe('model names', () => {
  const local = { model: LOCAL_MODEL, forwards: false } as ChatEngine;
  const forwarding = { model: 'llama', forwards: true } as ChatEngine;

  test('when no model is named, then the session\'s setting, else the engine\'s own, is used', () => {
    assert.equal(resolveModel(undefined, {}, local), LOCAL_MODEL);
    assert.equal(resolveModel(undefined, { model: 'qwen' }, forwarding), 'qwen');
  });

  test('when the built-in model is asked for another model, then 404 model_not_found; a forwarding worker passes any name on', () => {
    assert.throws(() => resolveModel('gpt-4o', {}, local), (err: unknown) => err instanceof OpenAiError && err.status === 404 && err.code === 'model_not_found');
    assert.equal(resolveModel('gpt-4o', {}, forwarding), 'gpt-4o');
  });
});

describe('session settings', () => {
  test('when settings are well formed, then they are read; no settings at all are empty ones', () => {
    assert.deepEqual(parseSettings({ settings: { system: 's', user: 'alice', model: 'm', temperature: 0 } }), { system: 's', user: 'alice', model: 'm', temperature: 0 });
    assert.deepEqual(parseSettings({}), {});
  });

  test('when a setting is unknown or of the wrong type, then they are refused', () => {
    for (const body of [null, [], { settings: [] }, { settings: { sytem: 'x' } }, { settings: { system: 3 } }, { settings: { temperature: 2.5 } }, { settings: { user: 'x'.repeat(9000) } }]) {
      assert.throws(() => parseSettings(body), SettingsError, JSON.stringify(body).slice(0, 60));
    }
  });
});

describe('system prompt steering of the reference model', () => {
  const model = trainModel('the pool keeps workers warm.\nlabels flip when a pod is claimed.\n');

  test('when a system prompt names a word the model knows, then the reply starts from it whatever the message', () => {
    assert.equal(model.reply('tell me about the pool', 1, 'always talk about labels')[0], 'Labels');
    assert.equal(model.reply('tell me about the pool', 1)[0] === 'Labels', false);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { trainModel } from '../../worker-image/src/model.js';

describe('reference model', () => {
  const model = trainModel('the pool keeps workers warm.\nthe worker answers at once.\n');

  test('when asked the same thing at the same turn, then it answers the same', () => {
    assert.deepEqual(model.reply('tell me about the pool', 1), model.reply('tell me about the pool', 1));
  });

  test('when asked, then the reply is made of corpus words and starts from a word of the message when it can', () => {
    const tokens = model.reply('workers', 1);
    assert.ok(tokens.length > 0, 'tokens.length > 0');
    assert.equal(tokens[0], 'Workers');
    for (const t of tokens.join('').toLowerCase().match(/[a-z]+/g) ?? []) {
      assert.ok(['the', 'pool', 'keeps', 'workers', 'warm', 'worker', 'answers', 'at', 'once'].includes(t), t);
    }
  });

  test('when the corpus has no words, then training fails loudly', () => {
    assert.throws(() => trainModel('... !!!'));
  });
});

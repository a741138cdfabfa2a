import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { CONFIG_KEYS, ConfigError, parseConfig } from '../../controller/src/config.js';

function errorFor(env: Record<string, string>, readFile?: (p: string) => string): ConfigError {
  try {
    parseConfig(env, readFile);
  } catch (err) {
    assert.ok(err instanceof ConfigError, 'err instanceof ConfigError');
    return err;
  }
  assert.fail('expected a ConfigError');
}

describe('configuration', () => {
  test('when nothing is set, then every key takes its documented default and the result is frozen', () => {
    const c = parseConfig({});
    assert.equal(c.PORT, 8080);
    assert.equal(c.ADMIN_PORT, 9090);
    assert.equal(c.POOL_SIZE, 3);
    assert.equal(c.POOL_LABEL_KEY, 'assigned');
    assert.deepEqual(c.LOCAL_POOLS, []);
    assert.equal(c.DEFAULT_POOL, undefined);
    assert.equal(c.MAX_SETTINGS_BYTES, 16384);
    assert.equal(c.AUTO_SESSION, true);
    assert.deepEqual(c.API_TOKENS, []);
    assert.ok(Object.isFrozen(c), 'Object.isFrozen(c)');
    assert.ok(Object.isFrozen(c.LOCAL_POOLS), 'Object.isFrozen(c.LOCAL_POOLS)');
  });

  test('when values are set, then they are parsed to their types', () => {
    const c = parseConfig({ POOL_SIZE: '7', AUTO_SESSION: 'false', SESSION_IDLE_TIMEOUT_S: '0.5', LOCAL_POOLS: 'a=2; b=0:node x.js --flag', BACKEND: 'local' });
    assert.equal(c.POOL_SIZE, 7);
    assert.equal(c.AUTO_SESSION, false);
    assert.equal(c.SESSION_IDLE_TIMEOUT_S, 0.5);
    assert.deepEqual(c.LOCAL_POOLS, [{ name: 'a', size: 2, command: '' }, { name: 'b', size: 0, command: 'node x.js --flag' }]);
    assert.equal(c.BACKEND, 'local');
  });

  test('when a value is bad, then the error names the variable', () => {
    const cases: [string, string][] = [
      ['PORT', '-1'], ['PORT', '8080x'], ['POOL_SIZE', '1.5'], ['BACKEND', 'docker'], ['AUTO_SESSION', 'perhaps'],
      ['SESSION_IDLE_TIMEOUT_S', 'soon'], ['SESSION_MAX_LIFETIME_S', '0'], ['LOCAL_POOLS', 'a=b'], ['LOCAL_POOLS', 'a=1;a=2'], ['LOCAL_POOLS', 'Big=1'], ['DEFAULT_POOL', 'Bad_Name'], ['POOL_MIN_SIZE', 'x'],
      ['NAMESPACE', 'Bad_Name'], ['LOG_LEVEL', 'loud'], ['API_TOKENS', 'tooshort'], ['SESSION_COOKIE', 'a b'], ['SESSION_CREATE_RATE', '-1'], ['SESSION_CREATE_RATE', 'fast'],
    ];
    for (const [name, value] of cases) {
      const err = errorFor({ [name]: value });
      assert.deepEqual(err.problems.map((p) => p.variable), [name], `${name}=${value}`);
      assert.ok(err.message.startsWith(`${name}:`), 'err.message.startsWith(`${name}:`)');
    }
  });

  test('when several values are bad, then one error lists every one of them, each line naming its variable', () => {
    const err = errorFor({ PORT: 'x', POOL_SIZE: '-2', BACKEND: 'docker', LOG_LEVEL: 'loud', LOCAL_POOLS: 'x' });
    assert.deepEqual(err.problems.map((p) => p.variable).sort(), ['BACKEND', 'LOCAL_POOLS', 'LOG_LEVEL', 'POOL_SIZE', 'PORT']);
    const lines = err.message.split('\n');
    assert.equal(lines.length, 5);
    for (const [i, p] of err.problems.entries()) assert.ok(lines[i]?.startsWith(`${p.variable}: `), lines[i]);
  });

  test('when PORT equals ADMIN_PORT, then the error names the variable that was set', () => {
    const onlyPort = errorFor({ PORT: '9090' });
    assert.deepEqual(onlyPort.problems.map((p) => p.variable), ['PORT']);
    assert.match(onlyPort.message, /^PORT: must differ from ADMIN_PORT: both are 9090 \(ADMIN_PORT's default, 9090\)/);
    const onlyAdmin = errorFor({ ADMIN_PORT: '8080' });
    assert.deepEqual(onlyAdmin.problems.map((p) => p.variable), ['ADMIN_PORT']);
    assert.match(onlyAdmin.message, /^ADMIN_PORT: must differ from PORT: both are 8080 \(PORT's default, 8080\)/);
    const both = errorFor({ PORT: '7000', ADMIN_PORT: '7000' });
    assert.match(both.message, /^ADMIN_PORT: must differ from PORT: both are 7000 \(PORT=7000\)/);
    assert.equal(parseConfig({ PORT: '0', ADMIN_PORT: '0' }).PORT, 0, 'two ephemeral ports never clash');
  });

  test('when API_TOKENS_FILE is set, then its tokens join API_TOKENS, and an unreadable file names the variable', () => {
    const c = parseConfig({ API_TOKENS: 'aaaaaaaaaaaaaaaa', API_TOKENS_FILE: '/tokens' }, () => 'bbbbbbbbbbbbbbbb\ncccccccccccccccc\n');
    assert.deepEqual([...c.API_TOKENS], ['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb', 'cccccccccccccccc']);
    const err = errorFor({ API_TOKENS_FILE: '/missing' }, () => { throw new Error('ENOENT'); });
    assert.deepEqual(err.problems.map((p) => p.variable), ['API_TOKENS_FILE']);
  });

  test('when the README is read, then its configuration table lists every key with its default', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    for (const [name, spec] of Object.entries(CONFIG_KEYS)) {
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${name}\` |`));
      assert.ok(row, `README has a row for ${name}`);
      const shown = spec.default === '' ? '(empty)' : `\`${spec.default}\``;
      assert.ok(row.includes(`| ${shown} |`), `README shows the default of ${name} as ${shown}`);
    }
  });
});

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import semver from 'semver';

const read = (p: string) => readFileSync(new URL(`../../${p}`, import.meta.url), 'utf8');

describe('supported Node versions', () => {
  const pkg = JSON.parse(read('package.json')) as { engines: { node: string } };
  const lowest = semver.minVersion(pkg.engines.node)?.version as string;

  test('when npm installs the lockfile on the lowest supported Node, then no package asks for a newer one (no EBADENGINE warning)', () => {
    const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { engines?: { node?: string } | string[] }> };
    const unmet = Object.entries(lock.packages)
      .map(([name, p]) => [name || 'warmpool', Array.isArray(p.engines) ? undefined : p.engines?.node] as const)
      .filter(([, range]) => range !== undefined && !semver.satisfies(lowest, range));
    assert.deepEqual(unmet, [], `packages that need more than Node ${lowest}`);
  });

  test('when the README names the Node version, then it is the one package.json requires', () => {
    const named = /Node >= ?(\d+\.\d+)/.exec(read('README.md'))?.[1];
    assert.equal(`${named}.0`, semver.minVersion(pkg.engines.node)?.version.replace(/\.\d+$/, '.0'));
  });
});

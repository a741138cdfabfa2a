import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { chooseBackend, readKubeconfigs, type KubeconfigFile } from '../../controller/src/backend-choice.js';

const GOOD = `apiVersion: v1
kind: Config
current-context: dev
contexts:
- name: dev
  context: { cluster: dev-cluster, user: me }
clusters:
- name: dev-cluster
  cluster: { server: 'https://127.0.0.1:6443' }
users:
- name: me
  user: { token: abc }
`;

const file = (text: string, name = '/home/me/.kube/config'): KubeconfigFile => ({ path: name, text });
const auto = (...kubeconfigs: KubeconfigFile[]) => chooseBackend('auto', { inCluster: false, kubeconfigs });

describe('backend choice', () => {
  test('when BACKEND is explicit, then it is used whatever the surroundings', () => {
    assert.equal(chooseBackend('local', { inCluster: true, kubeconfigs: [file(GOOD)] }).backend, 'local');
    assert.equal(chooseBackend('kubernetes', { inCluster: false, kubeconfigs: [] }).backend, 'kubernetes');
  });

  test('when BACKEND=auto in a cluster, then kubernetes', () => {
    assert.equal(chooseBackend('auto', { inCluster: true, kubeconfigs: [] }).backend, 'kubernetes');
  });

  test('when BACKEND=auto and there is no kubeconfig, then local', () => {
    assert.deepEqual(auto(), { backend: 'local', reason: 'no cluster service account and no kubeconfig' });
  });

  test('when the kubeconfig has a current context whose cluster has a server, then kubernetes, and the reason names file, context and server', () => {
    const choice = auto(file(GOOD));
    assert.equal(choice.backend, 'kubernetes');
    assert.match(choice.reason, /\/home\/me\/\.kube\/config: context "dev", server https:\/\/127\.0\.0\.1:6443/);
  });

  test('when the kubeconfig is JSON, then it is read as well', () => {
    const json = JSON.stringify({ 'current-context': 'a', contexts: [{ name: 'a', context: { cluster: 'c' } }], clusters: [{ name: 'c', cluster: { server: 'https://x' } }] });
    assert.equal(auto(file(json)).backend, 'kubernetes');
  });

  test('when the kubeconfig is empty, then local, and the reason says the kubeconfig is not usable', () => {
    const choice = auto(file(''));
    assert.equal(choice.backend, 'local');
    assert.match(choice.reason, /kubeconfig is not usable \(\/home\/me\/\.kube\/config has no current-context\)/);
  });

  test('when the kubeconfig has no current-context, then local', () => {
    const choice = auto(file(GOOD.replace('current-context: dev\n', '')));
    assert.equal(choice.backend, 'local');
    assert.match(choice.reason, /has no current-context/);
  });

  test('when the current context, its cluster or the server is missing, or the file does not parse or cannot be read, then local with the reason', () => {
    const cases: [KubeconfigFile, RegExp][] = [
      [file(GOOD.replace('current-context: dev', 'current-context: prod')), /current context "prod" is not defined/],
      [file(GOOD.replace('- name: dev-cluster', '- name: other')), /the cluster of context "dev" is not defined/],
      [file(GOOD.replace("server: 'https://127.0.0.1:6443'", "server: ''")), /has no server/],
      [file('clusters: [unclosed'), /does not parse/],
      [file('just a string'), /is not a kubeconfig/],
      [{ path: '/k', error: 'EACCES' }, /\/k cannot be read: EACCES/],
    ];
    for (const [f, why] of cases) {
      const choice = auto(f);
      assert.equal(choice.backend, 'local', why.source);
      assert.match(choice.reason, why);
    }
  });

  test('when KUBECONFIG lists several files, then they merge as kubectl merges them: the first to set a value wins', () => {
    const contextOnly = file('current-context: dev\ncontexts: [{ name: dev, context: { cluster: dev-cluster } }]\n', '/a');
    const clusterOnly = file("current-context: other\nclusters: [{ name: dev-cluster, cluster: { server: 'https://y' } }]\n", '/b');
    const choice = auto(contextOnly, clusterOnly);
    assert.equal(choice.backend, 'kubernetes');
    assert.match(choice.reason, /\/a, \/b: context "dev", server https:\/\/y/);
  });

  test('when kubeconfig paths are read, then missing ones are skipped and present ones read', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'warmpool-kube-'));
    const present = path.join(dir, 'config');
    writeFileSync(present, GOOD);
    assert.deepEqual(readKubeconfigs([path.join(dir, 'missing'), present]), [{ path: present, text: GOOD }]);
  });
});

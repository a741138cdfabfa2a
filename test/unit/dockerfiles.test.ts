import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DockerfileParser, type From, type JSONInstruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { dockerignore } from './dockerfile-runner.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Each image: its Dockerfile (context: the repository root), its command and its ports. */
const IMAGES = [
  { dockerfile: 'Dockerfile', cmd: ['node', 'controller/dist/main.js'], expose: ['8080', '9090'], ships: 'controller/dist' },
  { dockerfile: 'worker-image/Dockerfile', cmd: ['node', 'worker-image/dist/server.js'], expose: ['8080'], ships: 'worker-image/dist' },
];

function read(file: string): string {
  return readFileSync(`${ROOT}${file}`, 'utf8');
}

/** Stages as lists of `KEYWORD arguments` lines, flags left out; the base image with build arguments resolved. */
function stagesOf(file: string) {
  const parsed = DockerfileParser.parse(read(file));
  const args = Object.fromEntries(parsed.getInitialARGs().map((a) => [a.getProperty()?.getName(), a.getProperty()?.getValue()]));
  const stages: { base: string; name: string | null; lines: string[]; cmd: string[] }[] = [];
  for (const ins of parsed.getInstructions()) {
    if (ins.getKeyword() === 'FROM') {
      const from = ins as From;
      const base = (from.getImage() ?? '').replace(/\$\{(\w+)\}/g, (_m, name: string) => String(args[name]));
      stages.push({ base, name: from.getBuildStage(), lines: [], cmd: [] });
    }
    const stage = stages.at(-1);
    if (!stage) continue;
    stage.lines.push(`${ins.getKeyword()} ${ins.getArgumentsContent() ?? ''}`);
    if (ins.getKeyword() === 'CMD') stage.cmd = (ins as JSONInstruction).getJSONStrings().map((s) => s.getJSONValue());
  }
  return stages;
}

describe('Dockerfiles', () => {
  test('when the linter is given a Dockerfile with a mistake, then it reports it (so a clean result means something)', () => {
    assert.ok(validate('FROM node:24-slim\nCOPY only-one-argument\nEXPOSE eighty\n').length >= 2, 'two problems reported');
  });

  for (const image of IMAGES) {
    test(`when ${image.dockerfile} is linted with dockerfile-utils, then it has no problem`, () => {
      const problems = validate(read(image.dockerfile)).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
      assert.deepEqual(problems, []);
    });

    test(`when the stages of ${image.dockerfile} are read, then a build stage compiles and a Node 24 runtime stage ships production dependencies and ${image.ships} as user node`, () => {
      const stages = stagesOf(image.dockerfile);
      assert.equal(stages.length, 2, 'a build stage and a runtime stage');
      const [build, runtime] = stages as [(typeof stages)[0], (typeof stages)[0]];
      for (const s of stages) {
        assert.match(s.base, /^node:24(\.\d+)*-(slim|alpine|bookworm-slim|trixie-slim)$/, `base ${s.base} is a pinned Node 24 tag`);
      }
      assert.equal(build.name, 'build');
      assert.ok(build.lines.includes('RUN npm ci --no-audit --no-fund'), 'the build stage installs with npm ci');
      assert.ok(build.lines.includes('RUN npm run build'), 'the build stage runs npm run build');
      assert.ok(runtime.lines.includes('RUN npm ci --omit=dev --no-audit --no-fund'), 'the runtime stage installs production dependencies only');
      assert.ok(!runtime.lines.some((l) => /^RUN npm (run|install|i )/.test(l)), 'the runtime stage builds nothing itself');
      assert.ok(runtime.lines.includes(`COPY /app/${image.ships} ./${image.ships}`), `the runtime stage copies ${image.ships} from the build stage`);
      // Every COPY into the runtime stage is either the manifest, the built output, or (worker) its corpus.
      const copies = runtime.lines.filter((l) => l.startsWith('COPY '));
      for (const c of copies) {
        assert.ok(/^COPY (package\.json package-lock\.json \.\/|\/app\/[\w-]+\/dist \.\/[\w-]+\/dist|worker-image\/corpus\.txt \S+)$/.test(c), `${c} ships only built output`);
      }
      const user = runtime.lines.filter((l) => l.startsWith('USER '));
      assert.deepEqual(user, ['USER node'], 'runs as the base image\'s node user (uid 1000)');
      assert.ok(runtime.lines.indexOf('USER node') > Math.max(...runtime.lines.map((l, i) => (l.startsWith('RUN ') ? i : -1))), 'USER comes after the last RUN');
      assert.deepEqual(runtime.cmd, image.cmd);
      assert.deepEqual(runtime.lines.filter((l) => l.startsWith('EXPOSE ')).flatMap((l) => l.slice(7).split(/\s+/)), image.expose);
    });
  }

  test('when .dockerignore is applied, then dependencies, build output, VCS data, cluster state, benchmark results and tests stay out of the context, and what the builds copy stays in', () => {
    const ignored = dockerignore(ROOT);
    const out = ['node_modules/express/package.json', 'controller/node_modules/x', 'controller/dist/main.js', 'worker-image/dist/server.js',
      'controller/dist/.tsbuildinfo', '.git', '.git/HEAD', '.cluster/kubeconfig', 'bench/results/run.json', 'test/unit/config.test.ts'];
    const kept = ['package.json', 'package-lock.json', 'tsconfig.base.json', 'controller/tsconfig.json', 'controller/src/main.ts',
      'worker-image/tsconfig.json', 'worker-image/src/server.ts', 'worker-image/corpus.txt'];
    assert.deepEqual(out.filter((p) => !ignored(p)), [], 'every one of these is ignored');
    assert.deepEqual(kept.filter(ignored), [], 'none of these is ignored');
  });
});

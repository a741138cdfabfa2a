/**
 * Runs a Dockerfile's stages on this machine, without a container engine (there is none here):
 * each stage gets an empty directory as its root, COPY copies from a build context filtered by
 * `.dockerignore` (or from an earlier stage), RUN runs its shell command in WORKDIR with the
 * stage's ENV. What the base image would bring (node, npm, sh) comes from the host; cache
 * mounts are the host's npm cache. So the tests exercise the Dockerfiles' own COPY lists and
 * commands: a file the runtime needs but the Dockerfile does not copy, a command that fails,
 * or a `.dockerignore` that drops a needed source all fail here as they would in `docker build`.
 *
 * Only the instructions our Dockerfiles use are understood; anything else throws, so a new
 * instruction cannot be skipped silently.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DockerfileParser, type Copy, type Env, type From, type Instruction, type JSONInstruction } from 'dockerfile-ast';

export interface Stage {
  name: string | null;
  /** The stage's own filesystem root: an absolute path `/x` of the image is `root + /x`. */
  root: string;
  workdir: string;
  env: Record<string, string>;
  cmd: string[] | undefined;
}

/** Finished stages keyed by their text and that of the stages before them, so a stage two Dockerfiles share runs once (as a layer cache would). */
export type StageCache = Map<string, Stage>;

/** The `.dockerignore` rules of `dir` as a predicate on context-relative paths (`/`-separated). */
export function dockerignore(dir: string): (relPath: string) => boolean {
  const file = path.join(dir, '.dockerignore');
  const rules = (existsSync(file) ? readFileSync(file, 'utf8') : '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = path.posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^\/+|\/+$/g, '');
      return { negate, re: globToRegExp(pattern) };
    });
  // Docker: a path is excluded when it, or a directory above it, matches; the last matching rule wins.
  return (relPath) => {
    const parts = relPath.split('/');
    let excluded = false;
    for (const rule of rules) {
      for (let i = 1; i <= parts.length; i++) {
        if (rule.re.test(parts.slice(0, i).join('/'))) {
          excluded = !rule.negate;
          break;
        }
      }
    }
    return excluded;
  };
}

/** Go's filepath.Match syntax plus Docker's `**` (any number of directories). */
function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (pattern.startsWith('**/', i)) {
      re += '(?:.*/)?';
      i += 2;
    } else if (pattern.startsWith('**', i)) {
      re += '.*';
      i += 1;
    } else if (c === '*') {
      re += '[^/]*';
    } else if (c === '?') {
      re += '[^/]';
    } else {
      re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}$`);
}

/**
 * A build context as a fresh clone with the working tree's changes would give it: the files git
 * tracks or would track (nothing git-ignored, so no node_modules or dist), minus `.dockerignore`.
 */
export function makeContext(repo: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warmpool-context-'));
  const ignored = dockerignore(repo);
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: repo, encoding: 'utf8' })
    .split('\0')
    .filter((f) => f && !ignored(f) && existsSync(path.join(repo, f)));
  for (const f of files) cpSync(path.join(repo, f), path.join(dir, f));
  return dir;
}

function run(command: string, cwd: string, env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => { output += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { output += c.toString(); });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`RUN ${command} exited ${code}:\n${output}`))));
  });
}

/**
 * The environment RUN commands see: the stage's ENV over a minimal host base. npm is told to
 * prefer its local cache (the cache mount's stand-in) so the build works from the cache that
 * `npm ci` of the checkout filled.
 */
function runEnv(stage: Stage): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? os.homedir(),
    npm_config_prefer_offline: 'true',
    npm_config_update_notifier: 'false',
    ...stage.env,
  };
}

function inStage(stage: Stage, p: string): string {
  return path.join(stage.root, path.posix.isAbsolute(p) ? p : path.posix.join(stage.workdir, p));
}

function copy(stage: Stage, ins: Copy, context: string, stages: Stage[]): void {
  const flags = ins.getFlags();
  for (const f of flags) {
    if (!['from', 'chown', 'chmod', 'link'].includes(f.getName())) throw new Error(`COPY --${f.getName()} is not understood by the test runner`);
  }
  const from = flags.find((f) => f.getName() === 'from')?.getValue();
  const source = from === undefined || from === null ? undefined : stages.find((s) => s.name === from);
  if (from && !source) throw new Error(`COPY --from=${from}: no earlier stage of that name`);
  const args = ins.getArguments().map((a) => a.getValue());
  const dest = args.pop();
  if (dest === undefined || args.length === 0) throw new Error(`COPY needs a source and a destination: ${ins.toString()}`);
  const destPath = inStage(stage, dest);
  const intoDir = args.length > 1 || dest.endsWith('/');
  for (const src of args) {
    if (/[*?[]/.test(src)) throw new Error(`COPY ${src}: wildcards are not understood by the test runner`);
    const srcPath = source ? path.join(source.root, src) : path.join(context, src);
    if (!existsSync(srcPath)) throw new Error(`COPY ${src}: not found in ${source ? `stage ${from}` : 'the build context'}`);
    const target = intoDir && !statSync(srcPath).isDirectory() ? path.join(destPath, path.basename(src)) : destPath;
    mkdirSync(path.dirname(target), { recursive: true });
    cpSync(srcPath, target, { recursive: true });
  }
}

async function runStage(from: From, body: Instruction[], buildArgs: Record<string, string>, context: string, stages: Stage[]): Promise<Stage> {
  const base = (from.getImage() ?? '').replace(/\$\{(\w+)\}|\$(\w+)/g, (_m, a?: string, b?: string) => buildArgs[(a ?? b) as string] ?? '');
  // A base image's files come from the host; a stage built on an earlier stage would need its files.
  if (stages.some((s) => s.name === base)) throw new Error(`FROM ${base}: stages built on stages are not understood by the test runner`);
  const stage: Stage = {
    name: from.getBuildStage(),
    root: mkdtempSync(path.join(os.tmpdir(), 'warmpool-stage-')),
    workdir: '/',
    env: {},
    cmd: undefined,
  };
  for (const ins of body) {
    switch (ins.getKeyword()) {
      case 'WORKDIR':
        stage.workdir = path.posix.resolve(stage.workdir, ins.getArgumentsContent() ?? '');
        mkdirSync(path.join(stage.root, stage.workdir), { recursive: true });
        break;
      case 'ENV':
        for (const p of (ins as Env).getProperties()) stage.env[p.getName()] = p.getValue() ?? '';
        break;
      case 'COPY':
        copy(stage, ins as Copy, context, stages);
        break;
      case 'RUN': {
        const json = (ins as JSONInstruction).getJSONStrings().map((s) => s.getJSONValue());
        const command = json.length ? json.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ') : (ins.getArgumentsContent() ?? '');
        await run(command, path.join(stage.root, stage.workdir), runEnv(stage));
        break;
      }
      // Metadata only: dockerfiles.test.ts checks it; the commands here run as this test's user.
      case 'USER':
      case 'EXPOSE':
        break;
      case 'CMD': {
        const json = (ins as JSONInstruction).getJSONStrings().map((s) => s.getJSONValue());
        stage.cmd = json.length ? json : ['/bin/sh', '-c', ins.getArgumentsContent() ?? ''];
        break;
      }
      default:
        throw new Error(`${ins.getKeyword()} is not understood by the test runner`);
    }
  }
  return stage;
}

/** The instructions after each FROM, up to the next one; the build arguments before the first FROM are read apart. */
function splitStages(instructions: Instruction[]): [From, ...Instruction[]][] {
  const stages: [From, ...Instruction[]][] = [];
  for (const ins of instructions) {
    if (ins.getKeyword() === 'FROM') stages.push([ins as From]);
    else if (stages.length) stages.at(-1)?.push(ins);
    else if (ins.getKeyword() !== 'ARG') throw new Error(`${ins.getKeyword()} before the first FROM`);
  }
  return stages;
}

/** Runs every stage of `dockerfile` against `context`; the result is the last stage, the image. */
export async function buildImage(dockerfile: string, context: string, cache: StageCache): Promise<Stage> {
  const parsed = DockerfileParser.parse(readFileSync(dockerfile, 'utf8'));
  const buildArgs: Record<string, string> = {};
  for (const arg of parsed.getInitialARGs()) {
    const p = arg.getProperty();
    if (p) buildArgs[p.getName()] = p.getValue() ?? '';
  }
  const stages: Stage[] = [];
  let key = JSON.stringify([context, buildArgs]);
  for (const [from, ...body] of splitStages(parsed.getInstructions())) {
    // A stage's result depends on its text and on every stage before it (COPY --from).
    key = JSON.stringify([key, [from, ...body].map((i) => i.toString())]);
    let stage = cache.get(key);
    if (!stage) {
      stage = await runStage(from, body, buildArgs, context, stages);
      cache.set(key, stage);
    }
    stages.push(stage);
  }
  const last = stages.at(-1);
  if (!last) throw new Error(`${dockerfile}: no stage`);
  return last;
}

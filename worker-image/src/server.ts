/**
 * Entry point of the reference worker: reads the environment, loads the model, listens.
 * Everything else takes its inputs as arguments (see worker.ts).
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { trainModel } from './model.js';
import { localEngine, openAiEngine, type ChatEngine } from './engines.js';
import { createWorker } from './worker.js';

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    console.error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
    process.exit(1);
  }
  return value;
}

const host = process.env.HOST || '0.0.0.0';
const port = intEnv('PORT', 8080);
const loadDelayMs = intEnv('MODEL_LOAD_DELAY_MS', 0);
const tokenDelayMs = intEnv('TOKEN_DELAY_MS', 0);
const corpusPath = process.env.CORPUS_PATH || new URL('../corpus.txt', import.meta.url);

async function load(): Promise<ChatEngine> {
  const engine = process.env.OPENAI_BASE_URL
    ? openAiEngine(process.env.OPENAI_BASE_URL, process.env.OPENAI_MODEL || 'default', process.env.OPENAI_API_KEY)
    : localEngine(trainModel(await readFile(corpusPath, 'utf8')), tokenDelayMs);
  await sleep(loadDelayMs);
  return engine;
}

const engine = load();
engine.catch((err: Error) => {
  console.error(`model failed to load: ${err.message}`);
  process.exit(1);
});

const server = createWorker({
  engine,
  log: (fields) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), pid: process.pid, ...fields })}\n`),
});
server.listen(port, host);

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}

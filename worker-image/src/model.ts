/**
 * A deliberately small language model: a word-bigram Markov chain trained on a corpus at
 * start-up. It stands in for a real model so that the worker has genuine start-up work, gives
 * different answers to different prompts, and streams token by token like an LLM server.
 */
export interface Model {
  /**
   * The reply to `message` at conversation turn `turn`, as tokens (words with their spacing). A
   * `system` prompt steers it: the reply starts from a word of the prompt when the corpus knows
   * one, so a session's system setting shows in every reply.
   */
  reply(message: string, turn: number, system?: string): string[];
}

const END = '\u0000';
const MAX_TOKENS = 40;

function words(text: string): string[] {
  return text.toLowerCase().match(/[a-z']+|[.,:!?]/g) ?? [];
}

/** Tokens of `text` as the model counts them (words and punctuation): what `usage` reports. */
export function countTokens(text: string): number {
  return words(text).length;
}

/**
 * FNV-1a, used to seed the generator: the same message at the same turn gets the same reply,
 * which keeps tests and benchmarks reproducible without a global random state.
 */
function seed(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function mulberry32(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function trainModel(corpus: string): Model {
  const next = new Map<string, string[]>();
  for (const line of corpus.split('\n')) {
    const ws = words(line);
    if (ws.length === 0) continue;
    ws.push(END);
    for (let i = 0; i + 1 < ws.length; i++) {
      const from = ws[i] as string;
      const list = next.get(from) ?? [];
      list.push(ws[i + 1] as string);
      next.set(from, list);
    }
  }
  const vocabulary = [...next.keys()].filter((w) => /^[a-z]/.test(w));
  if (vocabulary.length === 0) throw new Error('the corpus has no words');

  return {
    reply(message: string, turn: number, system = ''): string[] {
      const random = mulberry32(seed(system ? `${turn}:${system}:${message}` : `${turn}:${message}`));
      const knownIn = (text: string) => words(text).filter((w) => next.has(w) && /^[a-z]/.test(w));
      const steered = knownIn(system);
      const known = steered.length > 0 ? steered : knownIn(message);
      let word = known.length > 0
        ? (known[Math.floor(random() * known.length)] as string)
        : (vocabulary[Math.floor(random() * vocabulary.length)] as string);
      const out: string[] = [word.charAt(0).toUpperCase() + word.slice(1)];
      while (out.length < MAX_TOKENS) {
        const options = next.get(word);
        if (!options) break;
        const following = options[Math.floor(random() * options.length)] as string;
        if (following === END) break;
        out.push(/^[.,:!?]$/.test(following) ? following : ` ${following}`);
        word = following;
      }
      return out;
    },
  };
}

import { errors } from '../errors.js';
import type { PoolBackend, SessionWorker } from '../pool/types.js';
import { isWellFormedToken, sessionHash } from './tokens.js';

type Gone = 'session_ended' | 'session_lost';

/** How many ended sessions are remembered to answer 410 instead of 404. */
const TOMBSTONES = 10_000;

/**
 * Finds a session's worker from the id a client holds. The backend is the source of truth for
 * which sessions exist; this adds the memory of recent ends, so an old id answers 410 rather
 * than 404, bounded to the last TOMBSTONES ends.
 */
export class Directory {
  private readonly gone = new Map<string, Gone>();

  constructor(private readonly backend: PoolBackend) {}

  /**
   * The worker of a session this replica already sees, found without waiting: the proxy's hot
   * path forwards in the same tick, before Node parses more of the request (a malformed body
   * would otherwise get the parser's 400 instead of the router's answer). `resolve` is the rest.
   */
  known(token: string): SessionWorker | undefined {
    return isWellFormedToken(token) ? this.backend.lookup(sessionHash(token)) : undefined;
  }

  /**
   * The worker of a live session, or the right 404/410 error. A session neither known nor
   * remembered as gone may be one another replica has just made: the backend gets to wait for it.
   */
  async resolve(token: string): Promise<SessionWorker> {
    if (!isWellFormedToken(token)) throw errors.sessionNotFound();
    const hash = sessionHash(token);
    const worker = this.backend.lookup(hash) ?? (this.gone.has(hash) ? undefined : await this.backend.waitForSession(hash));
    if (worker) return worker;
    const gone = this.gone.get(hash);
    if (gone === 'session_ended') throw errors.sessionEnded();
    if (gone === 'session_lost') throw errors.sessionLost();
    throw errors.sessionNotFound();
  }

  /** Whether the backend has stopped knowing the session (its worker died under a request). */
  isGone(hash: string): boolean {
    return this.backend.lookup(hash) === undefined;
  }

  bury(hash: string, why: Gone): void {
    this.gone.set(hash, why);
    if (this.gone.size > TOMBSTONES) this.gone.delete(this.gone.keys().next().value as string);
  }

  /** Takes back a tombstone laid for an end that did not happen. */
  exhume(hash: string): void {
    this.gone.delete(hash);
  }
}

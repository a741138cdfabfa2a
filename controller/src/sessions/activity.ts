import type { PoolBackend } from '../pool/types.js';

interface Entry {
  last: number;
  inFlight: number;
}

/**
 * This replica's view of each session's traffic: when it last saw some, and how many exchanges
 * (requests, streams, WebSockets) are open now. A session with an open exchange is never idle
 * here, and `heartbeat` keeps it from looking idle to the other replicas too: their reapers only
 * see what the backend persists, so a long stream through this replica must keep writing.
 */
export class Activity {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly backend: PoolBackend, private readonly now: () => number) {}

  /** Marks the start of an exchange; the returned function marks its end. Both count as activity. */
  begin(hash: string): () => void {
    const now = this.now();
    const entry = this.entries.get(hash) ?? { last: now, inFlight: 0 };
    entry.last = now;
    entry.inFlight++;
    this.entries.set(hash, entry);
    this.backend.recordActivity(hash, now);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const at = this.now();
      entry.last = at;
      entry.inFlight--;
      this.backend.recordActivity(hash, at);
    };
  }

  /** A session that starts now, before any exchange. */
  started(hash: string): void {
    this.entries.set(hash, { last: this.now(), inFlight: 0 });
  }

  last(hash: string): number {
    return this.entries.get(hash)?.last ?? 0;
  }

  busy(hash: string): boolean {
    return (this.entries.get(hash)?.inFlight ?? 0) > 0;
  }

  /** Records activity now for every session with an exchange in flight; run every flush interval. */
  heartbeat(): void {
    const now = this.now();
    for (const [hash, entry] of this.entries) {
      if (entry.inFlight === 0) continue;
      entry.last = now;
      this.backend.recordActivity(hash, now);
    }
  }

  /** Drops a session's entry and hands it back, so an end that did not happen can restore it. */
  forget(hash: string): Entry | undefined {
    const entry = this.entries.get(hash);
    this.entries.delete(hash);
    return entry;
  }

  restore(hash: string, entry: Entry | undefined): void {
    if (entry) this.entries.set(hash, entry);
  }
}

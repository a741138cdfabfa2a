import type { Logger } from '../../log.js';

/** Workers in a row that died before turning warm before the pool calls its command broken. */
const FAILING_AFTER = 3;

/** Restart delay after `failures` workers in a row died before turning warm. */
export function backoffMs(failures: number): number {
  return failures === 0 ? 0 : Math.min(30_000, 250 * 2 ** Math.min(failures - 1, 10));
}

/**
 * Why a local pool cannot serve, when it cannot: a size of 0, or a worker command that keeps
 * dying before it is ready. Counts the workers that died in a row, spaces out their restarts,
 * and says so loudly at 3, 6, 12... in a row, with the last line the command wrote to stderr.
 */
export class StartFailures {
  private count = 0;
  private warnAt = FAILING_AFTER;
  private lastStderr: string | undefined;

  constructor(private readonly size: number, private readonly logger: Logger) {}

  /** How long the next start waits. */
  backoffMs(): number {
    return backoffMs(this.count);
  }

  /** A worker died, or could not be started, before it turned warm. */
  failed(stderr: string | undefined): void {
    this.count++;
    this.lastStderr = stderr ?? this.lastStderr;
    if (this.count < this.warnAt) return;
    this.warnAt *= 2;
    this.logger.warn({ failures: this.count, lastStderr: this.lastStderr, problem: this.problem() }, 'workers keep dying before they are ready');
  }

  /** A worker turned warm: the command works. */
  warm(): void {
    this.count = 0;
    this.warnAt = FAILING_AFTER;
  }

  /** Said in /pool and by /readyz. */
  problem(): string | undefined {
    if (this.size === 0) {
      return 'POOL_SIZE=0: no warm workers will ever start; every session will wait CLAIM_TIMEOUT_MS and get 503';
    }
    if (this.count < FAILING_AFTER) return undefined;
    const last = this.lastStderr ? `; its last stderr line: ${this.lastStderr}` : '';
    return `LOCAL_WORKER_CMD keeps exiting before it answers GET /healthz: ${this.count} workers in a row${last}`;
  }
}

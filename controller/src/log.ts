import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout, for log collectors; on a terminal (`pretty`), pino-pretty's coloured
 * one-line form for the person watching. The redaction list is a second line of defence: the
 * code never puts a session token in a log field, but a header dump would carry one.
 */
export interface LoggerOptions {
  pretty?: boolean;
  destination?: DestinationStream;
  /** Told every warning and error logged, as one line (the status page shows the last). */
  onProblem?: (line: string) => void;
}

/** pino level numbers: 40 is warn. */
const WARN = 40;

/** A log call's message, with its `err` field when it has one: `msg: err`. */
function problemLine(args: unknown[]): string {
  const [first] = args;
  const fields = typeof first === 'object' && first !== null ? first as { err?: unknown } : {};
  const msg = args.find((a): a is string => typeof a === 'string') ?? '';
  const err = typeof fields.err === 'string' ? fields.err : fields.err instanceof Error ? fields.err.message : '';
  return err ? `${msg}: ${err}` : msg;
}

export function createLogger(level: string, options: LoggerOptions = {}): Logger {
  const { onProblem } = options;
  return pino(
    {
      level,
      ...(onProblem ? {
        hooks: {
          logMethod(args: unknown[], method: (...a: unknown[]) => void, num: number) {
            if (num >= WARN) onProblem(problemLine(args));
            method.apply(this, args);
          },
        },
      } : {}),
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      // pino-pretty reads the numeric level; the label form is for JSON consumers.
      ...(options.pretty ? {} : { formatters: { level: (label: string) => ({ level: label }) } }),
      redact: {
        paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-session-id"]', 'token'],
        censor: '[redacted]',
      },
    },
    options.pretty
      ? pino.transport({ target: 'pino-pretty', options: { colorize: true, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } })
      : options.destination,
  );
}

import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout, for log collectors; on a terminal (`pretty`), pino-pretty's coloured
 * one-line form for the person watching. The redaction list is a second line of defence: the
 * code never puts a session token in a log field, but a header dump would carry one.
 */
export function createLogger(level: string, options: { pretty?: boolean; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      level,
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

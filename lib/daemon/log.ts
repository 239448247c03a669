/**
 * JSON logs, one object per line on stdout (pino). Written synchronously, so
 * the line that says what the daemon changed is out before the next change,
 * and nothing is lost when the process is killed.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

export function createLogger(level: LogLevel, base: Record<string, unknown>, fd = 1): Logger {
  return pino(
    {
      level,
      base,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: fd, sync: true }),
  );
}

import type { LogLevel } from './config.js';
import type { Logger } from './logger.js';

/**
 * Logs at most `burst` lines per `windowMs` for one kind of message; the rest are counted and summarised
 * in one line when the window ends, so a flood of bad input cannot become a flood of log lines.
 */
export function createLogThrottle(options: {
  log: Logger;
  level: LogLevel;
  burst: number;
  windowMs: number;
  now?: () => number;
  summary: (suppressed: number, windowMs: number) => string;
}) {
  const now = options.now ?? Date.now;
  let windowStart = -Infinity;
  let written = 0;
  let suppressed = 0;

  function roll(at: number): void {
    if (at - windowStart < options.windowMs) return;
    if (suppressed > 0) options.log.log(options.level, options.summary(suppressed, options.windowMs));
    windowStart = at;
    written = 0;
    suppressed = 0;
  }

  return {
    log(message: string, fields?: Record<string, unknown>): void {
      roll(now());
      if (written < options.burst) {
        written++;
        options.log.log(options.level, message, fields);
      } else {
        suppressed++;
      }
    },
    /** Writes the pending summary (on stop). */
    flush(): void {
      if (suppressed > 0) options.log.log(options.level, options.summary(suppressed, options.windowMs));
      suppressed = 0;
    },
  };
}

import type { Logger } from './logger.js';

/**
 * Logs a fault once when it starts and once when it ends, with how long it lasted, however many times it is
 * seen in between: a dependency that is down must not become a storm of log lines.
 */
export function createOutageLog(options: { log: Logger; what: string; now?: () => number; level?: 'warn' | 'error' }) {
  const now = options.now ?? Date.now;
  let since: number | null = null;
  return {
    /** Notes a failure; logs only the first of an outage. */
    failed(error: unknown): void {
      if (since !== null) return;
      since = now();
      const reason = error instanceof Error ? error.message : String(error);
      options.log[options.level ?? 'warn'](`${options.what}: ${reason}`, { outage: options.what, reason });
    },
    /** Notes a success; logs the end of an outage, if one was going on. */
    recovered(): void {
      if (since === null) return;
      const durationMs = now() - since;
      since = null;
      options.log.info(`${options.what}: recovered after ${Math.round(durationMs / 1000)} s`, { outage: options.what, durationMs });
    },
    /** Since when the current outage lasts, or null. */
    since: () => since,
  };
}

import type { Logger } from './logger.js';

export interface OutageLogOptions {
  log: Logger;
  /** Names the fault: `<what>: <reason>` when it starts, `<what>: recovered after <s> s` when it ends. */
  what: string;
  now?: () => number;
  level?: 'warn' | 'error';
  /** The line that starts an outage, where the logs' documented wording is not `<what>: <reason>`. */
  failedLine?: (reason: string) => string;
  /** The line that ends an outage, where the logs' documented wording is not `<what>: recovered after <s> s`. */
  recoveredLine?: (seconds: number) => string;
}

export type OutageLog = ReturnType<typeof createOutageLog>;

/**
 * Logs a fault once when it starts and once when it ends, with how long it lasted, however many times it is
 * seen in between: a dependency that is down must not become a storm of log lines.
 */
export function createOutageLog(options: OutageLogOptions) {
  const now = options.now ?? Date.now;
  let since: number | null = null;
  return {
    /**
     * Notes a failure; logs only the first of an outage, as `<what>: <reason>`. `what` replaces the option's
     * for this line when the first failure says more (which call failed, which connection was lost).
     */
    failed(error: unknown, what: string = options.what): void {
      if (since !== null) return;
      since = now();
      const reason = error instanceof Error ? error.message : String(error);
      options.log[options.level ?? 'warn'](options.failedLine?.(reason) ?? `${what}: ${reason}`, { outage: options.what, reason });
    },
    /** Notes a success; logs the end of an outage, if one was going on. */
    recovered(): void {
      if (since === null) return;
      const durationMs = now() - since;
      since = null;
      const seconds = Math.round(durationMs / 1000);
      const line = options.recoveredLine?.(seconds) ?? `${options.what}: recovered after ${seconds} s`;
      options.log.info(line, { outage: options.what, durationMs });
    },
    /** Since when the current outage lasts, or null. */
    since: () => since,
  };
}

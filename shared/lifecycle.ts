import type { Logger } from './logger.js';

/**
 * Runs `stop` once on SIGTERM / SIGINT and exits 0, or 1 if stopping fails or takes longer than `graceMs`.
 */
export function stopOnSignals(log: Logger, stop: () => Promise<void>, graceMs = 10_000): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal} received, stopping`);
    const timer = setTimeout(() => {
      log.error(`Did not stop within ${graceMs} ms, exiting`);
      process.exit(1);
    }, graceMs);
    timer.unref();
    stop()
      .then(() => process.exit(0))
      .catch((error: Error) => {
        log.error(`Stop failed: ${error.message}`);
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}

/** Prints a start-up failure (e.g. a ConfigError naming every bad variable) and exits 1. */
export function failStart(error: unknown): never {
  process.stderr.write(`${(error as Error)?.message ?? String(error)}\n`);
  process.exit(1);
}

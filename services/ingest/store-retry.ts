import type { Logger } from '../../shared/logger.js';
import { createOutageLog } from '../../shared/outage-log.js';
import { retry } from '../../shared/retry.js';
import { StoreUnavailableError } from '../../shared/store/node-store.js';

/**
 * Runs store calls until they succeed, backing off 100 ms .. 5 s while the store is unavailable, and stops
 * retrying once `signal` aborts (the ingest is stopping). Other errors are rethrown at once. Logs once when the
 * outage starts and once when it ends, never per attempt.
 */
export function createStoreRetry(options: { log: Logger; onHealthChange: (healthy: boolean) => void; signal: AbortSignal }) {
  const outage = createOutageLog({
    log: options.log,
    what: 'Store unavailable',
    level: 'error',
    recoveredLine: (seconds) => `Store available again after ${seconds} s; writing held messages`,
  });

  return function retryStore<T>(what: string, run: () => Promise<T>): Promise<T> {
    return retry(run, {
      firstDelayMs: 100,
      maxDelayMs: 5000,
      signal: options.signal,
      retryIf: (error) => error instanceof StoreUnavailableError,
      outage: { failed: (error) => outage.failed(error, `Store unavailable (${what}), holding messages unacknowledged until it is back`), recovered: outage.recovered },
      onFailure: () => options.onHealthChange(false),
      onSuccess: () => options.onHealthChange(true),
    });
  };
}

import { StoreUnavailableError } from '../../shared/store/node-store.js';
import type { Logger } from '../../shared/logger.js';

/**
 * Runs store calls until they succeed, backing off 100 ms .. 5 s while the store is unavailable.
 * Logs once when the outage starts and once when it ends, never per attempt.
 */
export function createStoreRetry(options: { log: Logger; onHealthChange: (healthy: boolean) => void; isStopping: () => boolean; sleep?: (ms: number) => Promise<void> }) {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  let outageSince: number | null = null;

  return async function retry<T>(what: string, run: () => Promise<T>): Promise<T> {
    let delay = 100;
    for (;;) {
      try {
        const result = await run();
        if (outageSince !== null) {
          options.log.info(`Store available again after ${Math.round((Date.now() - outageSince) / 1000)} s; writing held messages`);
          outageSince = null;
        }
        options.onHealthChange(true);
        return result;
      } catch (error) {
        if (!(error instanceof StoreUnavailableError)) throw error;
        if (outageSince === null) {
          outageSince = Date.now();
          options.log.error(`Store unavailable (${what}), holding messages unacknowledged until it is back: ${error.message}`);
        }
        options.onHealthChange(false);
        if (options.isStopping()) throw error;
        await sleep(delay);
        delay = Math.min(5000, delay * 2);
      }
    }
  };
}

import type { Delivery } from '../../shared/bus/bus.js';
import type { Logger } from '../../shared/logger.js';
import { backoffDelay, type Backoff } from '../../shared/retry.js';

/** The wait before giving a failed batch back: retry()'s schedule, counted over the batches that failed in a row. */
const BACKOFF: Backoff = { firstDelayMs: 100, maxDelayMs: 5000 };

/**
 * Handles batches that failed unexpectedly: backs off (100 ms doubling to 5 s over the batches that failed in a
 * row) before requeueing, logs once per distinct error rather than per attempt, and dead-letters a message after
 * `deadLetterAfter` failed attempts so that a poison message never blocks the queue. The retry itself is the
 * broker's redelivery, not a loop here, so the wait is retry()'s schedule rather than retry(). Once `signal`
 * aborts (stopping), the wait ends at once.
 */
export function createFailureTracker(options: { log: Logger; deadLetterAfter: number; signal?: AbortSignal }) {
  const attempts = new Map<string, number>();
  let failuresInRow = 0;
  let lastMessage: string | null = null;

  function wait(ms: number): Promise<void> {
    const signal = options.signal;
    if (signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  return {
    succeeded() {
      failuresInRow = 0;
      lastMessage = null;
    },
    async failed(error: unknown, batch: Delivery[], deadLetter: (d: Delivery, reason: string) => Promise<void>) {
      const message = (error as Error)?.message ?? String(error);
      if (message !== lastMessage) options.log.error(`Ingest batch failed unexpectedly, retrying with back-off: ${message}`);
      lastMessage = message;
      await wait(backoffDelay(BACKOFF, ++failuresInRow));
      if (attempts.size > 100_000) attempts.clear();
      for (const d of batch) {
        const key = d.messageId ?? d.body.toString('base64').slice(0, 64);
        const count = (attempts.get(key) ?? 0) + 1;
        if (count >= options.deadLetterAfter) {
          attempts.delete(key);
          await deadLetter(d, `processing failed ${count} times: ${message.slice(0, 200)}`);
        } else {
          attempts.set(key, count);
          d.requeue();
        }
      }
    },
  };
}

import type { Delivery } from '../../shared/bus/bus.js';
import type { Logger } from '../../shared/logger.js';

/**
 * Handles batches that failed unexpectedly: backs off (100 ms doubling to 5 s) before requeueing, logs
 * once per distinct error rather than per attempt, and dead-letters a message after `deadLetterAfter`
 * failed attempts so that a poison message never blocks the queue.
 */
export function createFailureTracker(options: { log: Logger; deadLetterAfter: number; sleep?: (ms: number) => Promise<void> }) {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const attempts = new Map<string, number>();
  let delay = 100;
  let lastMessage: string | null = null;

  return {
    succeeded() {
      delay = 100;
      lastMessage = null;
    },
    async failed(error: unknown, batch: Delivery[], deadLetter: (d: Delivery, reason: string) => Promise<void>) {
      const message = (error as Error)?.message ?? String(error);
      if (message !== lastMessage) options.log.error(`Ingest batch failed unexpectedly, retrying with back-off: ${message}`);
      lastMessage = message;
      await sleep(delay);
      delay = Math.min(5000, delay * 2);
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

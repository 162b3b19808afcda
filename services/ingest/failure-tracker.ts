import type { Delivery } from '../../shared/bus/bus.js';
import type { Logger } from '../../shared/logger.js';
import type { Metrics } from '../../shared/metrics.js';
import { backoffDelay, type Backoff } from '../../shared/retry.js';
import { HEADERS } from '../../shared/topology.js';

/** The wait before giving a failed batch back: retry()'s schedule, counted over the batches that failed in a row. */
const BACKOFF: Backoff = { firstDelayMs: 100, maxDelayMs: 5000 };

export interface FailureTrackerOptions {
  log: Logger;
  metrics: Pick<Metrics, 'deadLettered'>;
  /**
   * The ingest queue's `x-delivery-limit`: the broker dead-letters a message given back more often than this
   * (null: the queue has none, and nothing is dead-lettered for failing).
   */
  deliveryLimit: number | null;
  /** Where the broker dead-letters them, for the log line. */
  deadLetterQueue: string;
  signal?: AbortSignal;
}

/**
 * Handles batches that failed unexpectedly: backs off (100 ms doubling to 5 s over the batches that failed in a
 * row), then gives the messages back to the queue, and logs once per distinct error rather than per attempt.
 * It counts no attempts itself: the ingest queue is a quorum queue, which counts what it is given back (the
 * `x-delivery-count` header) and dead-letters a message given back more than its delivery limit, reason
 * `delivery_limit` (docs/architecture.md, Ingest), so a poison message never blocks the queue, even one that
 * kills the process before it can be given back. The messages of a failed batch that were on their last delivery
 * are logged and counted (orchestrator_dead_lettered_total, reason `delivery limit`) as they go. The retry itself
 * is the broker's redelivery, not a loop here, so the wait is retry()'s schedule rather than retry(). Once `signal`
 * aborts (stopping), the wait ends at once.
 */
export function createFailureTracker(options: FailureTrackerOptions) {
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

  /** Given back now, the broker dead-letters it: it was given back `deliveryLimit` times already. */
  function onLastDelivery(d: Delivery): boolean {
    const count = d.headers[HEADERS.deliveryCount];
    return options.deliveryLimit !== null && typeof count === 'number' && count >= options.deliveryLimit;
  }

  return {
    succeeded() {
      failuresInRow = 0;
      lastMessage = null;
    },
    async failed(error: unknown, batch: Delivery[]) {
      const message = (error as Error)?.message ?? String(error);
      if (message !== lastMessage) options.log.error(`Ingest batch failed unexpectedly, retrying with back-off: ${message}`);
      lastMessage = message;
      await wait(backoffDelay(BACKOFF, ++failuresInRow));
      const spent = batch.filter(onLastDelivery);
      if (spent.length) {
        options.log.warn(
          `${spent.length} agent message(s) failed on their last delivery (given back ${options.deliveryLimit} times before): the broker dead-letters them to ${options.deadLetterQueue} (x-death reason delivery_limit): ${message.slice(0, 200)}`,
          { count: spent.length, routingKey: spent[0]!.routingKey.slice(0, 120) },
        );
        options.metrics.deadLettered.inc({ reason: 'delivery limit' }, spent.length);
      }
      for (const d of batch) d.requeue();
    },
  };
}

import type { Bus } from '../bus/bus.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { NodeEvent } from '../messages/index.js';
import type { NodeStore } from '../store/node-store.js';

export interface EventPublisherDeps {
  bus: Bus;
  store: NodeStore;
  exchange: string;
  log: Logger;
  metrics?: Metrics;
}

/**
 * Publishes stored (outbox) events with publisher confirms, then removes them from the node's outbox.
 * If the process dies in between, the next drain publishes the same event again with the same eventId:
 * delivery is at least once, and subscribers deduplicate by eventId / statusVersion (contract §4).
 */
export function createEventPublisher({ bus, store, exchange, log, metrics }: EventPublisherDeps) {
  async function publishEvent(event: NodeEvent): Promise<void> {
    await bus.publish(exchange, event.type, event, { messageId: event.eventId, headers: { 'x-status-version': event.statusVersion } });
    metrics?.eventsPublished.inc({ type: event.type });
  }

  /** Publishes the events of one node in statusVersion order and clears them; throws if the broker refuses. */
  async function publishFor(nodeId: string, events: NodeEvent[]): Promise<void> {
    const ordered = [...events].sort((a, b) => a.statusVersion - b.statusVersion);
    const done: NodeEvent[] = [];
    try {
      for (const event of ordered) {
        await publishEvent(event);
        done.push(event);
      }
    } finally {
      if (done.length) await store.removeFromOutbox(nodeId, done);
    }
  }

  /**
   * Publishes every pending outbox event older than `graceMs` (younger ones are still being published by
   * the process that stored them), at most `limit` nodes per call. Returns how many.
   */
  async function drain(limit = 1000, graceMs = 1000, now = Date.now()): Promise<number> {
    const pending = await store.findWithOutbox(limit);
    let count = 0;
    for (const node of pending) {
      const due = node.outbox.filter((e) => Date.parse(e.occurredAt) <= now - graceMs);
      if (!due.length) continue;
      await publishFor(node.nodeId, due);
      count += due.length;
    }
    if (count) log.debug(`Published ${count} pending node events from the outbox`);
    return count;
  }

  return { publishFor, drain };
}

export type EventPublisher = ReturnType<typeof createEventPublisher>;

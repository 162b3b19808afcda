import type { Bus } from '../bus/bus.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { NodeEvent } from '../messages/index.js';
import type { NodeStore, OutboxRemoval } from '../store/node-store.js';

export interface EventPublisherDeps {
  bus: Bus;
  store: NodeStore;
  exchange: string;
  log: Logger;
  metrics?: Metrics;
}

/** The events of one node to publish (each as stored in its outbox). */
export interface NodeEvents {
  nodeId: string;
  events: NodeEvent[];
}

export interface PublishOutcome {
  /** Nodes all of whose events the broker confirmed; their events are out of the outbox. */
  published: string[];
  /** Nodes with events the broker did not take (left in the outbox for a later drain), each with its error. */
  failed: Array<{ nodeId: string; error: Error }>;
  /** Events confirmed and removed from the outbox, including those of failed nodes that went out before the failure. */
  events: number;
}

export interface DrainOutcome extends PublishOutcome {
  /** Events seen in the outbox and not due yet (younger than the grace period). */
  notDue: number;
  /** When the first of those becomes due (epoch ms), or null. */
  nextDueAt: number | null;
  /** The drain read `limit` nodes: more may be waiting. */
  more: boolean;
}

/**
 * Publishes stored (outbox) events with publisher confirms, then removes them from the nodes' outboxes.
 * If the process dies in between, the next drain publishes the same event again with the same eventId:
 * delivery is at least once, and subscribers deduplicate by eventId / statusVersion (docs/reference.md, events).
 */
export function createEventPublisher({ bus, store, exchange, log, metrics }: EventPublisherDeps) {
  async function publishEvent(event: NodeEvent): Promise<void> {
    await bus.publish(exchange, event.type, event, { messageId: event.eventId, headers: { 'x-status-version': event.statusVersion } });
    metrics?.eventsPublished.inc({ type: event.type });
  }

  /**
   * Publishes the events of many nodes with pipelined confirms: every node's events go out at once, so the
   * publishes of all nodes are in flight together on the confirm channel; within a node they go in
   * statusVersion order, each after the previous one's confirm, so a refused event is never overtaken by a
   * later one of its node. Then removes every confirmed event from the outboxes in one bulk write.
   * A refusal does not throw: it is in `failed`, and the node's unconfirmed events stay in the outbox.
   * Throws only if the store cannot remove the confirmed events (they are then published again later).
   */
  async function publishMany(batch: NodeEvents[]): Promise<PublishOutcome> {
    const results = await Promise.all(
      batch.map(async ({ nodeId, events }) => {
        const sent: NodeEvent[] = [];
        try {
          for (const event of [...events].sort((a, b) => a.statusVersion - b.statusVersion)) {
            await publishEvent(event);
            sent.push(event);
          }
          return { nodeId, sent, error: null };
        } catch (error) {
          return { nodeId, sent, error: error as Error };
        }
      }),
    );
    const removals: OutboxRemoval[] = results.filter((r) => r.sent.length).map((r) => ({ nodeId: r.nodeId, events: r.sent }));
    if (removals.length) await store.removeFromOutbox(removals);
    return {
      published: results.filter((r) => !r.error).map((r) => r.nodeId),
      failed: results.flatMap((r) => (r.error ? [{ nodeId: r.nodeId, error: r.error }] : [])),
      events: removals.reduce((n, r) => n + r.events.length, 0),
    };
  }

  /**
   * Publishes every pending outbox event older than `graceMs` (younger ones are still being published by
   * the process that stored them), of at most `limit` nodes per call, all with pipelined confirms.
   */
  async function drain(limit = 1000, graceMs = 1000, now = Date.now()): Promise<DrainOutcome> {
    const pending = await store.findWithOutbox(limit);
    const batch: NodeEvents[] = [];
    let notDue = 0;
    let nextDueAt: number | null = null;
    for (const node of pending) {
      const due: NodeEvent[] = [];
      for (const event of node.outbox) {
        const dueAt = Date.parse(event.occurredAt) + graceMs;
        if (dueAt <= now) due.push(event);
        else {
          notDue++;
          nextDueAt = Math.min(nextDueAt ?? dueAt, dueAt);
        }
      }
      if (due.length) batch.push({ nodeId: node.nodeId, events: due });
    }
    const outcome = batch.length ? await publishMany(batch) : { published: [], failed: [], events: 0 };
    if (outcome.events) log.debug(`Published ${outcome.events} pending node events from the outbox`);
    return { ...outcome, notDue, nextDueAt, more: pending.length >= limit };
  }

  return { publishMany, drain };
}

export type EventPublisher = ReturnType<typeof createEventPublisher>;

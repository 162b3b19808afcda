import { z } from 'zod';
import type { Bus, Consumer, Delivery } from '../../../shared/bus/bus.js';
import type { Logger } from '../../../shared/logger.js';
import { createOutageLog } from '../../../shared/outage-log.js';
import { retry } from '../../../shared/retry.js';
import { clusterEventSchema, nodeEventSchema, type ClusterEvent, type NodeEvent } from '../../../shared/messages/index.js';
import type { BrokerNames } from '../../../shared/topology.js';

export type FeedEvent = NodeEvent | ClusterEvent;

const feedEventSchema = z.union([nodeEventSchema, clusterEventSchema]);

export interface NodeEventFeedOptions {
  bus: Bus;
  names: BrokerNames;
  log: Logger;
  /** Events kept for the snapshot of a newly connected page (default 100). */
  keep?: number;
  /** Wait before trying again when subscribing failed while connected (default 5 s). */
  retryMs?: number;
}

export interface NodeEventFeed {
  /** The newest events this process saw, oldest first. */
  recent(): FeedEvent[];
  onEvent(listener: (event: FeedEvent) => void): void;
  /** Called each time a subscription starts consuming; `again` after the first (events may have been missed in between). */
  onSubscribed(listener: (again: boolean) => void): void;
  /** Resolves once the subscription is consuming (for tests). */
  ready(): Promise<void>;
  close(): Promise<void>;
}

/**
 * One subscription to node.events per api process, shared by every dashboard page: an exclusive,
 * auto-delete, server-named queue bound with '#', declared with the subscription, so that the bus declares it
 * again and resubscribes after a reconnect (events published in between are missed: `onSubscribed(true)`).
 */
export function createNodeEventFeed(options: NodeEventFeedOptions): NodeEventFeed {
  const { bus, names, log } = options;
  const keep = options.keep ?? 100;
  const retryMs = options.retryMs ?? 5000;
  const listeners: Array<(event: FeedEvent) => void> = [];
  const subscribedListeners: Array<(again: boolean) => void> = [];
  let subscriptions = 0;
  const recent: FeedEvent[] = [];
  let closed = false;
  const closing = new AbortController();
  let waiters: Array<() => void> = [];

  function onDelivery(delivery: Delivery): void {
    delivery.ack(); // a live view: nothing to redo if handling fails
    let parsed: unknown;
    try {
      parsed = JSON.parse(delivery.body.toString('utf8'));
    } catch {
      log.debug(`Dashboard ignored a non-JSON message on ${delivery.routingKey}`);
      return;
    }
    const result = feedEventSchema.safeParse(parsed);
    if (!result.success) {
      log.debug(`Dashboard ignored an unrecognised message on ${delivery.routingKey}`);
      return;
    }
    const event = result.data;
    // At-least-once delivery: a redelivered event keeps its eventId.
    if (recent.some((e) => e.eventId === event.eventId)) return;
    recent.push(event);
    if (recent.length > keep) recent.splice(0, recent.length - keep);
    for (const listener of listeners) listener(event);
  }

  function onConsuming(queue: string): void {
    if (closed) return;
    log.debug(`Dashboard subscribed to ${names.exchanges.nodeEvents} with queue ${queue}`);
    for (const resolve of waiters.splice(0)) resolve();
    const again = subscriptions++ > 0;
    for (const listener of subscribedListeners) listener(again);
  }

  // Rejected only while connected (e.g. the exchange is not declared yet): tried again until it is taken.
  const subscribed: Promise<Consumer | null> = retry(
    () => bus.consume({ exclusive: true, autoDelete: true, bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: '#' }] }, onDelivery, { prefetch: 50, onConsuming }),
    {
      firstDelayMs: retryMs,
      maxDelayMs: retryMs,
      signal: closing.signal,
      outage: createOutageLog({
        log,
        what: 'Dashboard could not subscribe to node events, retrying',
        recoveredLine: (seconds) => `Dashboard subscribed to node events after ${seconds} s`,
      }),
    },
  ).catch(() => null); // only when closed meanwhile

  return {
    recent: () => [...recent],
    onEvent(listener) {
      listeners.push(listener);
    },
    onSubscribed(listener) {
      subscribedListeners.push(listener);
    },
    ready() {
      if (subscriptions > 0) return Promise.resolve();
      return new Promise<void>((resolve) => waiters.push(resolve));
    },
    async close() {
      closed = true;
      closing.abort();
      listeners.length = 0;
      subscribedListeners.length = 0;
      waiters = [];
      const consumer = await subscribed;
      // The auto-delete queue goes with its consumer; a channel already gone took the consumer along.
      await consumer?.cancel().catch(() => undefined);
    },
  };
}

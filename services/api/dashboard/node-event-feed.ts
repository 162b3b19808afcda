import { z } from 'zod';
import type { Bus, Consumer, Delivery } from '../../../shared/bus/bus.js';
import type { Logger } from '../../../shared/logger.js';
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
 * auto-delete, server-named queue bound with '#'. The RabbitMQ adapter does not re-declare server-named
 * queues after a reconnect (they die with the connection), so the feed drops its consumer when the
 * connection goes and subscribes afresh when it comes back.
 */
export function createNodeEventFeed(options: NodeEventFeedOptions): NodeEventFeed {
  const { bus, names, log } = options;
  const keep = options.keep ?? 100;
  const retryMs = options.retryMs ?? 5000;
  const listeners: Array<(event: FeedEvent) => void> = [];
  const subscribedListeners: Array<(again: boolean) => void> = [];
  let subscriptions = 0;
  const recent: FeedEvent[] = [];
  let consumer: Consumer | null = null;
  let queue: string | null = null;
  let subscribing = false;
  // Bumped whenever the connection drops, so an attempt that straddles the drop is recognised as stale.
  let generation = 0;
  let closed = false;
  let retryTimer: NodeJS.Timeout | null = null;
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

  function scheduleRetry(): void {
    if (closed || retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      // subscribe retries and logs on its own.
      if (bus.isConnected()) void subscribe();
    }, retryMs);
    retryTimer.unref();
  }

  async function subscribe(): Promise<void> {
    if (closed || subscribing || consumer) return;
    subscribing = true;
    const attempt = generation;
    let stale = false;
    try {
      const name = await bus.declareQueue({
        exclusive: true,
        autoDelete: true,
        bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: '#' }],
      });
      const started = await bus.consume(name, onDelivery, { prefetch: 50 });
      if (closed || attempt !== generation) {
        stale = true;
        await release(started, name);
        return;
      }
      consumer = started;
      queue = name;
      log.debug(`Dashboard subscribed to ${names.exchanges.nodeEvents} with queue ${name}`);
      for (const resolve of waiters.splice(0)) resolve();
      const again = subscriptions++ > 0;
      for (const listener of subscribedListeners) listener(again);
    } catch (error) {
      log.warn(`Dashboard could not subscribe to node events, retrying: ${(error as Error).message}`);
      scheduleRetry();
    } finally {
      subscribing = false;
      // subscribe retries and logs on its own.
      if (stale && !closed && bus.isConnected()) void subscribe();
    }
  }

  async function release(c: Consumer, name: string): Promise<void> {
    // Cancelling a consumer whose channel is gone has nothing left to do.
    await c.cancel().catch(() => undefined);
    // Gone already on RabbitMQ (auto-delete); the in-memory bus keeps queues until deleted.
    await bus.deleteQueue(name).catch(() => undefined);
  }

  function drop(): void {
    generation++;
    const c = consumer;
    const name = queue;
    consumer = null;
    queue = null;
    // release ignores what is gone already; closing does not wait for the broker.
    if (c && name) void release(c, name);
  }

  bus.onConnectionChange((connected) => {
    if (closed) return;
    // subscribe retries and logs on its own.
    if (connected) void subscribe();
    else drop();
  });
  // subscribe retries and logs on its own.
  void subscribe();

  return {
    recent: () => [...recent],
    onEvent(listener) {
      listeners.push(listener);
    },
    onSubscribed(listener) {
      subscribedListeners.push(listener);
    },
    ready() {
      if (consumer) return Promise.resolve();
      return new Promise<void>((resolve) => waiters.push(resolve));
    },
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
      const c = consumer;
      const name = queue;
      consumer = null;
      queue = null;
      listeners.length = 0;
      subscribedListeners.length = 0;
      waiters = [];
      if (c && name) await release(c, name);
    },
  };
}

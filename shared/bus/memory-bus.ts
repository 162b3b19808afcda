import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger.js';
import { HEADERS, type Topology } from '../topology.js';
import { BrokerBlockedError, BusUnavailableError, encode, QueueMismatchError, type Bus, type Consumer, type Delivery, type PublishOptions, type QueueOptions } from './bus.js';
import { createPublishTracker, type PublishTicket } from './publish-tracker.js';
import { topicMatches } from './topic-match.js';

interface Stored {
  body: Buffer;
  exchange: string;
  routingKey: string;
  messageId?: string;
  headers: Record<string, unknown>;
  redelivered: boolean;
  expiresAt: number | null;
  /** Times a quorum queue took it back: its x-delivery-count (0 until then, and on classic queues). */
  deliveryCount: number;
}

interface MemoryQueue {
  name: string;
  ready: Stored[];
  consumers: MemoryConsumer[];
  bindings: Array<{ exchange: string; routingKey: string }>;
  arguments: Record<string, unknown>;
  /** Dies with the connection. */
  exclusive: boolean;
  /** Dies with its last consumer. */
  autoDelete: boolean;
}

interface MemoryConsumer {
  /** The queue it consumes from; null while the connection is down (or its queue is gone). */
  queue: MemoryQueue | null;
  /** The queue's name, or the queue to declare each time the subscription starts. */
  source: string | QueueOptions;
  prefetch: number;
  unacked: number;
  onDelivery: (delivery: Delivery) => void;
  onConsuming?: (queue: string) => void;
  cancelled: boolean;
  /** Deliveries not yet settled, so a simulated outage can give them back. */
  inflight: Set<{ message: Stored; settled: boolean }>;
}

/** A publish the memory bus holds unconfirmed (blocked with whenBlocked 'wait', or confirms stalled). */
interface Held {
  ticket: PublishTicket;
  exchange: string;
  routingKey: string;
  message: Stored;
  waits: boolean;
  timer: NodeJS.Timeout;
  grace?: NodeJS.Timeout;
  /** Answers the caller once (a blocked grace may answer before the publish leaves the backlog). */
  answer(error?: Error): void;
}

export interface MemoryBusOptions {
  /** A held publish fails after this long (default 5 s), like the RabbitMQ adapter's confirm timeout. */
  confirmTimeoutMs?: number;
  /** See RabbitBusOptions.wedgedAfterMs (default 2 s). */
  wedgedAfterMs?: number;
  /** See RabbitBusOptions.blockedGraceMs (default 500 ms). */
  blockedGraceMs?: number;
  /** Where a block's start and end are logged (not logged without). */
  log?: Logger;
}

export type MemoryBus = Bus & {
  /** Simulates a broker outage (false) and its end (true). */
  setConnected(connected: boolean): void;
  /** Simulates the broker's connection.blocked (a memory or disk alarm): publishes fail fast until unblock(). */
  block(reason: string): void;
  unblock(): void;
  /** Simulates a wedged channel: publishes are held unconfirmed until releaseConfirms() (or their confirm timeout). */
  stallConfirms(): void;
  releaseConfirms(): void;
};

/**
 * In-process bus for the all-in-one mode and unit tests: topic and fanout exchanges, prefetch,
 * ack / requeue with redelivery, per-message expiration and dead-lettering like the RabbitMQ adapter. A queue
 * declared with `x-queue-type: quorum` counts what it is given back as RabbitMQ's quorum queues do (the
 * `x-delivery-count` header) and dead-letters a message given back more than its `x-delivery-limit` (reason
 * `delivery_limit`, in `x-death`); declaring a topology queue again with other arguments fails as on RabbitMQ.
 * Publishes are "confirmed" once routed. `setConnected(false)` simulates a broker outage, `block(reason)` a
 * broker alarm and `stallConfirms()` a channel that stops confirming, with the same publishState() rules.
 * As on RabbitMQ, a lost connection takes its consumers, its exclusive queues and the auto-delete queues it
 * consumed from along; when it is back, the named queues declared before are declared again and every
 * subscription starts again (declaring its queue, if it was subscribed with one).
 */
export function createMemoryBus(options: MemoryBusOptions = {}): MemoryBus {
  const confirmTimeoutMs = options.confirmTimeoutMs ?? 5000;
  const blockedGraceMs = options.blockedGraceMs ?? 500;
  const tracker = createPublishTracker({ wedgedAfterMs: options.wedgedAfterMs ?? 2000, log: options.log });
  const held = new Set<Held>();
  let stalled = false;
  const exchanges = new Map<string, string>();
  const queues = new Map<string, MemoryQueue>();
  /** Named queues declared with declareQueue(): declared again when the connection is back. */
  const declared = new Map<string, QueueOptions>();
  const subscriptions = new Set<MemoryConsumer>();
  const listeners: Array<(connected: boolean) => void> = [];
  let connected = true;
  let pumpScheduled = false;

  function schedulePump(): void {
    if (pumpScheduled) return;
    pumpScheduled = true;
    setImmediate(() => {
      pumpScheduled = false;
      for (const q of queues.values()) pump(q);
    });
  }

  function pump(q: MemoryQueue): void {
    if (!connected) return;
    const now = Date.now();
    let progressed = true;
    while (q.ready.length && progressed) {
      progressed = false;
      for (const c of q.consumers) {
        if (c.cancelled || c.unacked >= c.prefetch || !q.ready.length) continue;
        const message = q.ready.shift()!;
        if (message.expiresAt !== null && message.expiresAt < now) {
          deadLetter(q, message, 'expired');
          progressed = true;
          continue;
        }
        c.unacked++;
        progressed = true;
        deliver(c, q, message);
      }
    }
  }

  function deliver(c: MemoryConsumer, q: MemoryQueue, message: Stored): void {
    const entry = { message, settled: false };
    c.inflight.add(entry);
    const settle = (requeue: boolean) => {
      if (entry.settled) return;
      entry.settled = true;
      c.inflight.delete(entry);
      c.unacked--;
      if (requeue) giveBack(q, message);
      schedulePump();
    };
    c.onDelivery({
      body: message.body,
      exchange: message.exchange,
      routingKey: message.routingKey,
      messageId: message.messageId,
      // As RabbitMQ's quorum queues: absent on the first delivery, then the times the message was given back.
      headers: message.deliveryCount > 0 ? { ...message.headers, [HEADERS.deliveryCount]: message.deliveryCount } : message.headers,
      redelivered: message.redelivered,
      deliveredAt: Date.now(),
      ack: () => settle(false),
      requeue: () => settle(true),
    });
  }

  /**
   * A message given back to its queue (requeued, or unacknowledged when the connection was lost). A quorum queue
   * counts it, and dead-letters it (reason delivery_limit) once it was given back more than its x-delivery-limit.
   */
  function giveBack(q: MemoryQueue, message: Stored): void {
    if (q.arguments['x-queue-type'] !== 'quorum') {
      q.ready.unshift({ ...message, redelivered: true });
      return;
    }
    const deliveryCount = message.deliveryCount + 1;
    const limit = q.arguments['x-delivery-limit'];
    if (typeof limit === 'number' && deliveryCount > limit) deadLetter(q, message, 'delivery_limit');
    else q.ready.unshift({ ...message, redelivered: true, deliveryCount });
  }

  /** To the queue's dead-letter exchange (if it has one), with the headers RabbitMQ writes: x-death and x-first-death-*. */
  function deadLetter(q: MemoryQueue, message: Stored, reason: string): void {
    const dlx = q.arguments['x-dead-letter-exchange'];
    if (typeof dlx !== 'string') return;
    route(dlx, message.routingKey, { ...message, headers: deathHeaders(message, q.name, reason), expiresAt: null, deliveryCount: 0, redelivered: false });
  }

  function route(exchange: string, routingKey: string, message: Stored): void {
    const type = exchanges.get(exchange);
    if (!type) throw new BusUnavailableError(`no exchange '${exchange}'`);
    for (const q of queues.values()) {
      const bound = q.bindings.some(
        (b) => b.exchange === exchange && (type === 'fanout' || (type === 'direct' ? b.routingKey === routingKey : topicMatches(b.routingKey, routingKey))),
      );
      if (bound) q.ready.push({ ...message });
    }
    schedulePump();
  }

  /** As RabbitMQ: a queue cannot be declared again with another type or other arguments. */
  function checkEquivalent(name: string, declared: Record<string, unknown> = {}): void {
    const existing = queues.get(name);
    if (!existing) return;
    const had = argumentsKey(existing.arguments);
    const wanted = argumentsKey(declared);
    if (had !== wanted) throw new QueueMismatchError(name, `inequivalent arguments: declared ${wanted} but the queue has ${had}`);
  }

  function assertQueue(options: QueueOptions & { name: string }): MemoryQueue {
    let q = queues.get(options.name);
    if (!q) {
      q = {
        name: options.name,
        ready: [],
        consumers: [],
        bindings: [],
        arguments: options.arguments ?? {},
        exclusive: options.exclusive ?? false,
        autoDelete: options.autoDelete ?? false,
      };
      queues.set(options.name, q);
    }
    for (const b of options.bindings) {
      if (!q.bindings.some((x) => x.exchange === b.exchange && x.routingKey === b.routingKey)) q.bindings.push(b);
    }
    return q;
  }

  /** Declares a queue as a client would: its bindings' exchanges must exist. */
  function declareQueue(options: QueueOptions): string {
    const name = options.name ?? `amq.gen-${randomUUID()}`;
    for (const b of options.bindings) if (!exchanges.has(b.exchange)) throw new BusUnavailableError(`no exchange '${b.exchange}'`);
    assertQueue({ ...options, name });
    return name;
  }

  /** Starts a subscription on its queue (declaring it first if it was subscribed with one). */
  function attach(c: MemoryConsumer): void {
    const name = typeof c.source === 'string' ? c.source : declareQueue(c.source);
    const q = queues.get(name);
    if (!q) throw new BusUnavailableError(`no queue '${name}'`);
    c.queue = q;
    q.consumers.push(c);
    c.onConsuming?.(name);
    schedulePump();
  }

  function detach(c: MemoryConsumer): void {
    const q = c.queue;
    if (!q) return;
    c.queue = null;
    q.consumers = q.consumers.filter((x) => x !== c);
    if (q.autoDelete && q.consumers.length === 0) queues.delete(q.name);
  }

  function settleHeld(h: Held, error?: Error): void {
    if (!held.delete(h)) return;
    clearTimeout(h.timer);
    clearTimeout(h.grace);
    if (error) return h.answer(error);
    try {
      route(h.exchange, h.routingKey, h.message);
      tracker.confirmed(h.ticket);
      h.answer();
    } catch (e) {
      tracker.expired(h.ticket);
      h.answer(e as Error);
    }
  }

  /** Confirms what was held once nothing holds it any more. */
  function releaseHeld(): void {
    if (stalled || tracker.isBrokerBlocked()) return;
    for (const h of [...held]) settleHeld(h);
  }

  return {
    block(reason: string) {
      if (tracker.isBrokerBlocked()) return;
      tracker.brokerBlocked(reason);
      const since = Date.now();
      for (const h of held) {
        // The caller is let go; the publish stays in the backlog until confirmed or timed out.
        if (!h.waits)
          h.grace ??= setTimeout(
            () => h.answer(new BrokerBlockedError(reason, since, `broker is blocking publishes (${reason}); no confirm within ${blockedGraceMs} ms`)),
            blockedGraceMs,
          );
      }
    },
    unblock() {
      tracker.brokerUnblocked();
      releaseHeld();
    },
    stallConfirms() {
      stalled = true;
    },
    releaseConfirms() {
      stalled = false;
      releaseHeld();
    },
    publishState: () => tracker.state(),
    setConnected(value: boolean) {
      if (value === connected) return;
      connected = value;
      if (!value) {
        tracker.reset();
        for (const h of [...held]) {
          tracker.expired(h.ticket);
          settleHeld(h, new BusUnavailableError('broker unavailable'));
        }
        // Like a lost connection: every unacknowledged delivery goes back to its queue, the consumers go (and
        // with them the auto-delete queues they consumed from), and so do the exclusive queues.
        for (const q of queues.values())
          for (const c of q.consumers) {
            for (const entry of c.inflight) {
              entry.settled = true;
              giveBack(q, entry.message);
            }
            c.inflight.clear();
            c.unacked = 0;
          }
        for (const c of subscriptions) detach(c);
        for (const q of [...queues.values()]) if (q.exclusive) queues.delete(q.name);
      } else {
        for (const [name, q] of declared) assertQueue({ ...q, name });
        for (const c of subscriptions) {
          try {
            attach(c);
          } catch {
            // Its queue is gone: it stays without deliveries, as a RabbitMQ consumer of a deleted queue does.
          }
        }
      }
      for (const l of listeners) l(value);
      schedulePump();
    },
    async declareTopology(topology: Topology) {
      for (const e of topology.exchanges) exchanges.set(e.name, e.type);
      for (const q of topology.queues) {
        checkEquivalent(q.name, q.arguments);
        assertQueue({ name: q.name, arguments: q.arguments, bindings: [] });
      }
      for (const b of topology.bindings) assertQueue({ name: b.destination, bindings: [{ exchange: b.source, routingKey: b.routingKey }] });
    },
    async publish(exchange: string, routingKey: string, body: Buffer | object, options: PublishOptions = {}) {
      if (!connected) throw new BusUnavailableError('broker unavailable');
      if (options.whenBlocked !== 'wait') {
        const blocked = tracker.blockedError();
        if (blocked) throw blocked;
      }
      const message: Stored = {
        body: encode(body),
        exchange,
        routingKey,
        messageId: options.messageId,
        headers: { ...(options.headers ?? {}) },
        redelivered: false,
        expiresAt: options.expirationMs !== undefined ? Date.now() + options.expirationMs : null,
        deliveryCount: 0,
      };
      const ticket = tracker.begin();
      if (!stalled && !tracker.isBrokerBlocked()) {
        try {
          route(exchange, routingKey, message);
        } catch (error) {
          tracker.expired(ticket);
          throw error;
        }
        tracker.confirmed(ticket);
        return;
      }
      await new Promise<void>((resolve, reject) => {
        let answered = false;
        const h: Held = {
          ticket,
          exchange,
          routingKey,
          message,
          waits: options.whenBlocked === 'wait',
          answer(error) {
            if (answered) return;
            answered = true;
            if (error) reject(error);
            else resolve();
          },
          timer: setTimeout(() => {
            tracker.expired(ticket);
            settleHeld(h, new BusUnavailableError(`no broker confirm within ${confirmTimeoutMs} ms`));
          }, confirmTimeoutMs),
        };
        held.add(h);
      });
    },
    async declareQueue(options: QueueOptions) {
      if (!connected) throw new BusUnavailableError('broker unavailable');
      const name = declareQueue(options);
      // Server-named queues die with the connection; only named ones are declared again.
      if (options.name) declared.set(name, options);
      return name;
    },
    async deleteQueue(name: string) {
      const q = queues.get(name);
      if (q)
        for (const c of q.consumers) {
          c.cancelled = true;
          c.queue = null;
          subscriptions.delete(c);
        }
      queues.delete(name);
      declared.delete(name);
    },
    async deleteExchange(name: string) {
      exchanges.delete(name);
    },
    async consume(source, onDelivery, options): Promise<Consumer> {
      if (typeof source === 'string' && !queues.has(source)) throw new BusUnavailableError(`no queue '${source}'`);
      const consumer: MemoryConsumer = {
        queue: null,
        source,
        prefetch: options.prefetch,
        unacked: 0,
        onDelivery,
        onConsuming: options.onConsuming,
        cancelled: false,
        inflight: new Set(),
      };
      // While disconnected, it starts when the connection is back.
      if (connected) attach(consumer);
      subscriptions.add(consumer);
      return {
        async cancel() {
          consumer.cancelled = true;
          subscriptions.delete(consumer);
          detach(consumer);
        },
      };
    },
    async queueDepth(queue) {
      return queues.get(queue)?.ready.length ?? 0;
    },
    isConnected: () => connected,
    onConnectionChange(listener) {
      listeners.push(listener);
    },
    async close() {
      for (const c of subscriptions) c.cancelled = true;
      subscriptions.clear();
      for (const h of [...held]) settleHeld(h, new BusUnavailableError('bus closed'));
      connected = false;
    },
  };
}

/** Arguments as comparable text; `x-queue-type: classic` is what no type means. */
function argumentsKey(args: Record<string, unknown>): string {
  const entries = Object.entries(args).filter(([key, value]) => !(key === 'x-queue-type' && value === 'classic'));
  return JSON.stringify(Object.fromEntries(entries.sort(([a], [b]) => a.localeCompare(b))));
}

interface Death {
  count: number;
  reason: string;
  queue: string;
  time: { '!': 'timestamp'; value: number };
  exchange: string;
  'routing-keys': string[];
}

/**
 * The headers RabbitMQ adds when it dead-letters a message (as amqplib decodes them): `x-death`, newest first,
 * one entry per queue and reason with a count, and `x-first-death-reason`, `-queue`, `-exchange` set once.
 */
function deathHeaders(message: Stored, queue: string, reason: string): Record<string, unknown> {
  const deaths = Array.isArray(message.headers['x-death']) ? [...(message.headers['x-death'] as Death[])] : [];
  const index = deaths.findIndex((d) => d.queue === queue && d.reason === reason);
  const earlier = index >= 0 ? deaths.splice(index, 1)[0]!.count : 0;
  const death: Death = {
    count: earlier + 1,
    reason,
    queue,
    time: { '!': 'timestamp', value: Math.floor(Date.now() / 1000) },
    exchange: message.exchange,
    'routing-keys': [message.routingKey],
  };
  return {
    ...message.headers,
    'x-death': [death, ...deaths],
    'x-first-death-reason': message.headers['x-first-death-reason'] ?? reason,
    'x-first-death-queue': message.headers['x-first-death-queue'] ?? queue,
    'x-first-death-exchange': message.headers['x-first-death-exchange'] ?? message.exchange,
  };
}

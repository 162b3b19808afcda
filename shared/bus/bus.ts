import type { Topology } from '../topology.js';

/** One message taken from a queue. Exactly one of ack / requeue must be called. */
export interface Delivery {
  body: Buffer;
  routingKey: string;
  exchange: string;
  messageId?: string;
  headers: Record<string, unknown>;
  redelivered: boolean;
  /** Consumer's clock when the delivery arrived. */
  deliveredAt: number;
  ack(): void;
  /** Give the message back to the queue (another consumer, or this one later, gets it). */
  requeue(): void;
}

export interface PublishOptions {
  messageId?: string;
  headers?: Record<string, unknown>;
  /** Default true: the broker writes it to disk. */
  persistent?: boolean;
  /** Per-message TTL in ms (control messages that are useless later). */
  expirationMs?: number;
  contentType?: string;
  /**
   * While publishing is blocked (publishState()): 'fail' (default) rejects at once with BrokerBlockedError;
   * 'wait' sends anyway and waits for the confirm, still bounded by the adapter's confirm timeout.
   */
  whenBlocked?: 'fail' | 'wait';
}

export interface ConsumeOptions {
  prefetch: number;
  /**
   * Called each time the subscription starts consuming: at first and again after every reconnect, with the
   * queue's name (a server-named queue declared with the subscription gets a new one each time). Deliveries may
   * have been missed in between when the queue died with the connection.
   */
  onConsuming?: (queue: string) => void;
}

export interface Consumer {
  cancel(): Promise<void>;
}

export interface QueueOptions {
  /** Omit for a server-named queue. */
  name?: string;
  durable?: boolean;
  exclusive?: boolean;
  autoDelete?: boolean;
  arguments?: Record<string, unknown>;
  bindings: Array<{ exchange: string; routingKey: string }>;
}

/** Raised when the broker cannot take a publish now (disconnected, no confirm in time, nack). */
export class BusUnavailableError extends Error {
  readonly code: string = 'BUS_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BusUnavailableError';
  }
}

/**
 * Raised at once, instead of publishing, while the broker blocks this bus's publishes (a memory or disk alarm,
 * or no publisher confirm for a while); also for a publish in flight when the block began that got no confirm
 * within a short grace. A BusUnavailableError, so callers that handle an unavailable broker handle this too.
 */
export class BrokerBlockedError extends BusUnavailableError {
  override readonly code = 'BROKER_BLOCKED';
  constructor(
    readonly reason: string,
    readonly since: number,
    message = `broker is blocking publishes (${reason})`,
  ) {
    super(message);
    this.name = 'BrokerBlockedError';
  }
}

/**
 * Raised by declareTopology() when the broker already holds one of its queues with another type or other
 * arguments (RabbitMQ's PRECONDITION_FAILED): a queue's type and arguments cannot change in place, so retrying
 * does not help. `detail` is the broker's own explanation. The declarations after that queue were not made.
 */
export class QueueMismatchError extends Error {
  readonly code = 'QUEUE_MISMATCH';
  constructor(
    readonly queue: string,
    readonly detail: string,
    message = `the broker holds the queue ${queue} with another type or other arguments than declared: ${detail}`,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'QueueMismatchError';
  }
}

/** Publishes sent and not yet confirmed (nor given up at the confirm timeout). */
export interface PublishBacklog {
  unconfirmed: number;
  /** Age of the oldest of them in ms; 0 when there is none. */
  oldestMs: number;
}

/**
 * Whether this bus can publish now. Blocked either because the broker said so (`cause: 'broker'`:
 * connection.blocked, e.g. reason "low on memory", until connection.unblocked or the connection is lost) or
 * because publishes go unconfirmed (`cause: 'no-confirm'`: the oldest unconfirmed publish is older than the
 * adapter's wedge threshold and no confirm arrived within it; ends with the next confirm or once those
 * publishes reached their confirm timeout). A lost connection is not "blocked": see isConnected().
 */
export type PublishState =
  { blocked: false; backlog: PublishBacklog } | { blocked: true; cause: 'broker' | 'no-confirm'; reason: string; /** epoch ms */ since: number; backlog: PublishBacklog };

/**
 * The message bus port. Adapters: RabbitMQ (amqplib, publisher confirms, automatic reconnection that
 * re-declares topology, queues and consumers) and in-memory; test/contract/bus.contract.ts runs against both.
 */
export interface Bus {
  /**
   * Declares the system topology (idempotent). Re-declared by the adapter after every reconnect. Rejects with
   * QueueMismatchError when the broker holds one of its queues with another type or arguments.
   */
  declareTopology(topology: Topology): Promise<void>;
  /**
   * Resolves once the broker confirmed the message; rejects with BusUnavailableError otherwise, and at once
   * with BrokerBlockedError while publishing is blocked (unless `whenBlocked: 'wait'`). Always settles: a publish
   * in flight when the connection is lost is sent again on the next connection (the RabbitMQ adapter, once, within
   * the confirm timeout) or rejected. A message sent again may arrive twice.
   */
  publish(exchange: string, routingKey: string, body: Buffer | object, options?: PublishOptions): Promise<void>;
  /** Declares a queue and its bindings (again after reconnects); returns its name. */
  declareQueue(options: QueueOptions): Promise<string>;
  deleteQueue(name: string): Promise<void>;
  deleteExchange(name: string): Promise<void>;
  /**
   * Consumes until cancelled, across reconnects. Unacknowledged deliveries of a lost connection are redelivered by
   * the broker. `queue` names an existing queue, or declares one (and its bindings) as part of the subscription:
   * the adapter then declares it again before consuming after every reconnect, so a queue that dies with the
   * connection (exclusive, auto-delete, server-named) keeps its subscriber. Cancelling does not delete the queue;
   * an auto-delete one goes with its last consumer. While disconnected, the subscription starts once the
   * connection is back; while connected, a subscription that cannot start (no such queue or exchange, refused)
   * rejects with BusUnavailableError and leaves nothing behind.
   */
  consume(queue: string | QueueOptions, onDelivery: (delivery: Delivery) => void, options: ConsumeOptions): Promise<Consumer>;
  /** Messages waiting in a queue (ready, not unacknowledged). */
  queueDepth(queue: string): Promise<number>;
  isConnected(): boolean;
  /** Blocked or not, and the unconfirmed backlog; cheap, for readiness checks and metrics. */
  publishState(): PublishState;
  /** Called with true/false when the connection comes and goes. */
  onConnectionChange(listener: (connected: boolean) => void): void;
  close(): Promise<void>;
}

export function encode(body: Buffer | object): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
}

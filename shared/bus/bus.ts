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
}

export interface ConsumeOptions {
  prefetch: number;
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
  readonly code = 'BUS_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BusUnavailableError';
  }
}

/**
 * The message bus port. Adapters: RabbitMQ (amqplib, publisher confirms, automatic reconnection that
 * re-declares topology, queues and consumers) and in-memory; test/contract/bus.contract.ts runs against both.
 */
export interface Bus {
  /** Declares the system topology (idempotent). Re-declared by the adapter after every reconnect. */
  declareTopology(topology: Topology): Promise<void>;
  /** Resolves once the broker confirmed the message; rejects with BusUnavailableError otherwise. */
  publish(exchange: string, routingKey: string, body: Buffer | object, options?: PublishOptions): Promise<void>;
  /** Declares a queue and its bindings (again after reconnects); returns its name. */
  declareQueue(options: QueueOptions): Promise<string>;
  deleteQueue(name: string): Promise<void>;
  deleteExchange(name: string): Promise<void>;
  /** Consumes until cancelled, across reconnects. Unacknowledged deliveries of a lost connection are redelivered by the broker. */
  consume(queue: string, onDelivery: (delivery: Delivery) => void, options: ConsumeOptions): Promise<Consumer>;
  /** Messages waiting in a queue (ready, not unacknowledged). */
  queueDepth(queue: string): Promise<number>;
  isConnected(): boolean;
  /** Called with true/false when the connection comes and goes. */
  onConnectionChange(listener: (connected: boolean) => void): void;
  close(): Promise<void>;
}

export function encode(body: Buffer | object): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
}

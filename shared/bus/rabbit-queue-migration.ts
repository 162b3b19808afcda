import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type Options } from 'amqplib';
import { splitUrlList } from '../config.js';
import type { Logger } from '../logger.js';
import type { BindingSpec, Topology } from '../topology.js';
import { topicMatches } from './topic-match.js';

/** Raised when a queue cannot be migrated now; the message says why and what to do. Nothing is lost by stopping. */
export class QueueMigrationError extends Error {
  readonly code = 'QUEUE_MIGRATION';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QueueMigrationError';
  }
}

export interface QueueMigrationOptions {
  /** The broker: one URL or a cluster's nodes (an array, or a comma-separated list); the first that answers is used. */
  url: string | readonly string[];
  /** The topology to end with; `queue` must be one of its queues. */
  topology: Topology;
  /** The queue to give the type and arguments the topology declares. */
  queue: string;
  log: Logger;
  /** How many messages are moved at once (unacknowledged, awaiting their confirm); default 500. */
  window?: number;
  /** How often the source queue is checked for being empty while moving; default 200 ms. */
  pollMs?: number;
}

export interface QueueMigrationResult {
  /** False when the queue already had the declared type and arguments (nothing was done but declaring). */
  migrated: boolean;
  /** Messages moved out of the old queue into the holding queue. */
  moved: number;
  /** Messages moved out of the holding queue into the new one: those moved before and those published meanwhile. */
  held: number;
}

/**
 * Gives an existing queue the type and arguments the topology declares (e.g. a classic queue that must become a
 * quorum queue), keeping every message and its routing key: RabbitMQ cannot change a queue's type in place. The
 * queue's consumers must be stopped; publishers may go on. Steps, each safe to repeat (a run that stopped half
 * way is resumed by running it again):
 *
 * 1. A holding queue `<queue>.migrating` (durable) gets the queue's bindings, and the queue loses them: from then
 *    on what is published waits in the holding queue.
 * 2. The queue's messages are published again to their exchange with their routing key, properties and headers
 *    (so they reach the holding queue), each removed only once the broker confirmed its copy.
 * 3. The empty, unused queue is deleted and declared again as the topology says, with its bindings.
 * 4. The holding queue loses its bindings, its messages are moved the same way into the new queue, and it is
 *    deleted.
 *
 * A message published during the two moments a binding moves may arrive twice (delivery is at least once
 * anyway); the order of messages is kept except that those published during the migration may come before the
 * older ones moved last. The throughput is that of publisher confirms, a few thousand messages a second.
 */
export async function migrateQueue(options: QueueMigrationOptions): Promise<QueueMigrationResult> {
  const { log, topology, queue } = options;
  const spec = topology.queues.find((q) => q.name === queue);
  if (!spec) throw new QueueMigrationError(`the topology declares no queue ${queue}`);
  const bindings = topology.bindings.filter((b) => b.destination === queue);
  const holding = `${queue}.migrating`;
  const holdingBindings = bindings.map((b) => ({ ...b, destination: holding }));
  const connection = await connectFirst(options.url);
  connection.on('error', () => undefined);
  try {
    /** Runs `fn` on a channel of its own: a refusal (404, 406) closes only that channel. */
    const onChannel = async <T>(fn: (channel: Channel) => Promise<T>): Promise<T> => {
      const channel = await connection.createChannel();
      channel.on('error', () => undefined);
      try {
        return await fn(channel);
      } finally {
        // A channel the broker closed already needs no closing.
        await channel.close().catch(() => undefined);
      }
    };
    const exists = (name: string) =>
      onChannel((ch) => ch.checkQueue(name)).then(
        () => true,
        (error: { code?: unknown }) => {
          if (error.code === 404) return false;
          throw error;
        },
      );
    /** Declared as the topology wants it: true; the broker holds it otherwise (PRECONDITION_FAILED): false. */
    const asDeclared = () =>
      onChannel((ch) => ch.assertQueue(queue, { durable: spec.durable, arguments: spec.arguments })).then(
        () => true,
        (error: { code?: unknown }) => {
          if (error.code === 406) return false;
          throw error;
        },
      );

    let moved = 0;
    const holdingExisted = await exists(holding);
    if (!(await asDeclared())) {
      const { consumerCount, messageCount } = await onChannel((ch) => ch.checkQueue(queue));
      if (consumerCount > 0) {
        throw new QueueMigrationError(
          `${consumerCount} consumer(s) still read ${queue}: stop every process that consumes it (every ingest) first, then run this again. ` +
            `Publishers may go on; nothing was changed.`,
        );
      }
      log.info(`Migrating ${queue} (${messageCount} messages ready) to the declared type and arguments; publishes wait in ${holding} meanwhile`);
      await onChannel(async (ch) => {
        for (const e of topology.exchanges) await ch.assertExchange(e.name, e.type, { durable: e.durable });
        // Classic: it is deleted only once empty (if-empty), which quorum queues do not implement.
        await ch.assertQueue(holding, { durable: true });
        for (const b of holdingBindings) await ch.bindQueue(b.destination, b.source, b.routingKey);
        for (const b of bindings) await ch.unbindQueue(queue, b.source, b.routingKey);
      });
      moved = await move(connection, queue, bindings, options);
      log.info(`Moved ${moved} messages out of ${queue}`);
      await onChannel((ch) => ch.deleteQueue(queue, { ifEmpty: true, ifUnused: true })).catch((error: Error) => {
        throw new QueueMigrationError(`${queue} could not be deleted (not empty, or consumed again): ${error.message}. Run this again.`, { cause: error });
      });
      log.info(`Deleted the old ${queue}`);
    } else if (!holdingExisted) {
      log.info(`${queue} already has the declared type and arguments: nothing to migrate`);
      await declareTopology(connection, topology);
      return { migrated: false, moved: 0, held: 0 };
    } else {
      log.info(`${queue} already has the declared type and arguments; finishing an interrupted migration from ${holding}`);
    }

    await declareTopology(connection, topology);
    await onChannel(async (ch) => {
      for (const b of holdingBindings) await ch.unbindQueue(b.destination, b.source, b.routingKey);
    });
    const held = await move(connection, holding, holdingBindings, options);
    await onChannel((ch) => ch.deleteQueue(holding, { ifEmpty: true })).catch((error: Error) => {
      throw new QueueMigrationError(`${holding} could not be deleted: ${error.message}. Run this again.`, { cause: error });
    });
    log.info(
      `Declared ${queue} again with its bindings; moved the ${held} messages of ${holding} into it (${Math.max(0, held - moved)} published meanwhile) and deleted ${holding}`,
    );
    return { migrated: true, moved, held };
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** Tries the nodes in order; the first that answers is used. */
async function connectFirst(url: string | readonly string[]): Promise<ChannelModel> {
  const urls = typeof url === 'string' ? splitUrlList(url) : url.flatMap(splitUrlList);
  let last: unknown = new Error('no broker URL given');
  for (const u of urls) {
    try {
      return await amqp.connect(u, { clientProperties: { connection_name: 'queue migration' } });
    } catch (error) {
      last = error;
    }
  }
  throw new QueueMigrationError(`no broker node answered: ${(last as Error).message}`, { cause: last });
}

async function declareTopology(connection: ChannelModel, topology: Topology): Promise<void> {
  const ch = await connection.createChannel();
  ch.on('error', () => undefined);
  try {
    for (const e of topology.exchanges) await ch.assertExchange(e.name, e.type, { durable: e.durable });
    for (const q of topology.queues) await ch.assertQueue(q.name, { durable: q.durable, arguments: q.arguments });
    for (const b of topology.bindings) await ch.bindQueue(b.destination, b.source, b.routingKey);
  } finally {
    await ch.close().catch(() => undefined);
  }
}

/**
 * Moves every message of `from` (whose consumers are stopped and which no binding feeds any more) back through
 * the exchange it was routed from, with its routing key: each is acknowledged only once its copy is confirmed.
 * A message the queue's bindings would not route again (published some other way) stops the move, left in place.
 */
async function move(connection: ChannelModel, from: string, bindings: BindingSpec[], options: QueueMigrationOptions): Promise<number> {
  let moved = 0;
  for (;;) {
    moved += await movePass(connection, from, bindings, options);
    // Anything still there (delivered to the pass but not settled when it ended, and so given back) takes another pass.
    const check = await connection.createChannel();
    check.on('error', () => undefined);
    const { messageCount } = await check.checkQueue(from).finally(() => check.close().catch(() => undefined));
    if (messageCount === 0) return moved;
  }
}

async function movePass(connection: ChannelModel, from: string, bindings: BindingSpec[], options: QueueMigrationOptions): Promise<number> {
  const types = new Map(options.topology.exchanges.map((e) => [e.name, e.type]));
  const routes = (exchange: string, key: string) =>
    bindings.some(
      (b) => b.source === exchange && (types.get(exchange) === 'fanout' || (types.get(exchange) === 'direct' ? b.routingKey === key : topicMatches(b.routingKey, key))),
    );
  const pollMs = options.pollMs ?? 200;
  const pause = () => new Promise((resolve) => setTimeout(resolve, pollMs));
  const channel: ConfirmChannel = await connection.createConfirmChannel();
  // Set from the channel's callbacks, so typed wide rather than narrowed to null.
  let failure = null as Error | null;
  let ending = false;
  channel.on('error', (error: Error) => (failure ??= error));
  channel.on('close', () => {
    if (!ending) failure ??= new QueueMigrationError(`the broker channel closed while moving messages out of ${from}; run this again`);
  });
  await channel.prefetch(options.window ?? 500);
  let inFlight = 0;
  let moved = 0;
  const { consumerTag } = await channel.consume(from, (msg: ConsumeMessage | null) => {
    if (!msg) return;
    const { exchange, routingKey } = msg.fields;
    if (failure || !routes(exchange, routingKey)) {
      failure ??= new QueueMigrationError(
        `a message in ${from} (exchange "${exchange}", routing key "${routingKey}") was not routed there by its bindings and cannot be moved with its routing key; ` +
          `move or remove it by hand, then run this again`,
      );
      channel.nack(msg, false, true);
      return;
    }
    inFlight++;
    channel.publish(exchange, routingKey, msg.content, republished(msg), (err: unknown) => {
      inFlight--;
      if (err) {
        failure ??= new QueueMigrationError(`the broker did not take a moved message: ${String((err as Error)?.message ?? err)}`, { cause: err });
        channel.nack(msg, false, true);
        return;
      }
      channel.ack(msg);
      moved++;
    });
  });
  const check = await connection.createChannel();
  check.on('error', () => undefined);
  try {
    for (;;) {
      await pause();
      if (failure) break;
      const { messageCount } = await check.checkQueue(from);
      if (messageCount === 0 && inFlight === 0) break;
    }
  } finally {
    await check.close().catch(() => undefined);
    // Deliveries sent before the cancel reach the callback before it resolves; wait for their confirms too.
    await channel.cancel(consumerTag).catch(() => undefined);
    while (inFlight > 0 && !failure) await pause();
    // After the acks on this channel, so the broker has them all before anything deletes the queue.
    ending = true;
    await channel.close().catch(() => undefined);
  }
  if (failure) throw failure;
  return moved;
}

/** A delivered message's properties as a publish takes them; the broker's own header and user-id are left out. */
function republished(msg: ConsumeMessage): Options.Publish {
  const p = msg.properties;
  const headers = { ...((p.headers ?? {}) as Record<string, unknown>) };
  delete headers['x-delivery-count'];
  return {
    contentType: p.contentType as string | undefined,
    contentEncoding: p.contentEncoding as string | undefined,
    headers,
    deliveryMode: p.deliveryMode as number | undefined,
    priority: p.priority as number | undefined,
    correlationId: p.correlationId as string | undefined,
    replyTo: p.replyTo as string | undefined,
    expiration: p.expiration as string | undefined,
    messageId: p.messageId as string | undefined,
    timestamp: p.timestamp as number | undefined,
    type: p.type as string | undefined,
    appId: p.appId as string | undefined,
  };
}

import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type Options, type RecoveringChannelModel } from 'amqplib';
import { splitUrlList } from '../config.js';
import type { Logger } from '../logger.js';
import { createOutageLog } from '../outage-log.js';
import type { Topology } from '../topology.js';
import { createPublishTracker } from './publish-tracker.js';
import {
  BrokerBlockedError,
  BusUnavailableError,
  encode,
  QueueMismatchError,
  type Bus,
  type ConsumeOptions,
  type Delivery,
  type PublishOptions,
  type QueueOptions,
} from './bus.js';

export interface RabbitBusOptions {
  /**
   * The broker: one URL, or the nodes of a cluster (an array, or one string with a comma-separated list), tried
   * in order; after a lost connection the next node in the list is tried first (round-robin).
   */
  url: string | readonly string[];
  /** A connection attempt (TCP and AMQP handshake) not done within this time fails, and the next node is tried (default 5 s). */
  connectTimeoutMs?: number;
  log: Logger;
  /** A publish not confirmed within this time fails (default 5 s). */
  confirmTimeoutMs?: number;
  /** Reject connect() after this many failed first attempts instead of waiting forever (default: wait forever). */
  initialMaxRetries?: number;
  /** Connection name shown in the management UI, as `<name> (publish)` and `<name> (consume)`. */
  name?: string;
  /** Longest wait between reconnect attempts (default 5 s). */
  maxReconnectDelayMs?: number;
  /**
   * Publishing counts as blocked ('no-confirm') once the oldest unconfirmed publish is this old and no confirm
   * arrived within it either (default: half the confirm timeout, at most 2 s).
   */
  wedgedAfterMs?: number;
  /** When the broker blocks the connection, publishes already in flight get this long to be confirmed (default 500 ms). */
  blockedGraceMs?: number;
  /**
   * A publish channel that has confirmed nothing for this long while publishes wait for their confirm, on a
   * connection the broker does not block, is closed and replaced by a fresh one on the same connection, its
   * unconfirmed publishes sent again there (default: the confirm timeout).
   */
  replaceSilentChannelAfterMs?: number;
}

interface InFlight {
  /** Sent with whenBlocked: 'wait': the broker's block does not cut it short. */
  waits: boolean;
  settle(error?: Error): void;
  cutShort(error: () => Error, afterMs: number): void;
  /** Publishes it (again) on this channel. */
  send(channel: ConfirmChannel): void;
}

interface ConsumerEntry {
  /** The queue's name, or the queue to declare before each start of the subscription. */
  source: string | QueueOptions;
  onDelivery: (delivery: Delivery) => void;
  options: ConsumeOptions;
  channel: Channel | null;
  tag: string | null;
  cancelled: boolean;
}

/** One of the bus's two connections. */
interface Link {
  role: 'publish' | 'consume';
  /** The current connection (null before the first); `up` says whether it is usable. */
  model: ChannelModel | null;
  up: boolean;
  /** The broker node (index into the node list) this connection uses or tries next. */
  node: number;
}

/** One broker node of RABBITMQ_URL, as amqplib's connection object takes it. */
interface BrokerNode {
  /** host:port, for log lines (never credentials). */
  label: string;
  target: Options.Connect;
}

/**
 * RabbitMQ adapter: publisher confirms, and amqplib's recovery to reconnect with back-off.
 *
 * Publishing and consuming use two connections, as RabbitMQ advises: during a memory or disk alarm the broker
 * blocks a connection once it publishes and then reads nothing more from it, so acknowledgements sent on it
 * would wait for the alarm to clear and its consumers would stall at their prefetch. The consuming connection
 * never publishes, so it is never blocked; it also declares the queues (an exclusive queue can only be used on
 * the connection that declared it), deletes, and reads queue depths. Each connection reconnects on its own;
 * after every (re)connect the topology is declared again on it, and on the consuming one the declared queues
 * and the consumers too, each consumer declaring the queue it was subscribed with (if any) just before.
 * Deliveries of a lost channel are redelivered by the broker, so their late acks are ignored. `isConnected()`
 * is true while both connections are up; `publishState()` is the publishing one's.
 *
 * A cluster's nodes: amqplib's recovery reconnects (with its back-off) to one target it was given; the bus gives
 * each connection a target object of its own and points it at the next node of the list whenever an attempt
 * fails or a connection is lost, so the reconnect goes round the list. A publish that was in flight when its
 * channel closed (a lost connection, or a channel error) is published once more on the next channel if that
 * opens before its confirm timeout, and rejected with BusUnavailableError when it cannot be: after a second
 * loss, when the first reconnect attempt fails, at the confirm timeout, or when the bus closes. None is left
 * unanswered. A message re-sent this way may reach its queue twice (the lost connection may have delivered it
 * without its confirm reaching us): delivery is at least once, as everywhere (messageId and eventId unchanged).
 */
export async function createRabbitBus(options: RabbitBusOptions): Promise<Bus> {
  const log = options.log;
  const confirmTimeoutMs = options.confirmTimeoutMs ?? 5000;
  const blockedGraceMs = options.blockedGraceMs ?? 500;
  const tracker = createPublishTracker({ wedgedAfterMs: options.wedgedAfterMs ?? Math.min(2000, Math.max(1, Math.floor(confirmTimeoutMs / 2))), log });
  const inFlight = new Set<InFlight>();
  /** In flight when their channel closed: published again on the next publish channel. */
  const interrupted: InFlight[] = [];
  const nodes = brokerNodes(options.url);
  const publishing: Link = { role: 'publish', model: null, up: false, node: 0 };
  const consuming: Link = { role: 'consume', model: null, up: false, node: 0 };
  let publishChannel: ConfirmChannel | null = null;
  /** On the consuming connection: declarations, deletions, queue depths. Opened when first needed. */
  let admin: { model: ChannelModel; channel: Promise<Channel> } | null = null;
  let connected = false;
  let closing = false;
  let topologyToDeclare: Topology | null = null;
  const queues = new Map<string, QueueOptions>();
  const consumers = new Set<ConsumerEntry>();
  const listeners: Array<(connected: boolean) => void> = [];
  // Either connection's outage is one outage: logged when the first goes, ended once both are back.
  const brokerOutage = createOutageLog({ log, what: 'Broker connection lost', recoveredLine: (seconds) => `Broker connection restored after ${seconds} s` });
  let reportedDeclareFailure = false;

  /** Connected while both connections are up; an outage of either is logged once, and its end once both are back. */
  function updateConnected(): void {
    const value = publishing.up && consuming.up;
    if (connected === value) return;
    connected = value;
    if (value) brokerOutage.recovered();
    for (const l of listeners) l(value);
  }

  /**
   * Declares the topology (and, on the consuming connection, the named queues) again after a (re)connect, each
   * on a throwaway channel: a refused declaration (an agent's broker user may publish but not configure shared
   * exchanges) closes only that channel, is logged once, and does not stop the connection from being used.
   */
  async function declareAll(m: ChannelModel, withQueues: boolean): Promise<void> {
    const steps: Array<[string, (ch: Channel) => Promise<void>]> = [];
    if (topologyToDeclare) {
      const t = topologyToDeclare;
      steps.push(['topology', (ch) => declare(ch, t)]);
    }
    if (withQueues) {
      for (const [name, q] of queues) {
        steps.push([
          `queue ${name}`,
          async (ch) => {
            await declareQueueOn(ch, { ...q, name });
          },
        ]);
      }
    }
    for (const [what, step] of steps) {
      const channel = await m.createChannel();
      channel.on('error', () => undefined);
      try {
        await step(channel);
        // A channel the broker closed already needs no closing.
        await channel.close().catch(() => undefined);
      } catch (error) {
        if (!reportedDeclareFailure) log.warn(`Broker refused to declare ${what}, continuing with what exists: ${(error as Error).message}`);
        reportedDeclareFailure = true;
      }
    }
  }

  /**
   * Replaces a publish channel that has stopped confirming while its connection lives and is not blocked. A
   * quorum queue's publisher is tied to its channel: after a leader change, a channel that published while no
   * leader was known can go on without confirms for a minute or more, although the queue has a leader again and a
   * new channel is confirmed at once. A fresh channel asks for the current leader; the old one's unconfirmed
   * publishes are sent again on it (once, as after any closed channel). With no quorum at all, each new channel
   * waits like the old one, and is replaced at the same pace: one channel per interval, not a storm.
   */
  const replaceSilentChannelAfterMs = options.replaceSilentChannelAfterMs ?? confirmTimeoutMs;
  let replacedChannels = 0;
  /**
   * Since when every answer was a nack (null after an ack): a channel whose quorum-queue publisher started while the
   * queue had no leader can also go on refusing everything after a leader is elected, as a silent one goes on
   * waiting. Replaced the same way; a new channel that is refused too is replaced at the same pace.
   */
  let nackedSince: number | null = null;
  const silentChannelCheck = setInterval(
    () => {
      const channel = publishChannel;
      const m = publishing.model;
      if (!channel || !m || !publishing.up || closing || tracker.isBrokerBlocked()) return;
      const state = tracker.state();
      const silent = state.blocked && state.cause === 'no-confirm' && Date.now() - state.since >= replaceSilentChannelAfterMs;
      const refusing = nackedSince !== null && Date.now() - nackedSince >= replaceSilentChannelAfterMs;
      if (!silent && !refusing) return;
      replacedChannels++;
      if (replacedChannels === 1 || replacedChannels % 10 === 0) {
        const why =
          silent && state.blocked
            ? `confirmed nothing for ${Math.round((Date.now() - state.since) / 1000)} s (${state.reason})`
            : `nacked every publish for ${Math.round((Date.now() - nackedSince!) / 1000)} s`;
        log.warn(`Broker publish channel ${why}: replacing it`, { replacedChannels });
      }
      nackedSince = null;
      publishChannel = null;
      // Fresh for the new channel: its backlog is what gets sent on it.
      tracker.reset('publish channel replaced');
      openPublishChannel(m)
        .catch(() => undefined)
        .finally(() => {
          // Its unconfirmed publishes fail with 'channel closed' and wait in `interrupted` for the next channel.
          void channel.close().then(
            () => (publishChannel ? resendInterrupted(publishChannel) : undefined),
            () => (publishChannel ? resendInterrupted(publishChannel) : undefined),
          );
        });
    },
    Math.max(100, Math.min(1000, Math.floor(replaceSilentChannelAfterMs / 5))),
  );
  silentChannelCheck.unref();

  async function openPublishChannel(m: ChannelModel): Promise<void> {
    const channel = await m.createConfirmChannel();
    channel.on('error', (error: Error) => channelErrors.set(channel, error));
    channel.on('close', () => {
      if (publishChannel !== channel) return;
      publishChannel = null;
      // A channel-level error (not a lost connection): open a fresh one on the same connection.
      // If that fails too, the connection is going: the reconnect's setup opens the channel again.
      if (!closing && publishing.model === m && publishing.up) openPublishChannel(m).catch(() => undefined);
    });
    // The exchanges it publishes to, in case this connection is back before the consuming one declared them.
    await declareAll(m, false);
    publishChannel = channel;
    resendInterrupted(channel);
  }

  /** Why a publish channel closed: the broker's channel error (e.g. 404 no exchange), if it sent one. */
  const channelErrors = new WeakMap<ConfirmChannel, Error>();

  function resendInterrupted(channel: ConfirmChannel): void {
    const waiting = interrupted.splice(0).filter((entry) => inFlight.has(entry));
    if (!waiting.length) return;
    log.info(`Re-sending ${waiting.length} publishes left unconfirmed by a closed broker channel`, { count: waiting.length });
    for (const entry of waiting) entry.send(channel);
  }

  /** Rejects the publishes waiting to be sent again (no new channel came for them). */
  function failInterrupted(reason: string): void {
    for (const entry of interrupted.splice(0)) entry.settle(new BusUnavailableError(`broker connection lost before the confirm; not sent again: ${reason}`));
  }

  /** The consuming connection's channel for declarations, deletions and queue depths (reopened after an error closed it). */
  function adminChannel(): Promise<Channel> {
    const m = consuming.model;
    if (!m || !consuming.up) return Promise.reject(new BusUnavailableError('broker unavailable'));
    if (admin?.model !== m) {
      const opening: Promise<Channel> = m.createChannel().then((channel) => {
        channel.on('error', () => undefined);
        channel.on('close', () => {
          if (admin?.channel === opening) admin = null;
        });
        return channel;
      });
      opening.catch(() => {
        if (admin?.channel === opening) admin = null;
      });
      admin = { model: m, channel: opening };
    }
    return admin.channel;
  }

  async function startConsumer(m: ChannelModel, entry: ConsumerEntry): Promise<void> {
    if (entry.cancelled) return;
    const channel = await m.createChannel();
    channel.on('error', () => undefined);
    entry.channel = channel;
    channel.on('close', () => {
      if (entry.channel !== channel) return;
      entry.channel = null;
      entry.tag = null;
      if (!closing && !entry.cancelled && consuming.model === m && consuming.up) {
        // A failed restart is retried by the next close, or by the reconnect's setup, which re-subscribes all.
        setTimeout(() => void startConsumer(m, entry).catch(() => undefined), 500).unref();
      }
    });
    await channel.prefetch(entry.options.prefetch);
    // On this connection, the consuming one: an exclusive queue can only be used on the connection that declared it.
    const queue = typeof entry.source === 'string' ? entry.source : await declareQueueOn(channel, entry.source);
    const reply = await channel.consume(queue, (msg: ConsumeMessage | null) => {
      if (!msg) return; // cancelled by the server (queue deleted): the close handler restarts it
      entry.onDelivery(toDelivery(channel, entry, msg));
    });
    entry.tag = reply.consumerTag;
    entry.options.onConsuming?.(queue);
  }

  function toDelivery(channel: Channel, entry: ConsumerEntry, msg: ConsumeMessage): Delivery {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      // After a reconnect this channel is gone and the broker redelivers the message: nothing to do.
      if (entry.channel !== channel) return;
      try {
        fn();
      } catch {
        /* channel closed in between: the message will be redelivered */
      }
    };
    return {
      body: msg.content,
      routingKey: msg.fields.routingKey,
      exchange: msg.fields.exchange,
      messageId: msg.properties.messageId,
      headers: (msg.properties.headers ?? {}) as Record<string, unknown>,
      redelivered: msg.fields.redelivered,
      deliveredAt: Date.now(),
      ack: () => settle(() => channel.ack(msg)),
      requeue: () => settle(() => channel.nack(msg, false, true)),
    };
  }

  async function open(link: Link, setup: (m: ChannelModel) => Promise<void>, onDown: () => void): Promise<RecoveringChannelModel> {
    // amqplib's recovery reconnects to this object; pointing it at the next node makes the next attempt go there.
    const target: Options.Connect = { ...nodes[link.node]!.target };
    const moveOn = () => {
      if (nodes.length === 1) return;
      link.node = (link.node + 1) % nodes.length;
      Object.assign(target, nodes[link.node]!.target);
    };
    const connection = await amqp.connect(target, {
      clientProperties: { connection_name: `${options.name ?? 'orchestrator'} (${link.role})` },
      timeout: options.connectTimeoutMs ?? 5000,
      recovery: {
        initialDelay: 200,
        maxDelay: options.maxReconnectDelayMs ?? 5000,
        factor: 2,
        jitter: 0.2,
        // Returned at once, so that the listeners below (moving on to the next node) see the first attempts too.
        waitForConnect: false,
        initialMaxRetries: options.initialMaxRetries,
        async setup(m: ChannelModel) {
          link.model = m;
          m.on('error', () => undefined);
          await setup(m);
          link.up = true;
          if (nodes.length > 1) log.info(`Broker ${link.role} connection to ${nodes[link.node]!.label}`);
          updateConnected();
        },
      },
    });
    connection.on('error', () => undefined);
    connection.on('disconnect', (err: Error | undefined) => {
      const lost = nodes[link.node]!.label;
      link.up = false;
      moveOn();
      onDown();
      updateConnected();
      // Once per outage, not per connection or reconnect attempt.
      if (!closing) brokerOutage.failed(err ?? 'closed', `Broker connection lost (${link.role} to ${lost}), reconnecting`);
    });
    connection.on('connect-failed', (err: Error) => {
      const tried = nodes[link.node]!.label;
      moveOn();
      if (link.role === 'publish') failInterrupted(`${tried}: ${err.message}`);
      brokerOutage.failed(err, `Broker not reachable (${tried}), retrying`);
    });
    if (options.initialMaxRetries !== undefined) await connection.waitForConnect();
    return connection;
  }

  const opened = await Promise.allSettled([
    open(publishing, openPublishChannel, () => {
      tracker.reset();
      publishChannel = null;
    }),
    open(
      consuming,
      async (m) => {
        await declareAll(m, true);
        for (const entry of consumers) await startConsumer(m, entry);
      },
      () => {
        admin = null;
        for (const entry of consumers) {
          entry.channel = null;
          entry.tag = null;
        }
      },
    ),
  ]);
  const failed = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed) {
    // Undoing a half-made connect: the error that matters is the one thrown below.
    for (const o of opened) if (o.status === 'fulfilled') await o.value.close().catch(() => undefined);
    throw failed.reason;
  }
  const [publishConnection, consumeConnection] = opened.map((o) => (o as PromiseFulfilledResult<RecoveringChannelModel>).value) as [RecoveringChannelModel, RecoveringChannelModel];

  // Sent by the broker to a publishing connection during a memory or disk alarm; it then reads nothing more from
  // the socket (confirms of what it read before still come). The consuming connection goes on.
  publishConnection.on('blocked', (reason: string) => {
    if (tracker.isBrokerBlocked()) return;
    tracker.brokerBlocked(reason);
    const since = Date.now();
    for (const entry of inFlight) {
      if (!entry.waits)
        entry.cutShort(() => new BrokerBlockedError(reason, since, `broker is blocking publishes (${reason}); no confirm within ${blockedGraceMs} ms`), blockedGraceMs);
    }
  });
  publishConnection.on('unblocked', () => tracker.brokerUnblocked());

  async function withChannel<T>(what: string, run: (channel: Channel) => Promise<T>): Promise<T> {
    const channel = await adminChannel().catch((error: Error) => {
      throw error instanceof BusUnavailableError
        ? new BusUnavailableError(`broker unavailable (${what})`)
        : new BusUnavailableError(`broker ${what} failed: ${error.message}`, { cause: error });
    });
    try {
      return await run(channel);
    } catch (error) {
      throw new BusUnavailableError(`broker ${what} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  return {
    async declareTopology(topology) {
      topologyToDeclare = topology;
      const m = consuming.model;
      if (!m || !consuming.up) return; // declared by the setup of the coming connection
      // A throwaway channel on the connection that is never blocked: a refusal (missing configure permission) closes only it.
      const channel = await m.createChannel().catch((error: Error) => {
        throw new BusUnavailableError(`broker declare failed: ${error.message}`, { cause: error });
      });
      channel.on('error', () => undefined);
      try {
        await declare(channel, topology);
        // A channel the broker closed already needs no closing.
        await channel.close().catch(() => undefined);
      } catch (error) {
        if (error instanceof QueueMismatchError) throw error;
        throw new BusUnavailableError(`broker declare failed: ${(error as Error).message}`, { cause: error });
      }
    },
    publish(exchange, routingKey, body, opts: PublishOptions = {}) {
      const channel = publishChannel;
      if (!channel || !publishing.up) return Promise.reject(new BusUnavailableError('broker unavailable'));
      if (opts.whenBlocked !== 'wait') {
        const blocked = tracker.blockedError();
        if (blocked) return Promise.reject(blocked);
      }
      const content = encode(body);
      const properties = {
        persistent: opts.persistent ?? true,
        messageId: opts.messageId,
        headers: opts.headers,
        expiration: opts.expirationMs !== undefined ? String(Math.max(0, Math.round(opts.expirationMs))) : undefined,
        contentType: opts.contentType ?? 'application/json',
        timestamp: Math.floor(Date.now() / 1000),
      };
      return new Promise<void>((resolve, reject) => {
        let graceTimer: NodeJS.Timeout | undefined;
        let sends = 0;
        const entry: InFlight = {
          waits: opts.whenBlocked === 'wait',
          settle(error) {
            if (!inFlight.delete(entry)) return;
            clearTimeout(timer);
            clearTimeout(graceTimer);
            if (error) reject(error);
            else resolve();
          },
          cutShort(error, afterMs) {
            graceTimer ??= setTimeout(() => entry.settle(error()), afterMs);
          },
          send(on) {
            sends++;
            const ticket = tracker.begin();
            // Runs even after a grace cut the caller loose: until then the publish is in the unconfirmed backlog.
            const expiry = setTimeout(() => tracker.expired(ticket), Math.max(0, deadline - Date.now()));
            try {
              on.publish(exchange, routingKey, content, properties, (err: unknown) => {
                clearTimeout(expiry);
                if (!err) {
                  tracker.confirmed(ticket);
                  nackedSince = null;
                  entry.settle();
                  return;
                }
                const message = String((err as Error)?.message ?? err);
                // An ack or a nack is an answer from the broker; 'channel closed' (amqplib, on close) is not.
                if (/nack/i.test(message)) {
                  tracker.confirmed(ticket);
                  if (on === publishChannel) nackedSince ??= Date.now();
                  entry.settle(new BusUnavailableError(`broker refused the message: ${message}`, { cause: err }));
                  return;
                }
                tracker.expired(ticket);
                const cause = channelErrors.get(on) ?? (err as Error);
                if (sends === 1 && !closing && inFlight.has(entry)) interrupted.push(entry);
                else entry.settle(new BusUnavailableError(`broker channel closed before the confirm: ${cause.message}`, { cause }));
              });
            } catch (error) {
              clearTimeout(expiry);
              tracker.expired(ticket);
              entry.settle(new BusUnavailableError(`publish failed: ${(error as Error).message}`, { cause: error }));
            }
          },
        };
        const deadline = Date.now() + confirmTimeoutMs;
        const timer = setTimeout(() => entry.settle(new BusUnavailableError(`no broker confirm within ${confirmTimeoutMs} ms`)), confirmTimeoutMs);
        inFlight.add(entry);
        entry.send(channel);
      });
    },
    async declareQueue(q) {
      const name = await withChannel('declareQueue', (ch) => declareQueueOn(ch, q));
      // Server-named queues die with the connection; only named ones are re-declared.
      if (q.name) queues.set(name, q);
      return name;
    },
    async deleteQueue(name) {
      queues.delete(name);
      await withChannel('deleteQueue', (ch) => ch.deleteQueue(name).then(() => undefined));
    },
    async deleteExchange(name) {
      await withChannel('deleteExchange', (ch) => ch.deleteExchange(name).then(() => undefined));
    },
    async consume(source, onDelivery, consumeOptions) {
      const entry: ConsumerEntry = { source, onDelivery, options: consumeOptions, channel: null, tag: null, cancelled: false };
      consumers.add(entry);
      if (consuming.model && consuming.up) {
        try {
          await startConsumer(consuming.model, entry);
        } catch (error) {
          // Nothing left behind: no restart by the channel's close handler, no re-subscription after a reconnect.
          entry.cancelled = true;
          consumers.delete(entry);
          const channel = entry.channel;
          entry.channel = null;
          await channel?.close().catch(() => undefined);
          const what = typeof source === 'string' ? source : (source.name ?? 'a server-named queue');
          throw new BusUnavailableError(`broker consume of ${what} failed: ${(error as Error).message}`, { cause: error });
        }
      }
      return {
        async cancel() {
          entry.cancelled = true;
          consumers.delete(entry);
          const channel = entry.channel;
          entry.channel = null;
          // The consumer is cancelled either way: a channel already gone took it along.
          if (channel) await channel.close().catch(() => undefined);
        },
      };
    },
    async queueDepth(queue) {
      return withChannel('checkQueue', async (ch) => (await ch.checkQueue(queue)).messageCount);
    },
    isConnected: () => connected,
    publishState: () => tracker.state(),
    onConnectionChange(listener) {
      listeners.push(listener);
    },
    async close() {
      closing = true;
      clearInterval(silentChannelCheck);
      failInterrupted('the bus closed');
      for (const entry of consumers) {
        entry.cancelled = true;
        const ch = entry.channel;
        entry.channel = null;
        // Closing the bus: a channel already gone needs no closing.
        if (ch) await ch.close().catch(() => undefined);
      }
      consumers.clear();
      // Closing the bus: a connection already lost needs no closing.
      await Promise.all([publishConnection.close().catch(() => undefined), consumeConnection.close().catch(() => undefined)]);
      publishing.up = false;
      consuming.up = false;
      updateConnected();
    },
  };
}

/** Declares a queue and binds it; returns its name (the server's, for a server-named queue). */
async function declareQueueOn(channel: Channel, q: QueueOptions): Promise<string> {
  const reply = await channel.assertQueue(q.name ?? '', {
    durable: q.durable ?? false,
    exclusive: q.exclusive ?? false,
    autoDelete: q.autoDelete ?? false,
    arguments: q.arguments,
  });
  for (const b of q.bindings) await channel.bindQueue(reply.queue, b.exchange, b.routingKey);
  return reply.queue;
}

async function declare(channel: Channel, topology: Topology): Promise<void> {
  for (const e of topology.exchanges) await channel.assertExchange(e.name, e.type, { durable: e.durable });
  for (const q of topology.queues) {
    await channel.assertQueue(q.name, { durable: q.durable, arguments: q.arguments }).catch((error: unknown) => {
      // PRECONDITION_FAILED: the queue exists with another type or other arguments, which cannot change in place.
      if ((error as { code?: unknown }).code !== 406) throw error;
      const text = (error as Error).message;
      const detail = /PRECONDITION_FAILED - (.*?)"?$/.exec(text)?.[1] ?? text;
      throw new QueueMismatchError(q.name, detail, undefined, { cause: error });
    });
  }
  for (const b of topology.bindings) await channel.bindQueue(b.destination, b.source, b.routingKey);
}

/** The nodes of RABBITMQ_URL as amqplib's connection objects, with the client's defaults (heartbeat 10 s) filled in. */
function brokerNodes(url: string | readonly string[]): BrokerNode[] {
  const list = typeof url === 'string' ? splitUrlList(url) : url.flatMap(splitUrlList);
  if (!list.length) throw new Error('no broker URL given');
  return list.map((text) => {
    const parsed = new URL(text);
    const query = parsed.searchParams;
    const number = (name: string) => (query.has(name) ? Number(query.get(name)) : undefined);
    const host = parsed.hostname.replace(/^\[|\]$/g, '');
    const port = Number(parsed.port) || (parsed.protocol === 'amqps:' ? 5671 : 5672);
    // As amqplib reads a URL string: guest/guest only when neither is given; a %-escaped vhost, unescaped by amqplib.
    const credentials = parsed.username || parsed.password ? { username: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) } : {};
    return {
      label: `${host.includes(':') ? `[${host}]` : host}:${port}`,
      target: {
        protocol: parsed.protocol.replace(/:$/, ''),
        hostname: host,
        port,
        username: undefined,
        password: undefined,
        ...credentials,
        vhost: parsed.pathname.replace(/^\//, '') || undefined,
        // Broker heartbeats notice a dead peer within ~2 intervals instead of the OS TCP timeout.
        heartbeat: number('heartbeat') ?? 10,
        frameMax: number('frameMax'),
        channelMax: number('channelMax'),
        maxFrameSize: number('maxFrameSize'),
        locale: query.get('locale') ?? undefined,
      },
    };
  });
}

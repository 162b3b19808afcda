import type { Bus, Consumer, Delivery } from '../../shared/bus/bus.js';
import type { Logger } from '../../shared/logger.js';
import type { ReregisterControlMessage, SettingsControlMessage } from '../../shared/messages/index.js';
import { createOutageLog } from '../../shared/outage-log.js';
import { retry } from '../../shared/retry.js';
import { ROUTING, type BrokerNames } from '../../shared/topology.js';
import { reasonOf } from './transport.js';

export interface ControlListener {
  /** Subscribes now if the broker is connected, else as soon as it is; the bus keeps the subscription across reconnects. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

type Schemas = typeof import('../../shared/messages/index.js');

/**
 * The shared schemas (zod) are loaded with the first control message, not at start: building them costs the
 * agent's process several MiB of memory (docs/benchmarks.md, agent), and most agents never get a control message.
 */
let loadedSchemas: Schemas | null = null;
let loadingSchemas: Promise<Schemas> | null = null;

export function controlQueueName(names: BrokerNames, nodeId: string): string {
  return `${names.exchanges.agentControl}.${nodeId}`;
}

export interface ControlListenerDeps {
  bus: Bus;
  names: BrokerNames;
  nodeId: string;
  log: Logger;
  onReregister: (message: ReregisterControlMessage) => void;
  /** The pace to follow (heartbeat-pace.ts). */
  onSettings: (message: SettingsControlMessage) => void;
}

/** Receives the orchestrator's messages for this node (control.reregister, control.settings) on a queue of its own. */
export function createControlListener(deps: ControlListenerDeps): ControlListener {
  const { bus, names, nodeId, log } = deps;
  let consumer: Consumer | null = null;

  function onDelivery(delivery: Delivery): void {
    delivery.ack(); // a request is only useful now; there is nothing to retry
    if (loadedSchemas) return handle(delivery, loadedSchemas.controlMessageSchema);
    loadingSchemas ??= import('../../shared/messages/index.js').then((schemas) => (loadedSchemas = schemas));
    // Both outcomes are handled here; the delivery was acknowledged already.
    void loadingSchemas.then(
      ({ controlMessageSchema }) => handle(delivery, controlMessageSchema),
      (error: unknown) => log.warn(`Ignoring a control message: cannot load its schema (${reasonOf(error)})`),
    );
  }

  function handle(delivery: Delivery, controlMessageSchema: Schemas['controlMessageSchema']): void {
    let parsed;
    try {
      parsed = controlMessageSchema.safeParse(JSON.parse(delivery.body.toString('utf8')));
    } catch (error) {
      log.warn(`Ignoring a control message that is not JSON: ${reasonOf(error)}`);
      return;
    }
    if (!parsed.success) return log.warn(`Ignoring an invalid control message: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
    const message = parsed.data;
    if (message.nodeId !== nodeId) return log.warn(`Ignoring a control message for ${message.nodeId}`);
    if (message.type === 'control.settings') deps.onSettings(message);
    else deps.onReregister(message);
  }

  /**
   * Exclusive and auto-deleted, it lives as long as this agent's connection: the bus declares it again, and
   * resubscribes, after every reconnect. A subscription the broker refuses while connected is tried again.
   */
  const queue = {
    name: controlQueueName(names, nodeId),
    durable: false,
    exclusive: true,
    autoDelete: true,
    bindings: [{ exchange: names.exchanges.agentControl, routingKey: ROUTING.control(nodeId) }],
  };
  const stopping = new AbortController();
  let subscribing: Promise<void> | null = null;
  let firstAttemptDone: () => void = () => undefined;
  const firstAttempt = new Promise<void>((resolve) => (firstAttemptDone = resolve));

  async function subscribe(): Promise<void> {
    try {
      const started = await retry(() => bus.consume(queue, onDelivery, { prefetch: 10 }), {
        firstDelayMs: 1000,
        maxDelayMs: 30_000,
        signal: stopping.signal,
        outage: createOutageLog({ log, what: 'Cannot subscribe to control messages, retrying' }),
        onFailure: () => firstAttemptDone(),
      });
      if (stopping.signal.aborted) await started.cancel();
      else consumer = started;
    } catch {
      // Only when stopped while retrying: nothing to subscribe any more.
    } finally {
      firstAttemptDone();
    }
  }

  return {
    async start() {
      subscribing ??= subscribe();
      // Subscribed when it resolves, unless the broker refused: that goes on being retried in the background.
      await Promise.race([subscribing, firstAttempt]);
    },
    async stop() {
      stopping.abort();
      await subscribing;
      const c = consumer;
      consumer = null;
      // A consumer whose channel is gone has nothing left to cancel.
      await c?.cancel().catch(() => undefined);
    },
  };
}

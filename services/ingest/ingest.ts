import { randomUUID } from 'node:crypto';
import { QueueMismatchError, type Bus, type Consumer, type Delivery } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import type { OrchestratorConfig } from '../../shared/config.js';
import { createEventPublisher } from '../../shared/events/event-publisher.js';
import type { Logger } from '../../shared/logger.js';
import { createFleetPaceReader } from '../../shared/fleet-pace-reader.js';
import type { Metrics } from '../../shared/metrics.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { brokerNames, topology, type BrokerNames } from '../../shared/topology.js';
import type { Authenticator } from './authenticator.js';
import { createBatcher } from './batcher.js';
import { createBatchProcessor } from './process-batch.js';
import { deliveryKey } from './parse-delivery.js';
import { createStoreRetry } from './store-retry.js';
import { createFailureTracker } from './failure-tracker.js';

export interface IngestDeps {
  bus: Bus;
  store: NodeStore;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  config: Pick<OrchestratorConfig, 'timeoutMs' | 'brokerNamespace' | 'ingest' | 'log' | 'historyPoints' | 'historyResolutionMs'> & Partial<Pick<OrchestratorConfig, 'pace'>>;
  authenticator?: Authenticator;
  instanceId?: string;
  /** Test hook, see process-batch.ts. */
  afterStore?: () => Promise<void>;
}

/**
 * Batches an ingest process runs at once. A batch's rounds (refresh write, read back, read, write, acknowledgements,
 * events) run one after another, and the store waits while the ingest acknowledges and the ingest while the store
 * writes: with batches side by side one's store work fills the other's gaps. Several ingest processes write the
 * same store safely (conditional writes), and so do several batches of one; the store bounds the commands they
 * send at once (COMMANDS_IN_FLIGHT in shared/store/mongo-node-store.ts), so more batches do not lengthen its queue.
 */
const BATCHES_IN_FLIGHT = 4;

/** The ingest: consumes agent messages in batches and makes them durable in the node store. */
export function createIngest(deps: IngestDeps) {
  const { bus, store, log, clock, metrics, config } = deps;
  const names = brokerNames(config.brokerNamespace);
  const instanceId = deps.instanceId ?? randomUUID();
  let stopping = false;
  // Aborted on stop: store retries and back-offs end their waits at once.
  const stopController = new AbortController();
  let consumer: Consumer | null = null;
  // Healthy while it consumes and its store answers (for readiness); whether heartbeats get recorded end to end
  // is what the canaries prove (docs/architecture.md).
  let consuming = false;
  let storeHealthy = true;
  const showHealth = () => {
    metrics.ready.set({ component: 'ingest' }, consuming && storeHealthy ? 1 : 0);
    metrics.storeUp.set({ component: 'ingest' }, storeHealthy ? 1 : 0);
  };
  const retry = createStoreRetry({
    log,
    onHealthChange: (healthy) => {
      storeHealthy = healthy;
      showHealth();
    },
    signal: stopController.signal,
  });
  const events = createEventPublisher({ bus, store, exchange: names.exchanges.nodeEvents, log, metrics });
  const processBatch = createBatchProcessor({
    bus,
    store,
    names,
    events,
    log,
    clock,
    metrics,
    timeoutMs: config.timeoutMs,
    history: { points: config.historyPoints, resolutionMs: config.historyResolutionMs },
    heartbeatLogLevel: config.log.heartbeatLevel,
    retry,
    authenticator: deps.authenticator,
    afterStore: deps.afterStore,
    // The pace agents are told over AMQP (docs/architecture.md, "The heartbeat pace"); none without settings.
    ...(config.pace ? { fleetPace: createFleetPaceReader({ store, clock, settings: config.pace }) } : {}),
  });
  const declared = topology(names);
  const deliveryLimit = declared.queues.find((q) => q.name === names.queues.ingest)?.arguments['x-delivery-limit'];
  const failures = createFailureTracker({
    log,
    metrics,
    deliveryLimit: typeof deliveryLimit === 'number' ? deliveryLimit : null,
    deadLetterQueue: names.queues.deadLetter,
    signal: stopController.signal,
  });
  const batcher = createBatcher<Delivery>({
    maxSize: config.ingest.batchSize,
    // Behind the broker, take what waits (group commit), up to a share of the prefetch, so that the prefetch holds
    // the nodes of BATCHES_IN_FLIGHT batches: see batcher.ts.
    maxBatch: Math.ceil(config.ingest.prefetch / BATCHES_IN_FLIGHT),
    concurrency: BATCHES_IN_FLIGHT,
    // A node's messages go to one batch at a time, in their order: a heartbeat never overtakes its node's
    // registration (nor a shutdown its heartbeat) in a batch that runs beside it.
    keyOf: deliveryKey,
    maxWaitMs: config.ingest.flushIntervalMs,
    flush: async (batch) => {
      // Behind: more than one batch besides this one waits, or runs in the other batches (now, or when it started).
      const others = () => batcher.outstanding() - batch.length;
      const othersAtStart = others();
      const behind = () => batch.length > config.ingest.batchSize || Math.max(othersAtStart, others()) >= config.ingest.batchSize;
      try {
        await processBatch(batch, { behind });
        failures.succeeded();
      } catch (error) {
        if (stopping) {
          for (const d of batch) d.requeue();
          return;
        }
        // Unexpected (a bug, not an outage): nothing was acknowledged. Back off, then give the messages
        // back; the broker dead-letters one that keeps failing (the queue's delivery limit), so it cannot block the queue.
        await failures.failed(error, batch);
      }
    },
    onError: (error) => log.error(`Ingest batch error: ${(error as Error).message}`),
  });

  bus.onConnectionChange((connected) => {
    consuming = connected && consumer !== null;
    showHealth();
  });

  return {
    instanceId,
    isHealthy: () => consuming && storeHealthy,
    async start(): Promise<void> {
      await declareIngestTopology(bus, names);
      consumer = await bus.consume(names.queues.ingest, (delivery) => batcher.add(delivery), { prefetch: config.ingest.prefetch });
      consuming = bus.isConnected();
      showHealth();
      log.info(
        `Ingest ${instanceId} consuming ${names.queues.ingest} (batch ${config.ingest.batchSize}, flush ${config.ingest.flushIntervalMs} ms, prefetch ${config.ingest.prefetch})`,
      );
    },
    /** Finishes the batches in progress, stops consuming; unacknowledged messages return to the queue. */
    async stop(): Promise<void> {
      stopping = true;
      stopController.abort();
      const dropped = await batcher.stop();
      for (const d of dropped) d.requeue();
      await consumer?.cancel();
      consumer = null;
      consuming = false;
      showHealth();
    },
  };
}

export type Ingest = ReturnType<typeof createIngest>;

/**
 * Declares the topology as the ingest needs it. A broker that holds the ingest queue with another type or other
 * arguments (the classic queue of earlier versions) stops the start with what to do: a queue's type cannot
 * change in place, so it has to be migrated once (docs/operations.md, "Migrating the ingest queue").
 */
export async function declareIngestTopology(bus: Bus, names: BrokerNames): Promise<void> {
  const declared = topology(names);
  try {
    await bus.declareTopology(declared);
  } catch (error) {
    if (!(error instanceof QueueMismatchError) || error.queue !== names.queues.ingest) throw error;
    const wanted = declared.queues.find((q) => q.name === names.queues.ingest)!;
    throw new QueueMismatchError(
      error.queue,
      error.detail,
      `The broker holds the queue ${error.queue} with another type or other arguments than this version declares ` +
        `(a quorum queue, x-delivery-limit ${String(wanted.arguments['x-delivery-limit'])}); the broker says: ${error.detail}. ` +
        `A queue's type cannot change in place: migrate it once, keeping its messages, with every ingest stopped: ` +
        `\`npm run ingest -- --migrate-queue\` (or \`node dist/services/ingest/main.js --migrate-queue\`), with this ingest's ` +
        `RABBITMQ_URL and BROKER_NAMESPACE; then start the ingests again. See docs/operations.md, "Migrating the ingest queue".`,
      { cause: error },
    );
  }
}

import { randomUUID } from 'node:crypto';
import type { Bus, Consumer, Delivery } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import type { OrchestratorConfig } from '../../shared/config.js';
import { createEventPublisher } from '../../shared/events/event-publisher.js';
import type { Logger } from '../../shared/logger.js';
import type { Metrics } from '../../shared/metrics.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { brokerNames, topology } from '../../shared/topology.js';
import type { Authenticator } from './authenticator.js';
import { createBatcher } from './batcher.js';
import { createLivenessReporter } from './liveness.js';
import { createBatchProcessor } from './process-batch.js';
import { createStoreRetry } from './store-retry.js';
import { createFailureTracker } from './failure-tracker.js';

export interface IngestDeps {
  bus: Bus;
  store: NodeStore;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  config: Pick<OrchestratorConfig, 'timeoutMs' | 'brokerNamespace' | 'ingest' | 'log' | 'historyPoints' | 'historyResolutionMs'>;
  authenticator?: Authenticator;
  instanceId?: string;
  /** Test hook, see process-batch.ts. */
  afterStore?: () => Promise<void>;
}

/** The ingest: consumes agent messages in batches and makes them durable in the node store. */
export function createIngest(deps: IngestDeps) {
  const { bus, store, log, clock, metrics, config } = deps;
  const names = brokerNames(config.brokerNamespace);
  const instanceId = deps.instanceId ?? randomUUID();
  let stopping = false;
  let consumer: Consumer | null = null;
  const inFlight = new Set<Delivery>();
  const liveness = createLivenessReporter({
    store,
    clock,
    instanceId,
    intervalMs: config.ingest.livenessIntervalMs,
    oldestInFlight: () => {
      let oldest: number | null = null;
      for (const d of inFlight) if (oldest === null || d.deliveredAt < oldest) oldest = d.deliveredAt;
      return oldest;
    },
  });
  const retry = createStoreRetry({ log, onHealthChange: (healthy) => liveness.setStoreHealthy(healthy), isStopping: () => stopping });
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
    noteLag: (ms) => liveness.noteLag(ms),
  });
  const failures = createFailureTracker({ log, deadLetterAfter: 5 });
  const batcher = createBatcher<Delivery>({
    maxSize: config.ingest.batchSize,
    maxWaitMs: config.ingest.flushIntervalMs,
    flush: async (batch) => {
      try {
        await processBatch(batch);
        failures.succeeded();
      } catch (error) {
        if (stopping) {
          for (const d of batch) d.requeue();
          return;
        }
        // Unexpected (a bug, not an outage): nothing was acknowledged. Back off, then give the messages
        // back; one that keeps failing is dead-lettered so it cannot block the queue.
        await failures.failed(error, batch, (d, reason) => processBatch.deadLetter(d, reason));
      }
    },
    onError: (error) => log.error(`Ingest batch error: ${(error as Error).message}`),
  });

  /** Keeps a delivery in `inFlight` until it is settled, for the lag the liveness record reports. */
  function track(delivery: Delivery): Delivery {
    inFlight.add(delivery);
    const settle = (fn: () => void) => () => {
      inFlight.delete(delivery);
      fn();
    };
    return { ...delivery, ack: settle(delivery.ack), requeue: settle(delivery.requeue) };
  }
  bus.onConnectionChange((connected) => {
    // A lost channel takes its unacknowledged deliveries with it: the broker redelivers them.
    if (!connected) inFlight.clear();
  });

  bus.onConnectionChange((connected) => liveness.setConsuming(connected && consumer !== null));

  return {
    instanceId,
    isHealthy: () => liveness.isHealthy(),
    async start(): Promise<void> {
      await bus.declareTopology(topology(names));
      consumer = await bus.consume(names.queues.ingest, (delivery) => batcher.add(track(delivery)), { prefetch: config.ingest.prefetch });
      liveness.setConsuming(bus.isConnected());
      liveness.start();
      log.info(`Ingest ${instanceId} consuming ${names.queues.ingest} (batch ${config.ingest.batchSize}, flush ${config.ingest.flushIntervalMs} ms, prefetch ${config.ingest.prefetch})`);
    },
    /** Finishes the batch in progress, stops consuming; unacknowledged messages return to the queue. */
    async stop(): Promise<void> {
      stopping = true;
      const dropped = await batcher.stop();
      for (const d of dropped) d.requeue();
      await consumer?.cancel();
      consumer = null;
      await liveness.stop();
    },
  };
}

export type Ingest = ReturnType<typeof createIngest>;

import { connectBus, connectStore } from '../../shared/backends.js';
import { systemClock } from '../../shared/clock.js';
import { loadOrchestratorConfig, type OrchestratorConfig } from '../../shared/config.js';
import { failStart, stopOnSignals } from '../../shared/lifecycle.js';
import { createLogger, type Logger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { serveMetrics } from '../../shared/metrics-server.js';
import { brokerNames, topology } from '../../shared/topology.js';
import { startIngest } from './start-ingest.js';

async function main(): Promise<void> {
  const config = loadOrchestratorConfig(process.env);
  const log = createLogger(config.log).child({ component: 'ingest' });
  // One-time: the ingest queue of an earlier version (a classic queue) becomes the declared quorum queue.
  if (process.argv.includes('--migrate-queue')) return migrateIngestQueue(config, log);
  const metrics = createMetrics({ defaultMetrics: true });
  const store = await connectStore(config, log);
  const bus = await connectBus(config, log, 'ingest');
  const ingest = await startIngest(config, { bus, store, log, clock: systemClock, metrics });
  const server = await serveMetrics(metrics, config.metricsPort);
  stopOnSignals(log, async () => {
    await ingest.stop();
    server?.close();
    await bus.close();
    await store.close();
  });
}

/** `--migrate-queue`: docs/operations.md, "Migrating the ingest queue". Stops the process with the error when it cannot. */
async function migrateIngestQueue(config: OrchestratorConfig, log: Logger): Promise<void> {
  const { migrateQueue } = await import('../../shared/bus/rabbit-queue-migration.js');
  const names = brokerNames(config.brokerNamespace);
  const result = await migrateQueue({ url: config.rabbitmqUrl, topology: topology(names), queue: names.queues.ingest, log });
  log.info(
    result.migrated
      ? `${names.queues.ingest} is now declared as this version declares it, with all ${result.held} messages: start the ingests`
      : `${names.queues.ingest} needed no migration`,
  );
}

main().catch(failStart);

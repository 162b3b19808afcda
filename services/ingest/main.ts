import { connectBus, connectStore } from '../../shared/backends.js';
import { systemClock } from '../../shared/clock.js';
import { loadOrchestratorConfig } from '../../shared/config.js';
import { failStart, stopOnSignals } from '../../shared/lifecycle.js';
import { createLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { serveMetrics } from '../../shared/metrics-server.js';
import { migrateIngestQueue } from './migrate-queue.js';
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

main().catch(failStart);

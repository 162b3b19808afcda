import { connectBus, connectRateLimiter, connectStore } from '../../shared/backends.js';
import { QueueMismatchError } from '../../shared/bus/bus.js';
import { systemClock } from '../../shared/clock.js';
import { loadOrchestratorConfig } from '../../shared/config.js';
import { failStart, stopOnSignals } from '../../shared/lifecycle.js';
import { createLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { brokerNames, topology } from '../../shared/topology.js';
import { startApi } from './start-api.js';

async function main(): Promise<void> {
  const config = loadOrchestratorConfig(process.env);
  const log = createLogger(config.log).child({ component: 'api' });
  const metrics = createMetrics({ defaultMetrics: true });
  const store = await connectStore(config, log);
  const bus = await connectBus(config, log, 'api');
  await bus.declareTopology(topology(brokerNames(config.brokerNamespace))).catch((error: unknown) => {
    // The api only publishes to the exchanges: a queue still to be migrated (the ingest's) is the ingest's to report.
    if (!(error instanceof QueueMismatchError)) throw error;
    log.warn(`Broker topology not fully declared, continuing with what exists: ${error.message}`);
  });
  const rateLimiter = connectRateLimiter(config, log);
  const api = await startApi(config, { bus, store, clock: systemClock, log, metrics, rateLimiter });
  stopOnSignals(log, async () => {
    await api.stop();
    await rateLimiter.close();
    await bus.close();
    await store.close();
  });
}

main().catch(failStart);

import { connectBus, connectScheduler, connectStore } from '../../shared/backends.js';
import { systemClock } from '../../shared/clock.js';
import { loadOrchestratorConfig } from '../../shared/config.js';
import { failStart, stopOnSignals } from '../../shared/lifecycle.js';
import { createLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { serveMetrics } from '../../shared/metrics-server.js';
import { startSweeper } from './start-sweeper.js';

async function main(): Promise<void> {
  const config = loadOrchestratorConfig(process.env);
  const log = createLogger(config.log).child({ component: 'sweeper' });
  const metrics = createMetrics({ defaultMetrics: true });
  const store = await connectStore(config, log);
  const bus = await connectBus(config, log, 'sweeper');
  const scheduler = await connectScheduler(config, log);
  const sweeper = await startSweeper(config, { bus, store, scheduler, log, clock: systemClock, metrics });
  const server = await serveMetrics(metrics, config.metricsPort);
  stopOnSignals(log, async () => {
    await sweeper.stop();
    server?.close();
    await bus.close();
    await store.close();
  });
}

main().catch(failStart);

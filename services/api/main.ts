import { connectBus, connectStore } from '../../shared/backends.js';
import { systemClock } from '../../shared/clock.js';
import { loadOrchestratorConfig } from '../../shared/config.js';
import { failStart, stopOnSignals } from '../../shared/lifecycle.js';
import { createLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { brokerNames, topology } from '../../shared/topology.js';
import { createApp } from './app.js';
import { createApiGuard } from './auth/api-guard.js';
import { mountDashboard, type Dashboard } from './dashboard/dashboard-routes.js';

async function main(): Promise<void> {
  const config = loadOrchestratorConfig(process.env);
  const log = createLogger(config.log).child({ component: 'api' });
  const metrics = createMetrics({ defaultMetrics: true });
  const names = brokerNames(config.brokerNamespace);
  const store = await connectStore(config, log);
  const bus = await connectBus(config, log, 'api');
  await bus.declareTopology(topology(names));
  let dashboard: Dashboard | undefined;
  const guard = createApiGuard({ config, store, clock: systemClock, log });
  const app = createApp({
    bus,
    store,
    names,
    log,
    clock: systemClock,
    metrics,
    guard,
    canaryIntervalMs: config.canaryIntervalMs,
    timeoutMs: config.timeoutMs,
    extend: (a) => {
      dashboard = mountDashboard(a, { store, bus, names, log, clock: systemClock, authorize: (req) => guard.operator(req) });
    },
  });
  const server = app.listen(config.port, () =>
    log.info(
      `api listening on http://0.0.0.0:${config.port} (dashboard at /); agent authentication ${config.auth.mode}, ` +
        `operator token ${config.auth.operatorToken ? 'required' : 'not set'}, at most ${config.rateLimit.perNodePerMinute} agent requests per node per minute`,
    ),
  );
  server.keepAliveTimeout = 65_000;
  stopOnSignals(log, async () => {
    // Open dashboard streams would keep server.close() waiting.
    await dashboard?.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await app.stopBackground();
    await bus.close();
    await store.close();
  });
}

main().catch(failStart);

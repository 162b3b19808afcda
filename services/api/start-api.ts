import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Bus } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import type { OrchestratorConfig } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import type { Metrics } from '../../shared/metrics.js';
import type { RateLimiter } from '../../shared/rate-limit/rate-limiter.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { createFleetPaceReader } from '../../shared/fleet-pace-reader.js';
import { brokerNames } from '../../shared/topology.js';
import { createApp, type ReadinessCheck } from './app.js';
import { createApiGuard } from './auth/api-guard.js';
import { mountDashboard, type Dashboard } from './dashboard/dashboard-routes.js';

export interface ApiAdapters {
  bus: Bus;
  store: NodeStore;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  /**
   * The per-node rate limit: on Redis for the services (one budget shared by every api replica), in memory in the
   * all-in-one without REDIS_URL and in unit tests. The caller closes it after stop(), like the bus and the store.
   */
  rateLimiter: RateLimiter;
  /** Extra dependencies /readyz reports on (the all-in-one's scheduler). */
  readiness?: ReadinessCheck[];
}

export interface RunningApi {
  /** http://127.0.0.1:<port> */
  url: string;
  server: Server;
  /** Ends the dashboard's streams, closes the server, then stops the api's background work (its canary). */
  stop(): Promise<void>;
}

/**
 * Starts the api as every deployment runs it (the api process, the all-in-one, the test harness): the guard
 * (authentication, rate limit), the routes, the dashboard, the server on `listen` (default: PORT on all
 * interfaces). The bus's topology is the caller's to declare.
 */
export async function startApi(config: OrchestratorConfig, adapters: ApiAdapters, listen: { port?: number; host?: string } = {}): Promise<RunningApi> {
  const { bus, store, clock, log, metrics, rateLimiter } = adapters;
  const names = brokerNames(config.brokerNamespace);
  const guard = createApiGuard({ config, store, rateLimiter, clock, log });
  let dashboard: Dashboard | undefined;
  // The fleet's heartbeat pace, read from the store (the sweeper computes it), for agents' answers and the dashboard.
  const fleetPace = createFleetPaceReader({ store, clock, settings: config.pace });
  const app = createApp({
    bus,
    store,
    names,
    log,
    clock,
    metrics,
    guard,
    readiness: adapters.readiness,
    canaryIntervalMs: config.canaryIntervalMs,
    timeoutMs: config.timeoutMs,
    pace: config.pace,
    fleetPace,
    extend: (a) => {
      dashboard = mountDashboard(a, { store, bus, names, log, clock, authorize: (req) => guard.operator(req), fleetPace, timeoutMs: config.timeoutMs });
    },
  });
  let server: Server;
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const s = listen.host ? app.listen(listen.port ?? config.port, listen.host) : app.listen(listen.port ?? config.port);
      s.once('listening', () => resolve(s));
      s.once('error', reject);
    });
  } catch (error) {
    await dashboard?.close();
    await app.stopBackground();
    throw error;
  }
  // Longer than the usual load balancer's idle timeout, so that it, not the api, closes idle connections.
  server.keepAliveTimeout = 65_000;
  const port = (server.address() as AddressInfo).port;
  log.info(
    `api listening on http://${listen.host ?? '0.0.0.0'}:${port} (dashboard at /); agent authentication ${config.auth.mode}, ` +
      `operator token ${config.auth.operatorToken ? 'required' : 'not set'}, at most ${config.rateLimit.perNodePerMinute} agent requests per node per minute ` +
      `(${rateLimiter.shared ? 'shared by the api replicas through Redis' : 'counted in this process'})`,
  );
  let stopping: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    stop: () =>
      (stopping ??= (async () => {
        // Open dashboard streams would keep server.close() waiting.
        await dashboard?.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        });
        await app.stopBackground();
      })()),
  };
}

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import type { Bus } from '../../shared/bus/bus.js';
import { systemClock } from '../../shared/clock.js';
import { loadAgentConfig, loadOrchestratorConfig, type AgentConfig, type OrchestratorConfig } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { brokerNames, topology } from '../../shared/topology.js';
import type { Agent } from '../agent/agent.js';
import { buildAgent } from '../agent/build-agent.js';
import { createApp } from '../api/app.js';
import { createApiGuard } from '../api/auth/api-guard.js';
import { mountDashboard, type Dashboard } from '../api/dashboard/dashboard-routes.js';
import { createCredentialAuthenticator } from '../ingest/auth/credential-authenticator.js';
import { createIngest, type Ingest } from '../ingest/ingest.js';
import { createSweeper } from '../sweeper/sweeper.js';
import { selectBackends, type Backends } from './backend-selection.js';

type Env = Record<string, string | undefined>;
type Sweeper = ReturnType<typeof createSweeper>;

export interface AllInOneOptions {
  /** The whole environment (main.ts passes .env.development overlaid with process.env). */
  env: Env;
  log: Logger;
  /** Where a relative STATE_FILE is resolved (default: the working directory). */
  cwd?: string;
}

export interface AllInOne {
  /** Base URL of the api and dashboard, e.g. http://127.0.0.1:8080 (no trailing slash). */
  url: string;
  config: Readonly<OrchestratorConfig>;
  agentConfig: Readonly<AgentConfig>;
  backends: Backends;
  /** The local agent; `agent.stop()` announces its shutdown like SIGTERM to a separate agent would. */
  agent: Agent;
  /** Agent first (shutdown announced), then api, ingest, sweeper, adapters. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * With AUTH_MODE=on the local agent keeps its credential beside the state file (or in .cache/state), so that
 * a restart does not lock its node id out; AGENT_CREDENTIAL_FILE overrides that.
 */
function localCredentialFile(env: Env, stateFile: string | null, cwd = process.cwd()): string {
  return env.AGENT_CREDENTIAL_FILE?.trim() || join(stateFile ? dirname(stateFile) : resolve(cwd, '.cache/state'), 'local-agent.credential');
}

/** At stop, how long the embedded bus may take to hand its last messages to the store. */
const EMBEDDED_DRAIN_MS = 3000;

/**
 * The orchestrator (api with dashboard, ingest, sweeper) and one local agent in this process.
 * Each backend is embedded unless its URL is set (see backend-selection.ts).
 *
 * The local agent is given the orchestrator's own bus (its close() made a no-op, since the bus is shared):
 * it then takes the broker path that production agents with RABBITMQ_URL take (confirmed publish, control
 * messages for re-registration), it works before the HTTP port answers, and with the embedded bus nothing
 * leaves the process. Its HTTP fallback points at this process's own api.
 */
export async function startAllInOne(options: AllInOneOptions): Promise<AllInOne> {
  const { env, log } = options;
  const config = loadOrchestratorConfig(env);
  // Validated now, so that bad agent settings stop the start before anything is opened.
  loadAgentConfig(env);
  const names = brokerNames(config.brokerNamespace);
  const metrics = createMetrics({ defaultMetrics: true });
  const backends = await selectBackends(env, config, log, options.cwd);
  const { bus, store, scheduler } = backends;
  log.info(`Backends: ${backends.describe()}`);
  let ingest: Ingest | undefined;
  let sweeper: Sweeper | undefined;
  let server: Server | undefined;
  let dashboard: Dashboard | undefined;
  let agent: Agent | undefined;
  let stopApiBackground: (() => Promise<void>) | undefined;

  async function drainEmbeddedBus(): Promise<void> {
    if (backends.kinds.bus !== 'embedded') return;
    const deadline = Date.now() + EMBEDDED_DRAIN_MS;
    while (Date.now() < deadline) {
      if ((await bus.queueDepth(names.queues.ingest)) === 0 && backends.unsettled() === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    log.warn(`Embedded bus not drained within ${EMBEDDED_DRAIN_MS} ms: its last messages are lost`);
  }

  /** Stops whatever has started, in order; also used when the start fails half way. */
  async function shutdown(): Promise<void> {
    await agent?.stop();
    // Open dashboard streams would keep server.close() waiting.
    await dashboard?.close();
    if (server) {
      const s = server;
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeIdleConnections();
      });
    }
    await stopApiBackground?.();
    // Whatever the api and the agent handed to the bus reaches the store before the ingest stops.
    if (ingest) await drainEmbeddedBus();
    await ingest?.stop();
    await sweeper?.stop();
    await bus.close();
    await store.close();
  }

  try {
    await bus.declareTopology(topology(names));
    // Agent authentication exactly as the separate services do it (docs/security.md); .env.development turns it off.
    const authenticator = config.auth.mode === 'on' ? createCredentialAuthenticator({ joinToken: config.auth.joinToken! }) : undefined;
    ingest = createIngest({ bus, store, log: log.child({ component: 'ingest' }), clock: systemClock, metrics, config, authenticator });
    await ingest.start();
    sweeper = createSweeper({ bus, store, scheduler, log: log.child({ component: 'sweeper' }), clock: systemClock, metrics, config });
    await sweeper.start();

    const apiLog = log.child({ component: 'api' });
    const guard = createApiGuard({ config, store, clock: systemClock, log: apiLog });
    const app = createApp({
      bus,
      store,
      names,
      log: apiLog,
      clock: systemClock,
      metrics,
      guard,
      canaryIntervalMs: config.canaryIntervalMs,
      timeoutMs: config.timeoutMs,
      readiness: [{ name: backends.kinds.scheduler === 'redis' ? 'redis' : 'scheduler', check: () => scheduler.isReady() }],
      extend: (a) => {
        dashboard = mountDashboard(a, { store, bus, names, log: apiLog, clock: systemClock, authorize: (req) => guard.operator(req) });
      },
    });
    stopApiBackground = () => app.stopBackground();
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(config.port);
      s.once('listening', () => resolve(s));
      s.once('error', reject);
    });
    server.keepAliveTimeout = 65_000;
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const agentConfig = loadAgentConfig({ ...env, ORCHESTRATOR_URL: url, AGENT_CREDENTIAL_FILE: localCredentialFile(env, backends.stateFile, options.cwd) });
    const sharedBus: Bus = { ...bus, close: async () => undefined };
    const localAgent = await buildAgent(agentConfig, { log: log.child({ component: 'agent' }), bus: sharedBus });
    agent = localAgent;
    await localAgent.start();

    let stopping: Promise<void> | null = null;
    return {
      url,
      config,
      agentConfig,
      backends,
      agent: localAgent,
      stop: () => (stopping ??= shutdown()),
    };
  } catch (error) {
    server?.closeAllConnections();
    await shutdown().catch((stopError: Error) => log.warn(`Stopping after a failed start: ${stopError.message}`));
    throw error;
  }
}

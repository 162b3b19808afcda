import { dirname, join, resolve } from 'node:path';
import type { Bus } from '../../shared/bus/bus.js';
import { systemClock } from '../../shared/clock.js';
import { loadAgentConfig, loadOrchestratorConfig, type AgentConfig, type OrchestratorConfig } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { brokerNames } from '../../shared/topology.js';
import type { Agent } from '../agent/agent.js';
import { buildAgent } from '../agent/build-agent.js';
import { timingCheck } from '../agent/preflight.js';
import { startApi, type RunningApi } from '../api/start-api.js';
import { declareIngestTopology, type Ingest } from '../ingest/ingest.js';
import { startIngest } from '../ingest/start-ingest.js';
import { startSweeper } from '../sweeper/start-sweeper.js';
import { selectBackends, type Backends } from './backend-selection.js';

type Env = Record<string, string | undefined>;

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
function localCredentialFile(agent: Readonly<AgentConfig>, stateFile: string | null, cwd = process.cwd()): string {
  return agent.credentialFile || join(stateFile ? dirname(stateFile) : resolve(cwd, '.cache/state'), 'local-agent.credential');
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
  const agentSettings = loadAgentConfig(env);
  // The local agent beats against this orchestrator's timeout: say whether it re-registers in time after an outage.
  const timing = timingCheck(agentSettings, config.timeoutMs / 1000);
  if (timing.status === 'ok') log.info(`Agent timing: ${timing.detail}`);
  else log.warn(`Agent timing: ${timing.detail}${timing.fix ? ` (${timing.fix})` : ''}`);
  const names = brokerNames(config.brokerNamespace);
  const metrics = createMetrics({ defaultMetrics: true });
  const backends = await selectBackends(env, config, log, options.cwd);
  const { bus, store, scheduler } = backends;
  log.info(`Backends: ${backends.describe()}`);
  let ingest: Ingest | undefined;
  let sweeper: { stop(): Promise<void> } | undefined;
  let api: RunningApi | undefined;
  let agent: Agent | undefined;

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
    await api?.stop();
    await backends.rateLimiter.close();
    // Whatever the api and the agent handed to the bus reaches the store before the ingest stops.
    if (ingest) await drainEmbeddedBus();
    await ingest?.stop();
    await sweeper?.stop();
    await bus.close();
    await store.close();
  }

  try {
    await declareIngestTopology(bus, names);
    // Each service started exactly as its own process starts it (agent authentication included: docs/security.md).
    ingest = await startIngest(config, { bus, store, log: log.child({ component: 'ingest' }), clock: systemClock, metrics });
    sweeper = await startSweeper(config, { bus, store, scheduler, log: log.child({ component: 'sweeper' }), clock: systemClock, metrics });
    api = await startApi(config, {
      bus,
      store,
      clock: systemClock,
      log: log.child({ component: 'api' }),
      metrics,
      rateLimiter: backends.rateLimiter,
      readiness: [{ name: backends.kinds.scheduler === 'redis' ? 'redis' : 'scheduler', check: () => scheduler.isReady() }],
    });
    const url = api.url;

    const agentConfig = { ...loadAgentConfig({ ...env, ORCHESTRATOR_URL: url }), credentialFile: localCredentialFile(agentSettings, backends.stateFile, options.cwd) };
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
    api?.server.closeAllConnections();
    await shutdown().catch((stopError: Error) => log.warn(`Stopping after a failed start: ${stopError.message}`));
    throw error;
  }
}

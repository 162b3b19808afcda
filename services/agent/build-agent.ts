import { performance } from 'node:perf_hooks';
import type { Bus } from '../../shared/bus/bus.js';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import { systemClock, type Clock } from '../../shared/clock.js';
import type { AgentConfig } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import { brokerNames } from '../../shared/topology.js';
import { createAgent, type Agent } from './agent.js';
import { createBrokerTransport } from './broker-transport.js';
import { createFailoverTransport } from './failover-transport.js';
import { hostIdentity } from './host-identity.js';
import type { HttpFetch } from './http-client.js';
import { createHttpTransport } from './http-transport.js';
import { createMessageFactory } from './outbound-messages.js';
import { loadOrCreateCredential } from './credential-store.js';
import { credentialAuth, noAuth, type RequestAuth } from './request-auth.js';
import { createStatsCollector, type StatsSources } from './stats-collector.js';
import { systemStatsSources } from './system-stats-sources.js';
import { realTimers, type Timers } from './timers.js';

/** Schedules follow this, not the wall clock, so setting the system time does not bunch or stall beats. */
export const monotonicClock: Clock = { now: () => performance.now() };

/** Everything is real unless given: tests pass a memory bus, fake stats sources or fast timers. */
export interface BuildAgentOptions {
  log: Logger;
  /** Used instead of connecting to RABBITMQ_URL. */
  bus?: Bus;
  statsSources?: StatsSources;
  fetch?: HttpFetch;
  auth?: RequestAuth;
  clock?: Clock;
  wallClock?: Clock;
  timers?: Timers;
  random?: () => number;
}

/**
 * Wires an agent from its configuration. In-process use (tests, the all-in-one mode):
 * `const agent = await buildAgent(loadAgentConfig(env), { log }); await agent.start(); ... await agent.stop();`
 */
export async function buildAgent(config: Readonly<AgentConfig>, options: BuildAgentOptions): Promise<Agent> {
  const { log } = options;
  const clock = options.clock ?? monotonicClock;
  const timers = options.timers ?? realTimers;
  const names = brokerNames(config.brokerNamespace);
  const auth = options.auth ?? (await agentAuth(config, log));
  const bus =
    options.bus ??
    (config.rabbitmqUrl ? await createRabbitBus({ url: config.rabbitmqUrl, log, name: `agent ${config.nodeId}`, confirmTimeoutMs: config.heartbeatTimeoutMs }) : undefined);
  const transport = createFailoverTransport({
    broker: bus ? createBrokerTransport({ bus, names, timers }) : undefined,
    http: createHttpTransport({ baseUrl: config.orchestratorUrl, auth, fetch: options.fetch }),
    clock,
    timers,
    log,
  });
  const stats = createStatsCollector({
    sources: options.statsSources ?? systemStatsSources({ dockerSocket: config.dockerSocket, timeoutMs: Math.max(1, Math.floor(config.heartbeatTimeoutMs / 2)) }),
    wallClock: options.wallClock ?? systemClock,
    timers,
    log,
    sourceTimeoutMs: Math.max(1, Math.floor(config.heartbeatTimeoutMs / 2)),
  });
  return createAgent({
    config,
    identity: hostIdentity(config),
    transport,
    messages: createMessageFactory({ nodeId: config.nodeId, wallClock: options.wallClock ?? systemClock, auth }),
    stats,
    bus,
    names,
    clock,
    timers,
    random: options.random ?? Math.random,
    log,
  });
}

/** With AGENT_JOIN_TOKEN the agent authenticates (docs/security.md); without it, it sends no credentials. */
async function agentAuth(config: Readonly<AgentConfig>, log: Logger): Promise<RequestAuth> {
  if (!config.joinToken) return noAuth;
  const { credential, created, persisted } = await loadOrCreateCredential(config.credentialFile);
  if (!persisted) log.warn("AGENT_CREDENTIAL_FILE is not set: this node's credential is lost on restart, and registering this node id again will then need an operator reset");
  else if (created) log.info(`Created this node's credential in ${config.credentialFile}`);
  return credentialAuth({ nodeId: config.nodeId, joinToken: config.joinToken, credential });
}

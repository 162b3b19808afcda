import sinon from 'sinon';
import type { Bus } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import { createMemoryLogger, type Logger } from '../../shared/logger.js';
import { brokerNames, type BrokerNames } from '../../shared/topology.js';
import { createAgent, type Agent, type AgentConfigUsed } from '../../services/agent/agent.js';
import { createBrokerTransport } from '../../services/agent/broker-transport.js';
import { createFailoverTransport } from '../../services/agent/failover-transport.js';
import { createMessageFactory } from '../../services/agent/outbound-messages.js';
import { noAuth } from '../../services/agent/request-auth.js';
import { createStatsCollector, type StatsSources } from '../../services/agent/stats-collector.js';
import type { PaceSettings } from '../../services/agent/heartbeat-pace.js';
import type { Timers } from '../../services/agent/timers.js';
import type { OutboundMessage, SendOptions, Transport } from '../../services/agent/transport.js';

/** Fake setTimeout/clearTimeout/Date (setImmediate stays real: the memory bus delivers with it). */
export function fakeTime(): { fake: sinon.SinonFakeTimers; clock: Clock; timers: Timers } {
  const fake = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: Date.UTC(2026, 0, 1) });
  return {
    fake,
    clock: { now: () => fake.now },
    timers: { setTimeout: (fn, ms) => fake.setTimeout(fn, ms), clearTimeout: (handle) => fake.clearTimeout(handle as never) },
  };
}

/** Lets the memory bus's setImmediate deliveries run. */
export const macrotask = () => new Promise<void>((resolve) => setImmediate(resolve));

export type FakeHttp = Transport & {
  sent: Array<{ message: OutboundMessage; options: SendOptions }>;
  /** Decides each request's outcome: return to accept (with the pace settings of the answer, if any), throw to refuse. Accepts everything by default. */
  handler: (message: OutboundMessage) => Promise<PaceSettings | void> | PaceSettings | void;
  count(type: OutboundMessage['type']): number;
};

export function fakeHttpTransport(): FakeHttp {
  const http: FakeHttp = {
    name: 'http',
    sent: [],
    handler: () => undefined,
    async send(message, options) {
      http.sent.push({ message, options });
      return (await http.handler(message)) ?? undefined;
    },
    count: (type) => http.sent.filter((s) => s.message.type === type).length,
  };
  return http;
}

export function fakeStatsSources(): StatsSources {
  let busy = 0;
  let idle = 0;
  return {
    cpuTimes: () => {
      busy += 250;
      idle += 750;
      return { idle, total: busy + idle };
    },
    memory: async () => ({ total: 1000, available: 400 }),
    rootDiskUsage: async () => 42.123,
    runningContainers: async () => 3,
  };
}

export const testConfig: AgentConfigUsed = {
  nodeId: 'node-1',
  maxServers: 20,
  heartbeatIntervalMs: 10_000,
  heartbeatTimeoutMs: 5_000,
  maxHeartbeatFailures: 3,
  registration: { firstDelayMs: 5_000, attempts: 5, jitter: 0.1 },
  startSpread: 0,
};

export interface TestAgent {
  agent: Agent;
  http: FakeHttp;
  log: Logger & { lines: string[] };
  names: BrokerNames;
}

/** An agent with a fake HTTP transport, fake stats and, when given, an in-memory bus. */
export function testAgent(options: { clock: Clock; timers: Timers; bus?: Bus; config?: Partial<AgentConfigUsed>; random?: () => number }): TestAgent {
  const config = { ...testConfig, ...options.config };
  const log = createMemoryLogger('debug');
  const names = brokerNames('test');
  const http = fakeHttpTransport();
  const transport = createFailoverTransport({
    broker: options.bus ? createBrokerTransport({ bus: options.bus, names, timers: options.timers }) : undefined,
    http,
    clock: options.clock,
    timers: options.timers,
    log,
  });
  const agent = createAgent({
    config,
    identity: { hostname: 'host-1', ipAddress: '10.0.0.1' },
    transport,
    messages: createMessageFactory({ nodeId: config.nodeId, wallClock: options.clock, auth: noAuth }),
    stats: createStatsCollector({ sources: fakeStatsSources(), wallClock: options.clock, timers: options.timers, log, sourceTimeoutMs: 1000 }),
    bus: options.bus,
    names,
    clock: options.clock,
    timers: options.timers,
    random: options.random ?? (() => 0.5),
    log,
  });
  return { agent, http, log, names };
}

export function linesMatching(log: { lines: string[] }, text: string): string[] {
  return log.lines.filter((line) => line.includes(text));
}

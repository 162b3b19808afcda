import { expect } from 'chai';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import type { Bus } from '../../shared/bus/bus.js';
import { systemClock } from '../../shared/clock.js';
import { topology } from '../../shared/topology.js';
import { createIngest, type Ingest } from '../../services/ingest/ingest.js';
import { sleep } from '../support/fleet.js';
import type { NodeEvent } from '../../shared/messages/index.js';
import { startOrchestrator, type Harness } from '../support/orchestrator.js';
import { freePort, startPrivateRabbit, type PrivateRabbit } from '../support/private-services.js';
import { eventually, requireServices } from '../support/services.js';
import { ApiProxy, startAgent, type InProcessAgent } from './support.js';

// Slower than FAST_AGENT_ENV: the first HTTP beat after a fallback is a cold request (new connection, a store
// lookup in the api) that can take longer than 250 ms on a busy 2-core machine.
const INTERVAL_MS = 1000;
const TIMEOUT_MS = 800;
const count = (lines: string[], text: string) => lines.filter((l) => l.includes(text)).length;

/**
 * The agent publishes to a private RabbitMQ (stopped and started by these tests) and falls back to the api,
 * reached through a proxy that can refuse connections. The orchestrator consumes from both that broker (an
 * extra ingest) and the shared one behind the api: the api turns HTTP into broker messages and answers 503
 * while its own broker is down (it answers 2xx only after a broker confirm), so "broker down, HTTP works" is a
 * broker the agent cannot reach.
 */
describe('agent through broker and api outages @int', function () {
  this.timeout(90_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let rabbit: PrivateRabbit | undefined;
  let h: Harness | undefined;
  let privateBus: Bus | undefined;
  let privateIngest: Ingest | undefined;
  let proxy: ApiProxy | undefined;
  let agent: InProcessAgent | undefined;
  let events: { all(): NodeEvent[]; ofType(type: string, nodeId?: string): NodeEvent[] };

  before(async function () {
    this.timeout(90_000);
    rabbit = await startPrivateRabbit({ port: await freePort() });
  });
  after(async () => {
    await rabbit?.stop();
  });

  beforeEach(async () => {
    h = await startOrchestrator({ env: { AUTH_MODE: 'off', TIMEOUT_MINUTES: String(3 / 60) } });
    privateBus = await createRabbitBus({ url: rabbit!.url, log: h.log, name: 'agent-int private ingest', maxReconnectDelayMs: 1000, initialMaxRetries: 10 });
    await privateBus.declareTopology(topology(h.names));
    privateIngest = createIngest({ bus: privateBus, store: h.store, log: h.log.child({ component: 'private-ingest' }), clock: systemClock, metrics: h.metrics, config: h.config });
    await privateIngest.start();
    // Events come from whichever ingest stored the change: the one behind the api or the one on the private broker.
    const shared = await h.subscribe();
    const queue = `${h.namespace}.private-subscriber`;
    await privateBus.declareQueue({
      name: queue,
      durable: true,
      bindings: ['node.registered', 'node.online', 'node.offline'].map((routingKey) => ({ exchange: h!.names.exchanges.nodeEvents, routingKey })),
    });
    const fromPrivate: NodeEvent[] = [];
    await privateBus.consume(queue, (d) => (fromPrivate.push(JSON.parse(d.body.toString()) as NodeEvent), d.ack()), { prefetch: 100 });
    events = {
      all: () => [...shared.events, ...fromPrivate],
      ofType: (type, nodeId) => [...shared.events, ...fromPrivate].filter((e) => e.type === type && (!nodeId || e.nodeId === nodeId)),
    };
    proxy = await new ApiProxy(h.url).start();
  });
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await rabbit?.startApp().catch(() => undefined);
    await proxy?.close();
    await privateIngest?.stop();
    await privateBus?.deleteQueue(`${h!.namespace}.private-subscriber`).catch(() => undefined);
    for (const q of Object.values(h!.names.queues)) await privateBus?.deleteQueue(q).catch(() => undefined);
    for (const e of Object.values(h!.names.exchanges)) await privateBus?.deleteExchange(e).catch(() => undefined);
    await privateBus?.close();
    await h?.stop();
    h = undefined;
  });

  function agentEnv(nodeId: string): Record<string, string> {
    return {
      NODE_ID: nodeId,
      ORCHESTRATOR_URL: proxy!.url,
      RABBITMQ_URL: rabbit!.url,
      BROKER_NAMESPACE: h!.namespace,
      HEARTBEAT_INTERVAL: String(INTERVAL_MS / 1000),
      HEARTBEAT_TIMEOUT: String(TIMEOUT_MS / 1000),
    };
  }

  async function online(nodeId: string, timeoutMs = 10_000) {
    const harness = h!;
    return eventually(async () => {
      const n = await harness.store.get(nodeId);
      return n?.status === 'ONLINE' ? n : null;
    }, timeoutMs);
  }

  it('keeps heartbeating over HTTP without a failed beat while its broker is stopped, and returns to AMQP once it is back', async () => {
    agent = await startAgent(agentEnv('fallback-node'));
    await online('fallback-node');
    await eventually(() => agent!.agent.status().lastTransport === 'amqp', 5000);

    await rabbit!.stopApp();
    const stoppedAt = Date.now();
    await eventually(() => agent!.agent.status().lastTransport === 'http', 2 * INTERVAL_MS + 500);
    await sleep(4 * INTERVAL_MS);
    const node = await h!.store.get('fallback-node');
    expect(node!.status).to.equal('ONLINE');
    expect(node!.lastHeartbeat!.getTime(), 'heartbeats stored during the outage').to.be.greaterThan(stoppedAt + 2 * INTERVAL_MS);
    expect(
      agent.lines.filter((l) => l.includes('Error sending heartbeat')),
      'no failed beat',
    ).to.deep.equal([]);

    await rabbit!.startApp();
    await eventually(() => agent!.agent.status().lastTransport === 'amqp', 15_000);
    const beatsBack = count(agent.lines, 'Heartbeat sent successfully');
    await eventually(() => count(agent!.lines, 'Heartbeat sent successfully') >= beatsBack + 2, 3000);
    expect(agent.agent.status().lastTransport).to.equal('amqp');
    expect(count(agent.lines, 'Error sending heartbeat'), 'still no failed beat').to.equal(0);
    expect(agent.agent.status().registrations, 'never re-registered').to.equal(1);
    expect(events.ofType('node.offline', 'fallback-node')).to.have.length(0);
  });

  it('counts failures while broker and api are both unreachable, re-registers after MAX_HEARTBEAT_FAILURES and is ONLINE again once they are back', async () => {
    agent = await startAgent(agentEnv('stranded-node'));
    await online('stranded-node');
    await eventually(() => agent!.agent.status().lastTransport === 'amqp', 5000);

    await rabbit!.stopApp();
    proxy!.down();
    await eventually(() => count(agent!.lines, 'Too many heartbeat failures (2), attempting re-registration...') === 1, 10 * INTERVAL_MS);
    const errors = agent.lines.filter((l) => l.includes('Error sending heartbeat to orchestrator: '));
    expect(errors, 'exactly MAX_HEARTBEAT_FAILURES failed beats before re-registering').to.have.length(2);
    const tooMany = agent.lines.findIndex((l) => l.includes('Too many heartbeat failures'));
    expect(agent.lines.indexOf(errors[1]!)).to.be.lessThan(tooMany);
    expect(agent.agent.status().state).to.equal('registering');
    await eventually(() => proxy!.refused.some((r) => r.request.startsWith('POST /api/nodes/register')), 3000);
    // Meanwhile the orchestrator, which kept running, times the node out.
    await eventually(async () => (await h!.store.get('stranded-node'))?.status === 'OFFLINE', 8000);

    await rabbit!.startApp();
    proxy!.upAgain();
    await online('stranded-node', 15_000);
    await eventually(() => agent!.agent.status().state === 'heartbeating' && agent!.agent.status().registrations === 2, 5000);
    await eventually(() => events.ofType('node.online', 'stranded-node').length === 1, 5000).catch((error: Error) => {
      throw new Error(`${error.message}; events: ${JSON.stringify(events.all().map((e) => [e.type, e.reason, e.statusVersion]))}`);
    });
  });

  it('registers as soon as the orchestrator comes up when started while it is down, on the back-off schedule', async () => {
    await rabbit!.stopApp();
    proxy!.down();
    const startedAt = Date.now();
    agent = await startAgent(agentEnv('early-node'));
    await sleep(2000);
    const upAt = Date.now();
    proxy!.upAgain();
    await rabbit!.startApp();
    await online('early-node', 10_000);
    // When the agent's registration was accepted, by its own log line (the store follows through the ingest).
    const success = agent.lines.find((l) => l.includes('Successfully registered with orchestrator as early-node'))!;
    const registeredAfter = Date.parse(success.split(' ')[0]!) - upAt;

    const attempts = proxy!.refused.filter((r) => r.request.startsWith('POST /api/nodes/register')).map((r) => r.at);
    expect(attempts.length, 'attempts while down').to.be.at.least(4);
    expect(attempts[0]! - startedAt, 'first attempt at once').to.be.lessThan(1000);
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    // REGISTER_FIRST_DELAY_MS=100, doubling, 10 % jitter; an attempt itself takes a few ms.
    gaps.forEach((gap, i) => {
      const wait = 100 * 2 ** i;
      expect(gap, `wait ${i + 1}`).to.be.within(wait * 0.9 - 10, wait * 1.1 + 100);
    });
    // Registered by the next scheduled attempt: after n failed attempts the wait is 100 * 2^(n-1) ms (+ jitter, + one timeout).
    const longest = 100 * 2 ** (attempts.length - 1);
    expect(
      registeredAfter,
      `registered ${registeredAfter} ms after the orchestrator came up; attempts at ${attempts.map((t) => t - startedAt)} ms; agent log:\n${agent.lines.join('\n')}\n`,
    ).to.be.at.most(longest * 1.1 + TIMEOUT_MS + 500);
    expect(agent.agent.status().registrations).to.equal(1);
    expect(count(agent.lines, 'Successfully registered with orchestrator as early-node')).to.equal(1);
  });
});

import { expect } from 'chai';
import type sinon from 'sinon';
import type { Bus } from '../../shared/bus/bus.js';
import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import type { Clock } from '../../shared/clock.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { brokerNames, topology } from '../../shared/topology.js';
import { BROKER_GRACE_MS } from '../../services/agent/agent.js';
import { createBrokerTransport } from '../../services/agent/broker-transport.js';
import { createFailoverTransport } from '../../services/agent/failover-transport.js';
import { createMessageFactory } from '../../services/agent/outbound-messages.js';
import { noAuth } from '../../services/agent/request-auth.js';
import type { Timers } from '../../services/agent/timers.js';
import { TransportError } from '../../services/agent/transport.js';
import { fakeHttpTransport, fakeTime, linesMatching, macrotask, testAgent } from './fakes.js';

const INTERVAL = 10_000;
const TIMEOUT = 5_000;
const names = brokerNames('test');
const stats = { cpuUsage: 1, memoryUsage: 2, diskUsage: 3, containerCount: 0, timestamp: new Date(0).toISOString() };

describe('transport fallback', () => {
  let fake: sinon.SinonFakeTimers;
  let clock: Clock;
  let timers: Timers;

  beforeEach(() => {
    ({ fake, clock, timers } = fakeTime());
  });
  afterEach(() => fake.restore());

  async function memoryBus() {
    const bus = createMemoryBus();
    await bus.declareTopology(topology(names));
    return bus;
  }

  it('sends heartbeats over HTTP while the broker is disconnected, without counting a failure, and returns to AMQP when it is back', async () => {
    const bus = await memoryBus();
    const { agent, http, log } = testAgent({ clock, timers, bus });
    await agent.start();
    await fake.tickAsync(1);
    expect(agent.status().lastTransport).to.equal('amqp');
    expect(http.sent).to.have.length(0);

    bus.setConnected(false);
    await fake.tickAsync(3 * INTERVAL);
    expect(http.count('agent.heartbeat')).to.equal(3);
    expect(agent.status()).to.include({ state: 'heartbeating', lastTransport: 'http', registrations: 1 });
    expect(linesMatching(log, 'Error sending heartbeat')).to.have.length(0);
    expect(linesMatching(log, 'sending over HTTP until it is available again')).to.have.length(1);

    bus.setConnected(true);
    await fake.tickAsync(INTERVAL);
    expect(agent.status().lastTransport).to.equal('amqp');
    expect(http.count('agent.heartbeat')).to.equal(3);
    expect(linesMatching(log, 'RabbitMQ is available again, sending over AMQP')).to.have.length(1);
    // register + 1 beat before the outage, 1 beat after it
    expect(await bus.queueDepth(names.queues.ingest)).to.equal(3);
    await agent.stop();
  });

  it('falls back to HTTP for a heartbeat the broker does not confirm within HEARTBEAT_TIMEOUT', async () => {
    const bus = await memoryBus();
    const silent: Bus = { ...bus, publish: () => new Promise<void>(() => undefined) };
    const http = fakeHttpTransport();
    const log = createMemoryLogger('debug');
    const transport = createFailoverTransport({ broker: createBrokerTransport({ bus: silent, names, timers }), http, clock, timers, log });
    const messages = createMessageFactory({ nodeId: 'node-1', wallClock: clock, auth: noAuth });

    let via: string | undefined;
    void transport.send(messages.heartbeat(stats), { timeoutMs: TIMEOUT }).then((v) => (via = v.via));
    await fake.tickAsync(TIMEOUT - 1);
    expect(http.sent).to.have.length(0);
    await fake.tickAsync(1);
    expect(via).to.equal('http');
    expect(http.sent[0]!.message.type).to.equal('agent.heartbeat');
    expect(linesMatching(log, `no broker confirm within ${TIMEOUT} ms`)).to.have.length(1);
  });

  it('sends the registration over HTTP when the broker does not confirm it', async () => {
    const bus = await memoryBus();
    const silent: Bus = { ...bus, publish: () => new Promise<void>(() => undefined) };
    const { agent, http } = testAgent({ clock, timers, bus: silent });
    await agent.start();
    await fake.tickAsync(TIMEOUT);
    expect(http.count('agent.register')).to.equal(1);
    expect(agent.status().registrations).to.equal(1);
    const stopping = agent.stop();
    await fake.tickAsync(TIMEOUT);
    await stopping;
  });

  it('fails a heartbeat only when no transport accepted it, with both reasons', async () => {
    const bus = await memoryBus();
    bus.setConnected(false);
    const http = fakeHttpTransport();
    http.handler = () => {
      throw new TransportError('UNAVAILABLE', 'HTTP request failed: connect ECONNREFUSED 127.0.0.1:8080');
    };
    const transport = createFailoverTransport({ broker: createBrokerTransport({ bus, names, timers }), http, clock, timers, log: createMemoryLogger() });
    const messages = createMessageFactory({ nodeId: 'node-1', wallClock: clock, auth: noAuth });
    const error = await transport.send(messages.heartbeat(stats), { timeoutMs: TIMEOUT }).catch((e: unknown) => e);
    expect((error as Error).message).to.equal('HTTP request failed: connect ECONNREFUSED 127.0.0.1:8080 (broker: broker not connected)');
  });

  it('treats a broker that blocks publishes like an unreachable one: HTTP without a failed beat, and AMQP again once it unblocks', async () => {
    const bus = await memoryBus();
    const { agent, http, log } = testAgent({ clock, timers, bus });
    await agent.start();
    await fake.tickAsync(1);
    expect(agent.status().lastTransport).to.equal('amqp');

    bus.block('low on memory');
    await fake.tickAsync(3 * INTERVAL);
    expect(http.count('agent.heartbeat')).to.equal(3);
    expect(agent.status()).to.include({ state: 'heartbeating', lastTransport: 'http', registrations: 1 });
    expect(linesMatching(log, 'Error sending heartbeat')).to.have.length(0);
    expect(linesMatching(log, 'RabbitMQ did not take the message (broker blocking publishes: low on memory), sending over HTTP')).to.have.length(1);

    bus.unblock();
    await fake.tickAsync(INTERVAL);
    expect(agent.status().lastTransport).to.equal('amqp');
    expect(http.count('agent.heartbeat')).to.equal(3);
    expect(linesMatching(log, 'RabbitMQ is available again, sending over AMQP')).to.have.length(1);
    await agent.stop();
  });

  it('counts a failed beat at once, without waiting for a timeout, when the broker blocks and the api answers 503, and re-registers after MAX_HEARTBEAT_FAILURES', async () => {
    const bus = await memoryBus();
    const { agent, http, log } = testAgent({ clock, timers, bus });
    await agent.start();
    await fake.tickAsync(1);

    bus.block('low on memory');
    http.handler = () => {
      throw new TransportError('UNAVAILABLE', 'HTTP 503: BROKER_BLOCKED (low on memory)', { retryAfterMs: 5000 });
    };
    await fake.tickAsync(INTERVAL);
    // Failed within the same tick: nothing waited for HEARTBEAT_TIMEOUT.
    expect(
      linesMatching(log, 'Error sending heartbeat to orchestrator: HTTP 503: BROKER_BLOCKED (low on memory) (broker: broker blocking publishes: low on memory)'),
    ).to.have.length(1);
    await fake.tickAsync(2 * INTERVAL);
    expect(linesMatching(log, 'Error sending heartbeat')).to.have.length(3);
    expect(linesMatching(log, 'Too many heartbeat failures (3), attempting re-registration...')).to.have.length(1);
    expect(http.count('agent.heartbeat')).to.equal(3);

    bus.unblock();
    http.handler = () => undefined;
    await fake.tickAsync(INTERVAL);
    expect(agent.status()).to.include({ registrations: 2, lastTransport: 'amqp' });
    const stopping = agent.stop();
    await fake.tickAsync(TIMEOUT);
    await stopping;
  });

  it('sends a heartbeat over HTTP when the broker blocks while its publish is in flight, after a short grace instead of HEARTBEAT_TIMEOUT', async () => {
    const bus = await memoryBus();
    const http = fakeHttpTransport();
    const log = createMemoryLogger('debug');
    const transport = createFailoverTransport({ broker: createBrokerTransport({ bus, names, timers }), http, clock, timers, log });
    const messages = createMessageFactory({ nodeId: 'node-1', wallClock: clock, auth: noAuth });
    bus.stallConfirms();

    let via: string | undefined;
    void transport.send(messages.heartbeat(stats), { timeoutMs: TIMEOUT }).then((v) => (via = v.via));
    await fake.tickAsync(100);
    bus.block('low on disk');
    await fake.tickAsync(499);
    expect(http.sent).to.have.length(0);
    await fake.tickAsync(1);
    expect(via).to.equal('http');
    expect(linesMatching(log, 'broker is blocking publishes (low on disk); no confirm within 500 ms')).to.have.length(1);
    bus.unblock();
    bus.releaseConfirms();
  });

  it('re-registers at once when the orchestrator asks over the control exchange', async () => {
    const bus = await memoryBus();
    const { agent, log } = testAgent({ clock, timers, bus });
    await agent.start();
    await fake.tickAsync(1);
    expect(agent.status().registrations).to.equal(1);

    const request = { id: 'c-1', type: 'control.reregister', version: 1, sentAt: new Date().toISOString(), nodeId: 'node-1', reason: 'unknown node' };
    await bus.publish(names.exchanges.agentControl, 'agent.control.node-1', request);
    await untilHandled(() => agent.status().registrations === 2);
    expect(agent.status().registrations).to.equal(2);
    expect(linesMatching(log, 'Orchestrator asked node-1 to re-register (unknown node)')).to.have.length(1);

    await bus.publish(names.exchanges.agentControl, 'agent.control.node-1', { ...request, nodeId: 'node-2' });
    await macrotask();
    await fake.tickAsync(1);
    expect(agent.status().registrations).to.equal(2);
    await agent.stop();
  });

  it('gives the broker connection a moment at start so that the first registration goes over AMQP', async () => {
    const bus = await memoryBus();
    bus.setConnected(false);
    const { agent, http } = testAgent({ clock, timers, bus });
    await agent.start();
    await fake.tickAsync(500);
    expect(agent.status().registrations).to.equal(0);
    bus.setConnected(true);
    await fake.tickAsync(1);
    expect(agent.status()).to.include({ registrations: 1, lastTransport: 'amqp' });
    expect(http.sent).to.have.length(0);
    await agent.stop();
  });

  it('registers over HTTP when the broker has not connected within the grace period', async () => {
    const bus = await memoryBus();
    bus.setConnected(false);
    const { agent, http } = testAgent({ clock, timers, bus });
    await agent.start();
    await fake.tickAsync(BROKER_GRACE_MS - 1);
    expect(http.sent).to.have.length(0);
    await fake.tickAsync(1);
    expect(http.count('agent.register')).to.equal(1);
    await agent.stop();
  });

  it('subscribes to control messages once the broker connects, when it was down at start', async () => {
    const bus = await memoryBus();
    bus.setConnected(false);
    const { agent } = testAgent({ clock, timers, bus });
    await agent.start();
    await fake.tickAsync(1);
    bus.setConnected(true);
    await macrotask();
    const request = { id: 'c-2', type: 'control.reregister', version: 1, sentAt: new Date().toISOString(), nodeId: 'node-1', reason: 'stale' };
    await bus.publish(names.exchanges.agentControl, 'agent.control.node-1', request);
    await untilHandled(() => agent.status().registrations === 2);
    expect(agent.status().registrations).to.equal(2);
    await agent.stop();
  });

  /**
   * The listener loads the message schemas with the first control message (an import, done in real time, which
   * fake timers do not advance): turns the event loop and the fake clock until `done`, for at most 5 s of real time.
   */
  async function untilHandled(done: () => boolean): Promise<void> {
    const deadline = performance.now() + 5000;
    do {
      await macrotask();
      await fake.tickAsync(1);
    } while (!done() && performance.now() < deadline);
  }
});

describe('agent shutdown', () => {
  let fake: sinon.SinonFakeTimers;
  let clock: Clock;
  let timers: Timers;

  beforeEach(() => {
    ({ fake, clock, timers } = fakeTime());
  });
  afterEach(() => fake.restore());

  it('announces the shutdown, closes the broker connection and stops beating', async () => {
    const bus = createMemoryBus();
    await bus.declareTopology(topology(names));
    bus.setConnected(false); // everything then goes over HTTP
    const { agent, http } = testAgent({ clock, timers, bus });
    await agent.start();
    await fake.tickAsync(BROKER_GRACE_MS + 1);
    await agent.stop();
    expect(http.sent.map((s) => s.message.type)).to.deep.equal(['agent.register', 'agent.heartbeat', 'agent.shutdown']);
    expect(agent.status().state).to.equal('stopped');
    await fake.tickAsync(5 * INTERVAL);
    expect(http.count('agent.heartbeat')).to.equal(1);
    expect(fake.countTimers()).to.equal(0);
  });

  it('gives up announcing within HEARTBEAT_TIMEOUT when the orchestrator does not answer', async () => {
    const { agent, http } = testAgent({ clock, timers });
    await agent.start();
    await fake.tickAsync(1);
    http.handler = (message) => (message.type === 'agent.shutdown' ? new Promise<void>(() => undefined) : undefined);
    const started = fake.now;
    let stoppedAt: number | undefined;
    void agent.stop().then(() => (stoppedAt = fake.now));
    await fake.tickAsync(0);
    const sent = http.sent.at(-1)!;
    expect(sent.message.type).to.equal('agent.shutdown');
    expect(sent.options.timeoutMs).to.be.at.most(TIMEOUT);
    await fake.tickAsync(TIMEOUT);
    expect(stoppedAt! - started).to.be.below(TIMEOUT);
  });

  it('does not announce a shutdown when it never registered', async () => {
    const { agent, http } = testAgent({ clock, timers });
    http.handler = () => {
      throw new TransportError('UNAVAILABLE', 'down');
    };
    await agent.start();
    await fake.tickAsync(7_000);
    await agent.stop();
    expect(http.count('agent.shutdown')).to.equal(0);
    expect(http.count('agent.register')).to.equal(2);
  });
});

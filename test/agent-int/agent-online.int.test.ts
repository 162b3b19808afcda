import { expect } from 'chai';
import { startOrchestrator, type Harness } from '../support/orchestrator.js';
import { eventually, RABBITMQ_URL, requireServices } from '../support/services.js';
import { startAgent, type InProcessAgent } from './support.js';

describe('agent against the orchestrator @int', function () {
  this.timeout(30_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness | undefined;
  let agent: InProcessAgent | undefined;
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await h?.stop();
    h = undefined;
  });

  it('appears ONLINE with plausible host stats when started with fast development settings', async () => {
    h = await startOrchestrator({ env: { AUTH_MODE: 'off' } });
    const harness = h;
    // A 0.8 s timeout leaves the stats sources 400 ms (half of it): with 0.25 s they can time out on a busy machine and report 0.
    agent = await startAgent({ NODE_ID: 'stats-node', ORCHESTRATOR_URL: h.url, RABBITMQ_URL, BROKER_NAMESPACE: h.namespace, HEARTBEAT_INTERVAL: '1', HEARTBEAT_TIMEOUT: '0.8' });
    const node = await eventually(async () => {
      const n = await harness.store.get('stats-node');
      return n?.status === 'ONLINE' && n.stats ? n : null;
    }, 10_000);
    const { cpuUsage, memoryUsage, diskUsage, containerCount } = node.stats!;
    for (const [name, value] of Object.entries({ cpuUsage, memoryUsage, diskUsage })) {
      expect(value, name).to.be.a('number').within(0, 100);
    }
    expect(memoryUsage, 'a real machine uses some memory').to.be.greaterThan(0);
    expect(diskUsage, 'and some disk').to.be.greaterThan(0);
    expect(Number.isInteger(containerCount), 'containerCount is an integer').to.equal(true);
    expect(containerCount).to.be.at.least(0);
    expect(node.hostname).to.be.a('string').that.is.not.equal('');
    expect(node.ipAddress).to.be.a('string').that.is.not.equal('');
    expect(agent.agent.status().lastTransport).to.equal('amqp');
    const view = (await (await fetch(`${h.url}/api/nodes/stats-node`)).json()) as { status: string };
    expect(view.status).to.equal('ONLINE');
  });

  it('registers again over AMQP within two heartbeat intervals after its record is deleted from the store', async () => {
    h = await startOrchestrator({ env: { AUTH_MODE: 'off' } });
    const harness = h;
    // A 2 s interval, not the 0.5 s of the other tests: the promise is about intervals far longer than the
    // orchestrator's own round trip (a batch, the control message), which a loaded machine stretches past 0.5 s.
    agent = await startAgent({ NODE_ID: 'forgotten-amqp', ORCHESTRATOR_URL: h.url, RABBITMQ_URL, BROKER_NAMESPACE: h.namespace, HEARTBEAT_INTERVAL: '2', HEARTBEAT_TIMEOUT: '1' });
    await eventually(async () => (await harness.store.get('forgotten-amqp'))?.status === 'ONLINE', 10_000);
    await eventually(() => agent!.agent.status().lastTransport === 'amqp', 5000);
    const before = agent.agent.status().registrations;
    const linesBefore = agent.lines.length;
    expect(await h.store.delete('forgotten-amqp')).to.equal(true);
    await eventually(async () => (await harness.store.get('forgotten-amqp'))?.status === 'ONLINE', 15_000, 10);
    // The store can show the node before the agent has read the answer to its registration.
    await eventually(() => agent!.agent.status().registrations === before + 1, 4000);
    // Within two heartbeat intervals, counted in the agent's own beats (a loaded machine stretches both alike): the
    // first beat after the deletion is refused and asks for it, and the agent registers before its second.
    const since = agent.lines.slice(linesBefore);
    const registeredAt = since.findIndex((l) => l.includes('Successfully registered with orchestrator as forgotten-amqp'));
    const beats = since.slice(0, registeredAt).filter((l) => l.includes('Heartbeat sent successfully')).length;
    expect(registeredAt, 'the re-registration is logged').to.be.at.least(0);
    expect(beats, 'heartbeats sent between the deletion and the re-registration').to.be.at.most(2);
    expect(agent.agent.status().lastTransport).to.equal('amqp');
  });

  it('registers again over HTTP within two heartbeat intervals after its record is deleted from the store', async () => {
    // The api caches "node is known" for 2 s, so the interval is longer than that here (60 s by default).
    const intervalMs = 3000;
    h = await startOrchestrator({ env: { AUTH_MODE: 'off', TIMEOUT_MINUTES: String(10 / 60) } });
    const harness = h;
    agent = await startAgent({ NODE_ID: 'forgotten-http', ORCHESTRATOR_URL: h.url, HEARTBEAT_INTERVAL: '3', HEARTBEAT_TIMEOUT: '1' });
    await eventually(async () => (await harness.store.get('forgotten-http'))?.stats, 10_000);
    const before = agent.agent.status().registrations;
    expect(await h.store.delete('forgotten-http')).to.equal(true);
    const deletedAt = Date.now();
    await eventually(async () => (await harness.store.get('forgotten-http'))?.status === 'ONLINE', 2 * intervalMs + 1000, 20);
    const took = Date.now() - deletedAt;
    expect(took, `registered again after ${took} ms`).to.be.at.most(2 * intervalMs);
    // The store can show the node before the agent has read the answer to its registration.
    await eventually(() => agent!.agent.status().registrations === before + 1, 2000);
    expect(agent.agent.status().lastTransport).to.equal('http');
    expect(agent.lines.some((l) => l.includes('Orchestrator does not know forgotten-http'))).to.equal(true);
  });
});

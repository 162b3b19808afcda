import { expect } from 'chai';
import { requireServices, eventually } from '../support/services.js';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';

async function post(url: string, body: unknown) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, unknown> | null };
}

describe('orchestrator flow @int', function () {
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness;
  beforeEach(async () => {
    h = await startOrchestrator();
  });
  afterEach(async () => {
    await h?.stop();
  });

  it('registers node-1 over HTTP with the original bodies and shows it ONLINE with its stats', async () => {
    const reg = await post(`${h.url}/api/nodes/register`, { nodeId: 'node-1', hostname: 'game-host-1', ipAddress: '192.168.1.10', maxServers: 20 });
    expect(reg.status).to.equal(201);
    const stats = await post(`${h.url}/api/nodes/node-1/stats`, { cpuUsage: 23.5, memoryUsage: 61.2, diskUsage: 40.1, containerCount: 4, timestamp: new Date().toISOString() });
    expect(stats.status).to.equal(200);
    const view = await eventually(async () => {
      const res = await fetch(`${h.url}/api/nodes/node-1`);
      const body = (await res.json()) as { status: string; stats: { cpuUsage: number } | null };
      return res.status === 200 && body.stats ? body : null;
    });
    expect(view).to.deep.include({ nodeId: 'node-1', hostname: 'game-host-1', ipAddress: '192.168.1.10', maxServers: 20, status: 'ONLINE' });
    expect(view.stats).to.deep.include({ cpuUsage: 23.5, memoryUsage: 61.2, diskUsage: 40.1, containerCount: 4 });
  });

  it('registers and heartbeats over AMQP messages the same way', async () => {
    await h.publishAgent('agent.register', 'node-2', registerBody('node-2'));
    await eventually(() => h.store.get('node-2'));
    await h.publishAgent('agent.heartbeat', 'node-2', statsBody({ cpuUsage: 77 }));
    const node = await eventually(async () => {
      const n = await h.store.get('node-2');
      return n?.stats ? n : null;
    });
    expect(node.status).to.equal('ONLINE');
    expect(node.stats!.cpuUsage).to.equal(77);
  });

  it('publishes exactly one node.offline when heartbeats stop and exactly one node.online when they resume', async () => {
    const events = await h.subscribe();
    await h.publishAgent('agent.register', 'node-3', registerBody('node-3'));
    await eventually(() => events.ofType('node.registered', 'node-3').length === 1);
    const stoppedAt = Date.now();
    await eventually(() => events.ofType('node.offline', 'node-3').length === 1, 4000);
    const detectedAfter = Date.now() - stoppedAt;
    // timeout (1 s) + sweep interval (250 ms) + 1 s
    expect(detectedAfter).to.be.below(2250 + 500);
    const node = await h.store.get('node-3');
    expect(node!.status).to.equal('OFFLINE');
    await h.publishAgent('agent.heartbeat', 'node-3', statsBody());
    await eventually(() => events.ofType('node.online', 'node-3').length === 1);
    await new Promise((r) => setTimeout(r, 600));
    expect(events.ofType("node.offline", "node-3")).to.have.length(1);
    expect(events.ofType('node.online', 'node-3')).to.have.length(1);
    const [registered, offline, online] = [events.ofType('node.registered', 'node-3')[0]!, events.ofType('node.offline', 'node-3')[0]!, events.ofType('node.online', 'node-3')[0]!];
    expect([registered.statusVersion, offline.statusVersion, online.statusVersion]).to.deep.equal([1, 2, 3]);
    expect(offline).to.include({ reason: 'timeout', status: 'OFFLINE', previousStatus: 'ONLINE' });
    expect(online).to.include({ reason: 'heartbeat', status: 'ONLINE', previousStatus: 'OFFLINE' });
  });
});

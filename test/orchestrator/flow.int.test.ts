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
    expect(events.ofType('node.offline', 'node-3')).to.have.length(1);
    expect(events.ofType('node.online', 'node-3')).to.have.length(1);
    const [registered, offline, online] = [events.ofType('node.registered', 'node-3')[0]!, events.ofType('node.offline', 'node-3')[0]!, events.ofType('node.online', 'node-3')[0]!];
    expect([registered.statusVersion, offline.statusVersion, online.statusVersion]).to.deep.equal([1, 2, 3]);
    expect(offline).to.include({ reason: 'timeout', status: 'OFFLINE', previousStatus: 'ONLINE' });
    expect(online).to.include({ reason: 'heartbeat', status: 'ONLINE', previousStatus: 'OFFLINE' });
  });

  it('serves health, readiness and Prometheus metrics with the ingest, sweep and node figures', async () => {
    await h.publishAgent('agent.register', 'node-m', registerBody('node-m'));
    await h.publishAgent('agent.heartbeat', 'node-m', statsBody());
    await eventually(async () => (await h.store.get('node-m'))?.stats);
    expect((await fetch(`${h.url}/healthz`)).status).to.equal(200);
    const ready = await fetch(`${h.url}/readyz`);
    expect(ready.status).to.equal(200);
    expect(await ready.json()).to.deep.include({ ready: true, clusterDegraded: false });
    // The sweeper's canaries (the AMQP path) and the api's (the HTTP hop) both make the trip.
    const path = await eventually(async () => {
      const body = (await (await fetch(`${h.url}/readyz`)).json()) as { heartbeatPath: { state: string; senders: number; coveredUntil: string | null } };
      return body.heartbeatPath.senders >= 2 && body.heartbeatPath;
    });
    expect(path.state).to.equal('up');
    expect(Date.now() - Date.parse(path.coveredUntil!)).to.be.below(30_000);
    // The node.registered event is published just after the write that stored it.
    const text = await eventually(async () => {
      const body = await (await fetch(`${h.url}/metrics`)).text();
      return body.includes('orchestrator_events_published_total{type="node.registered"}') ? body : null;
    });
    for (const name of [
      'orchestrator_ingest_messages_total',
      'orchestrator_ingest_batch_size',
      'orchestrator_ingest_lag_seconds',
      'orchestrator_sweep_duration_seconds',
      'orchestrator_nodes{status="ONLINE"} 1',
      'orchestrator_events_published_total{type="node.registered"}',
      'orchestrator_dead_lettered_total',
      'orchestrator_heartbeat_path_up 1',
      'orchestrator_heartbeat_path_lag_seconds',
      'orchestrator_broker_blocked 0',
    ]) {
      expect(text, name).to.include(name);
    }
  });
});

import { expect } from 'chai';
import { eventually, requireServices } from '../support/services.js';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';
import { sleep, startFleet } from '../support/fleet.js';

const TIMEOUT_MS = 1000;
const MINUTE = 60_000;

describe('liveness on the orchestrator clock @int', function () {
  this.timeout(30000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('does not bring an OFFLINE node ONLINE with a backlog of heartbeats older than the timeout', async () => {
    h = await startOrchestrator();
    const events = await h.subscribe(['node.offline', 'node.online']);
    await h.publishAgent('agent.register', 'stale-1', registerBody('stale-1'));
    await eventually(() => events.ofType('node.offline', 'stale-1').length === 1, 5000);
    // Heartbeats that sat in a backlog: sent 5 s ago by the agent's clock (AMQP) ...
    const old = new Date(Date.now() - 5 * TIMEOUT_MS).toISOString();
    for (let i = 0; i < 20; i++) await h.publishAgent('agent.heartbeat', 'stale-1', statsBody({ timestamp: old }), { sentAt: old });
    // ... and received 5 s ago by the api (HTTP path).
    for (let i = 0; i < 5; i++) await h.publishAgent('agent.heartbeat', 'stale-1', statsBody({ timestamp: old }), { sentAt: old, receivedAt: old });
    await eventually(async () => (await h!.bus.queueDepth(h!.names.queues.ingest)) === 0);
    await sleep(500);
    expect((await h.store.get('stale-1'))!.status).to.equal('OFFLINE');
    expect(events.ofType('node.online', 'stale-1')).to.have.length(0);
    // A live heartbeat still brings it back.
    await h.publishAgent('agent.heartbeat', 'stale-1', statsBody());
    await eventually(() => events.ofType('node.online', 'stale-1').length === 1, 3000);
  });

  it('never lets an older heartbeat overwrite newer stats', async () => {
    h = await startOrchestrator();
    await h.publishAgent('agent.register', 'order-1', registerBody('order-1'));
    await eventually(() => h!.store.get('order-1'));
    const newer = new Date().toISOString();
    const older = new Date(Date.now() - 2000).toISOString();
    await h.publishAgent('agent.heartbeat', 'order-1', statsBody({ cpuUsage: 90, timestamp: newer }));
    await eventually(async () => (await h!.store.get('order-1'))!.stats?.cpuUsage === 90);
    await h.publishAgent('agent.heartbeat', 'order-1', statsBody({ cpuUsage: 10, timestamp: older }));
    await eventually(async () => (await h!.bus.queueDepth(h!.names.queues.ingest)) === 0);
    await sleep(300);
    const node = await h.store.get('order-1');
    expect(node!.stats!.cpuUsage).to.equal(90);
    expect(node!.stats!.reportedAt.toISOString()).to.equal(newer);
  });

  for (const [label, offset] of [
    ['10 minutes ahead', 10 * MINUTE],
    ['10 minutes behind', -10 * MINUTE],
  ] as const) {
    it(`keeps an agent whose clock is ${label} ONLINE while it heartbeats and marks it OFFLINE on time when it stops`, async () => {
      h = await startOrchestrator();
      const events = await h.subscribe(['node.offline', 'node.online']);
      const id = offset > 0 ? 'ahead-1' : 'behind-1';
      const fleet = await startFleet(h, [id], { clockOffsetMs: offset });
      await sleep(3 * TIMEOUT_MS);
      expect(events.events, 'no transition while it heartbeats').to.have.length(0);
      const node = await h.store.get(id);
      expect(node!.status).to.equal('ONLINE');
      // lastHeartbeat is the orchestrator's receive time, the agent's timestamp is kept as reportedAt.
      expect(Math.abs(node!.lastHeartbeat!.getTime() - Date.now())).to.be.below(1500);
      expect(node!.stats!.reportedAt.getTime() - node!.lastHeartbeat!.getTime()).to.be.closeTo(offset, 2000);
      fleet.silence([id]);
      const stoppedAt = Date.now();
      await eventually(() => events.ofType('node.offline', id).length === 1, TIMEOUT_MS + 250 + 1500);
      expect(Date.now() - stoppedAt).to.be.below(TIMEOUT_MS + 250 + 1000 + 500);
      fleet.stop();
    });
  }
});

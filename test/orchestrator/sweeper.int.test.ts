import { expect } from 'chai';
import { eventually, requireServices } from '../support/services.js';
import { startOrchestrator, type Harness } from '../support/orchestrator.js';
import { sleep, startFleet } from '../support/fleet.js';

const TIMEOUT_MS = 1000;

describe('sweeper @int', function () {
  this.timeout(30000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('with three sweepers and two ingests, 10 of 50 silent nodes give exactly 10 node.offline events, none twice', async () => {
    // 50 nodes at 2.5 beats/s is what the SQLite-backed test server absorbs with room to spare on 2 shared cores.
    h = await startOrchestrator({ ingests: 2, sweepers: 3, env: { TIMEOUT_MINUTES: String(2 / 60) } });
    const events = await h.subscribe(['node.offline', 'node.online']);
    const ids = Array.from({ length: 50 }, (_, i) => `fleet-${i}`);
    const fleet = await startFleet(h, ids, { intervalMs: 400 });
    await sleep(3000);
    const silent = ids.slice(0, 10);
    fleet.silence(silent);
    await eventually(() => events.ofType('node.offline').length >= 10, 2 * TIMEOUT_MS + 250 + 8000);
    await sleep(1500); // time for any duplicate to show up
    fleet.stop();
    const offline = events.ofType('node.offline');
    expect(offline.map((e) => e.nodeId).sort()).to.deep.equal([...silent].sort());
    expect(new Set(offline.map((e) => e.eventId)).size).to.equal(10);
    expect(events.ofType('node.online')).to.have.length(0);
    for (const id of silent) expect(await h.store.get(id), 'marked once, its event out of the outbox').to.deep.include({ statusVersion: 2, outbox: [] });
  });

  it('publishes the event with its stored eventId when the sweeper dies between marking and publishing', async () => {
    let storedEventId: string | undefined;
    let killed = false;
    h = await startOrchestrator({ sweepers: 0 });
    const events = await h.subscribe(['node.offline']);
    const harness = h;
    const dying = await h.startSweeper({
      afterMark: async (nodeIds) => {
        if (killed || !nodeIds.includes('doomed')) return;
        killed = true;
        storedEventId = (await harness.store.get('doomed'))!.outbox[0]!.eventId;
        throw new Error('sweeper killed between marking and publishing');
      },
    });
    await h.publishAgent('agent.register', 'doomed', { nodeId: 'doomed', hostname: 'd', ipAddress: '10.0.0.1', maxServers: 1 });
    await eventually(() => killed, 5000);
    await dying.stop();
    expect((await h.store.get('doomed'))!.status).to.equal('OFFLINE');
    await sleep(300);
    expect(events.events).to.have.length(0);
    await h.startSweeper();
    await eventually(() => events.events.length === 1, 5000);
    expect(events.events[0]!.eventId).to.equal(storedEventId);
    // Taken out of the outbox once the broker confirmed it, which may come after the subscriber got it.
    await eventually(async () => (await harness.store.get('doomed'))!.outbox.length === 0, 5000);
  });

  it('marks no node OFFLINE while the ingest is stopped for three timeouts, nor before a full timeout after it restarts', async () => {
    h = await startOrchestrator();
    const events = await h.subscribe(['node.offline']);
    const fleet = await startFleet(h, ['keeps-beating', 'goes-quiet']);
    await sleep(800);
    await h.stopIngests();
    fleet.silence(['goes-quiet']);
    await sleep(3 * TIMEOUT_MS);
    expect(events.events, 'no node.offline while the ingest is down').to.have.length(0);
    const restartedAt = Date.now();
    await h.startIngest();
    await eventually(() => events.ofType('node.offline', 'goes-quiet').length === 1, TIMEOUT_MS + 3000);
    fleet.stop();
    const offline = events.ofType('node.offline', 'goes-quiet')[0]!;
    expect(Date.parse(offline.occurredAt) - restartedAt).to.be.at.least(TIMEOUT_MS);
    expect(events.ofType('node.offline', 'keeps-beating')).to.have.length(0);
  });
});

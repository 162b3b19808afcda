import { expect } from 'chai';
import { eventually, requireServices } from '../support/services.js';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';
import { sleep } from '../support/fleet.js';
import { freePort, startPrivateFerret } from '../support/private-services.js';

describe('durability and batching @int', function () {
  this.timeout(60000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('stores every heartbeat the broker confirmed although the store was down for 5 s in the middle of 1000', async function () {
    // A FerretDB of this test's own (built by scripts/ferretdb.sh when missing), so stopping it disturbs nobody.
    const ferret = await startPrivateFerret({ port: await freePort() });
    try {
      h = await startOrchestrator({ env: { MONGO_URL: ferret.urlFor('durability'), TIMEOUT_MINUTES: '1' } });
      const ids = Array.from({ length: 20 }, (_, i) => `durable-${i}`);
      await Promise.all(ids.map((id) => h!.publishAgent('agent.register', id, registerBody(id))));
      await eventually(async () => (await h!.store.list()).length === 20, 10000);
      const newestConfirmed = new Map<string, number>();
      let confirmed = 0;
      const t0 = Date.now();
      const stream = (async () => {
        for (let i = 0; i < 1000; i++) {
          const id = ids[i % ids.length]!;
          const ts = t0 + i; // unique, increasing agent timestamps
          await h!.publishAgent('agent.heartbeat', id, statsBody({ cpuUsage: (i % 100) + 0.5, timestamp: new Date(ts).toISOString() }));
          newestConfirmed.set(id, Math.max(newestConfirmed.get(id) ?? 0, ts));
          confirmed++;
          if (i % 50 === 0) await sleep(20);
        }
      })();
      await sleep(300);
      await ferret.stop();
      await sleep(5000);
      await ferret.start();
      await stream;
      expect(confirmed).to.equal(1000);
      await eventually(
        async () => {
          const nodes = await h!.store.list();
          return nodes.every((n) => n.stats && n.stats.reportedAt.getTime() >= newestConfirmed.get(n.nodeId)!);
        },
        30000,
        200,
      );
      expect(await h.bus.queueDepth(h.names.queues.deadLetter)).to.equal(0);
    } finally {
      await h?.stop();
      h = undefined;
      await ferret.close();
    }
  });

  it('writes 2000 heartbeats of 100 nodes in far fewer than 2000 bulk writes', async () => {
    h = await startOrchestrator({ env: { TIMEOUT_MINUTES: '1' } });
    const ids = Array.from({ length: 100 }, (_, i) => `batch-${i}`);
    await Promise.all(ids.map((id) => h!.publishAgent('agent.register', id, registerBody(id))));
    await eventually(async () => (await h!.store.list()).length === 100, 15000);
    const writesBefore = (await h.metrics.storeWrites.get()).values[0]?.value ?? 0;
    const applied = async () => (await h!.metrics.messagesIngested.get()).values.filter((v) => v.labels.type === 'agent.heartbeat').reduce((sum, v) => sum + v.value, 0);
    // Published while the ingest waits, as a backlog would be, then drained.
    await h.stopIngests();
    const publishes: Array<Promise<void>> = [];
    for (let i = 0; i < 2000; i++) publishes.push(h.publishAgent('agent.heartbeat', ids[i % 100]!, statsBody({ timestamp: new Date(Date.now() + i).toISOString() })));
    await Promise.all(publishes);
    await h.startIngest();
    await eventually(async () => (await applied()) >= 2000, 30000, 100);
    const bulkWrites = ((await h.metrics.storeWrites.get()).values[0]?.value ?? 0) - writesBefore;
    const nodeWrites = (await h.metrics.nodeWrites.get()).values[0]?.value ?? 0;
    console.log(`      2000 heartbeats -> ${bulkWrites} bulk writes, ${nodeWrites} node writes in all`);
    expect(bulkWrites).to.be.below(50);
  });
});

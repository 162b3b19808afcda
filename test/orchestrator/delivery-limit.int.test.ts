import { expect } from 'chai';
import type { Delivery } from '../../shared/bus/bus.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { HEADERS, INGEST_DELIVERY_LIMIT, ROUTING } from '../../shared/topology.js';
import { registerBody, startOrchestrator } from '../support/orchestrator.js';
import { eventually, requireServices } from '../support/services.js';

describe('a message the ingest keeps failing on @int', function () {
  // The ingest's back-off between the deliveries: 100 ms doubling, 6.3 s for the first and the five redeliveries.
  this.timeout(60_000);
  before(requireServices('rabbitmq', 'mongodb'));

  it(`is given back by the ingest and dead-lettered by the quorum queue once given back more than ${INGEST_DELIVERY_LIMIT} times, with x-death reason delivery_limit`, async () => {
    let failing = true;
    const log = createMemoryLogger('warn');
    const h = await startOrchestrator({
      api: false,
      sweepers: 0,
      log,
      afterStore: async () => {
        if (failing) throw new Error('a bug after the store write');
      },
    });
    try {
      const dead: Delivery[] = [];
      await h.bus.consume(
        h.names.queues.deadLetter,
        (d) => {
          dead.push(d);
          d.ack();
        },
        { prefetch: 10 },
      );

      await h.publishAgent('agent.register', 'node-1', registerBody('node-1'));

      await eventually(() => dead.length === 1, 40_000, 100);
      const [letter] = dead;
      expect(letter!.routingKey).to.equal(ROUTING.register('node-1'));
      expect(JSON.parse(letter!.body.toString())).to.deep.include({ type: 'agent.register', nodeId: 'node-1' });
      expect(letter!.headers).to.include({ 'x-first-death-reason': 'delivery_limit', 'x-first-death-queue': h.names.queues.ingest });
      const deaths = letter!.headers['x-death'] as Array<Record<string, unknown>>;
      expect(deaths[0]).to.include({ reason: 'delivery_limit', queue: h.names.queues.ingest, count: 1 });
      expect(letter!.headers[HEADERS.refusalReason], 'dead-lettered by the broker, not refused by the ingest').to.equal(undefined);
      expect(await h.bus.queueDepth(h.names.queues.ingest)).to.equal(0);
      expect(log.lines.filter((l) => l.includes('Ingest batch failed unexpectedly, retrying with back-off: a bug after the store write'))).to.have.length(1);
      expect(log.lines.filter((l) => l.includes(`failed on their last delivery (given back ${INGEST_DELIVERY_LIMIT} times before)`))).to.have.length(1);
      const byReason = (await h.metrics.deadLettered.get()).values.find((v) => v.labels.reason === 'delivery limit');
      expect(byReason?.value).to.equal(1);

      // Nothing is blocked: once the fault is gone the next message is stored.
      failing = false;
      await h.publishAgent('agent.register', 'node-2', registerBody('node-2'));
      await eventually(async () => (await h.store.get('node-2'))?.status === 'ONLINE', 10_000);
    } finally {
      await h.stop();
    }
  });
});

import { expect } from 'chai';
import { createCanarySender } from '../../shared/canary/canary-sender.js';
import { manualClock } from '../../shared/clock.js';
import { createMemoryLogger } from '../../shared/logger.js';
import type { CanaryMessage } from '../../shared/messages/index.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';

describe('canary sender', () => {
  function world() {
    const clock = manualClock(Date.UTC(2026, 0, 1));
    const store = createMemoryNodeStore({ historyPoints: 0 });
    const log = createMemoryLogger('debug');
    const sent: CanaryMessage[] = [];
    const broker = { failing: null as Error | null };
    const sender = createCanarySender({
      senderId: 'sweeper-1',
      kind: 'sweeper',
      intervalMs: 1000,
      send: async (message) => {
        if (broker.failing) throw broker.failing;
        sent.push(message);
      },
      store,
      clock,
      log,
    });
    return { clock, store, log, sent, broker, sender };
  }

  it('says it runs, straight to the store, and sends a canary each time', async () => {
    const w = world();

    await w.sender.tick();
    w.clock.advance(1000);
    await w.sender.tick();

    expect(w.sent.map((m) => [m.type, m.senderId, m.kind, m.intervalMs, m.failedSince])).to.deep.equal([
      ['orchestrator.canary', 'sweeper-1', 'sweeper', 1000, undefined],
      ['orchestrator.canary', 'sweeper-1', 'sweeper', 1000, undefined],
    ]);
    expect((await w.store.canaries())[0]).to.deep.include({ senderId: 'sweeper-1', aliveAt: new Date(w.clock.now()), firstAliveAt: new Date(w.clock.now() - 1000) });
  });

  it('tells with its next canary that got through since when earlier ones failed, and logs the outage once each way', async () => {
    const w = world();
    w.broker.failing = new Error('broker blocked (low on memory)');
    const failedAt = w.clock.now();
    await w.sender.tick();
    w.clock.advance(1000);
    await w.sender.tick();
    w.broker.failing = null;
    w.clock.advance(1000);
    await w.sender.tick();
    w.clock.advance(1000);
    await w.sender.tick();

    expect(w.sent.map((m) => m.failedSince)).to.deep.equal([new Date(failedAt).toISOString(), undefined]);
    expect(w.log.lines.filter((l) => l.includes('not getting onto the heartbeat path'))).to.have.length(2);
  });

  it('removes its record when stopped, so no sweep waits for it', async () => {
    const w = world();
    await w.sender.tick();

    await w.sender.stop();

    expect(await w.store.canaries()).to.deep.equal([]);
  });
});

import { expect } from 'chai';
import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import { manualClock } from '../../shared/clock.js';
import { loadOrchestratorConfig } from '../../shared/config.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { createMemoryScheduler } from '../../shared/scheduler/memory-scheduler.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { createSweeper, sweepLeaseMs } from '../../services/sweeper/sweeper.js';
import { eventually } from '../support/services.js';

/**
 * The sweep lease: a sweeper sweeps only while it holds the store's lease, so sweepers whose schedulers both fire
 * (two in-memory schedulers here, as a Redis failover can make BullMQ's) still sweep one at a time.
 */
const config = loadOrchestratorConfig({ AUTH_MODE: 'off', TIMEOUT_MINUTES: '1', HEALTH_CHECK_INTERVAL: '20', BROKER_NAMESPACE: 'lease-test' });
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const has = (lines: string[], text: string) => lines.some((l) => l.includes(text));

describe('sweeper: the sweep lease', () => {
  it('skips its sweeps while another sweeper holds the lease, sweeps once it expires, and releases it after each sweep', async () => {
    const clock = manualClock(T0);
    const store = createMemoryNodeStore({ historyPoints: 0 });
    expect(await store.takeSweepLease('sweeper-elsewhere', new Date(T0), new Date(T0 + 10_000))).to.equal(true);
    const log = createMemoryLogger('debug');
    const bus = createMemoryBus();
    const sweeper = createSweeper({ bus, store, scheduler: createMemoryScheduler(), log, clock, metrics: createMetrics(), config });
    await sweeper.start();
    try {
      await eventually(() => has(log.lines, 'Sweep skipped: another sweeper holds the sweep lease'));
      expect(has(log.lines, 'Sweep started'), 'a sweep under another holder').to.equal(false);

      clock.advance(10_000); // the other holder's lease was not renewed: it expires
      await eventually(() => has(log.lines, 'Sweep ended'));
    } finally {
      await sweeper.stop();
      await bus.close();
    }
    // Released after its last sweep: free for anyone.
    await eventually(() => store.takeSweepLease('sweeper-elsewhere', new Date(clock.now()), new Date(clock.now() + 1000)));
  });

  it('lets two sweepers whose schedulers both fire sweep one at a time', async () => {
    const clock = manualClock(T0);
    const memory = createMemoryNodeStore({ historyPoints: 0 });
    // Every sweep reads the canary records first: count the sweeps inside that read at once.
    let active = 0;
    let most = 0;
    let sweeps = 0;
    const store: NodeStore = {
      ...memory,
      async canaries() {
        sweeps++;
        most = Math.max(most, ++active);
        await new Promise((resolve) => setTimeout(resolve, 15));
        active--;
        return memory.canaries();
      },
    };
    const buses = [createMemoryBus(), createMemoryBus()];
    const sweepers = buses.map((bus) =>
      createSweeper({ bus, store, scheduler: createMemoryScheduler(), log: createMemoryLogger('error'), clock, metrics: createMetrics(), config }),
    );
    for (const s of sweepers) await s.start();
    try {
      await eventually(() => sweeps >= 10, 5000);
    } finally {
      for (const s of sweepers) await s.stop();
      for (const b of buses) await b.close();
    }
    expect(most, 'sweeps at once').to.equal(1);
  });

  it('lasts half the sweep interval, at least 5 s, like the job lock of the scheduler', () => {
    expect(sweepLeaseMs(1000)).to.equal(5000);
    expect(sweepLeaseMs(120_000)).to.equal(60_000);
  });
});

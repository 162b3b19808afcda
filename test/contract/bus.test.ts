import { expect } from 'chai';
import { BrokerBlockedError } from '../../shared/bus/bus.js';
import { createMemoryBus, type MemoryBus } from '../../shared/bus/memory-bus.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { brokerNames, ROUTING, topology } from '../../shared/topology.js';
import { busBlockingContract, busContract } from './bus.contract.js';

busContract('in-memory', {
  async open() {
    return createMemoryBus();
  },
  async close(bus) {
    await bus.close();
  },
  async dropConnection(bus) {
    const memory = bus as ReturnType<typeof createMemoryBus>;
    memory.setConnected(false);
    memory.setConnected(true);
    return true;
  },
});

const WEDGED_AFTER_MS = 200;

busBlockingContract('in-memory', {
  async open() {
    return createMemoryBus({ wedgedAfterMs: WEDGED_AFTER_MS });
  },
  async close(bus) {
    await bus.close();
  },
  async block(bus) {
    (bus as MemoryBus).block('low on memory');
  },
  async unblock(bus) {
    (bus as MemoryBus).unblock();
  },
  reason: 'low on memory',
  wedgedAfterMs: WEDGED_AFTER_MS,
  stallConfirms: (bus) => (bus as MemoryBus).stallConfirms(),
  releaseConfirms: (bus) => (bus as MemoryBus).releaseConfirms(),
});

describe('in-memory bus: publish blocks', () => {
  const names = brokerNames('blocks');

  async function memoryBus() {
    const log = createMemoryLogger('debug');
    const bus = createMemoryBus({ wedgedAfterMs: 50, confirmTimeoutMs: 150, log });
    await bus.declareTopology(topology(names));
    const publish = () =>
      bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), {}).then(
        () => null,
        (e: unknown) => e,
      );
    return { bus, log, publish };
  }

  it('logs a broker block once when it starts and once when it ends, with its duration, not per publish', async () => {
    const { bus, log, publish } = await memoryBus();
    bus.block('low on memory');
    for (let i = 0; i < 5; i++) expect(await publish()).to.be.instanceOf(BrokerBlockedError);
    bus.publishState();
    bus.block('low on memory'); // the broker repeats itself: still one block
    bus.unblock();
    bus.unblock();
    expect(await publish()).to.equal(null);

    expect(log.lines.filter((l) => l.includes('Broker is blocking publishes (low on memory)'))).to.have.length(1);
    expect(log.lines.filter((l) => /Publishing no longer blocked \(broker unblocked\) after [\d.]+ s \(low on memory\)/.test(l))).to.have.length(1);
    expect(log.lines).to.have.length(2);
  });

  it('lets publishes go again once a stuck backlog reached its confirm timeout, and logs that wedge once', async () => {
    const { bus, log, publish } = await memoryBus();
    bus.stallConfirms();
    const stuck = publish();
    await new Promise((r) => setTimeout(r, 60));
    expect(await publish()).to.be.instanceOf(BrokerBlockedError);
    expect((await stuck) as Error).to.have.property('message', 'no broker confirm within 150 ms');
    expect(bus.publishState()).to.deep.equal({ blocked: false, backlog: { unconfirmed: 0, oldestMs: 0 } });

    // Still wedged: the next publish probes, waits out the threshold, and the block is back (not logged again).
    const probe = publish();
    await new Promise((r) => setTimeout(r, 60));
    expect(bus.publishState().blocked).to.equal(true);
    bus.releaseConfirms();
    expect(await probe).to.equal(null);

    expect(log.lines.filter((l) => l.includes('Broker is not confirming publishes (no publisher confirm for'))).to.have.length(1);
    expect(log.lines.filter((l) => l.includes('Publishing no longer blocked (publisher confirms again)'))).to.have.length(1);
    expect(log.lines).to.have.length(2);
  });

  it('rejects held publishes when the connection is lost, and starts unblocked after it', async () => {
    const { bus, publish } = await memoryBus();
    bus.block('low on disk');
    const waiting = bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), {}, { whenBlocked: 'wait' }).then(
      () => null,
      (e: unknown) => e,
    );
    bus.setConnected(false);
    expect(((await waiting) as Error).message).to.equal('broker unavailable');
    bus.setConnected(true);
    expect(bus.publishState().blocked).to.equal(false);
    expect(await publish()).to.equal(null);
  });
});

import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import sinon from 'sinon';
import { QueueMismatchError, type Bus, type Delivery } from '../../shared/bus/bus.js';
import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import { loadOrchestratorConfig } from '../../shared/config.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createMetrics, type Metrics } from '../../shared/metrics.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import { StoreUnavailableError, type NodeStore } from '../../shared/store/node-store.js';
import { brokerNames, HEADERS, INGEST_DELIVERY_LIMIT, ROUTING, topology } from '../../shared/topology.js';
import { createIngest, type Ingest } from '../../services/ingest/ingest.js';
import { deliveryKey } from '../../services/ingest/parse-delivery.js';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const FLUSH_MS = 20;
const config = loadOrchestratorConfig({
  AUTH_MODE: 'off',
  TIMEOUT_MINUTES: '1',
  INGEST_BATCH_SIZE: '500',
  INGEST_FLUSH_MS: String(FLUSH_MS),
  INGEST_PREFETCH: '2000',
  BROKER_NAMESPACE: 'ingest-test',
});
const broker = brokerNames(config.brokerNamespace);
const names = { inbound: broker.exchanges.agentInbound, ingestQueue: broker.queues.ingest, deadLetterQueue: broker.queues.deadLetter };

type MessageType = 'agent.register' | 'agent.heartbeat' | 'agent.shutdown';
const routeOf = { 'agent.register': ROUTING.register, 'agent.heartbeat': ROUTING.heartbeat, 'agent.shutdown': ROUTING.shutdown };

const registration = (nodeId: string) => ({ nodeId, hostname: `${nodeId}.example`, ipAddress: '10.0.0.7', maxServers: 20 });
const stats = (cpuUsage: number, timestamp = Date.now()) => ({ cpuUsage, memoryUsage: 40, diskUsage: 50, containerCount: 2, timestamp: new Date(timestamp).toISOString() });

/** Counts how the ingest settles its deliveries (the memory bus itself does not say). */
function settlementCountingBus(bus: Bus) {
  const settled = { acked: 0, requeued: 0 };
  const counting: Bus = {
    ...bus,
    consume: (queue, onDelivery, options) =>
      bus.consume(
        queue,
        (d: Delivery) =>
          onDelivery({
            ...d,
            ack: () => {
              settled.acked++;
              d.ack();
            },
            requeue: () => {
              settled.requeued++;
              d.requeue();
            },
          }),
        options,
      ),
  };
  return { bus: counting, settled };
}

/**
 * A store that refuses every call with StoreUnavailableError while `down` is set, like MongoDB during a restart,
 * and fails with `broken` (an unexpected error, a bug) while that is set; it notes the ids read. The next node
 * write waits for `holdNext` when that is set.
 */
function switchableStore(store: NodeStore) {
  const state = { down: false, broken: null as Error | null, reads: [] as string[][], holdNext: null as Promise<void> | null };
  const guard =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      if (state.down) throw new StoreUnavailableError('store unavailable (test)');
      if (state.broken) throw state.broken;
      return fn(...args);
    };
  const wrapped: NodeStore = {
    ...store,
    get: guard(store.get),
    getMany: guard(async (ids: string[]) => {
      state.reads.push([...ids]);
      return store.getMany(ids);
    }),
    write: guard(async (writes) => {
      const hold = state.holdNext;
      state.holdNext = null;
      await hold;
      return store.write(writes);
    }),
    removeFromOutbox: guard(store.removeFromOutbox),
    canaries: guard(store.canaries),
    recordCanaryArrival: guard(store.recordCanaryArrival),
  };
  return { store: wrapped, state };
}

const counterValue = async (counter: Metrics['nodeWrites']) => (await counter.get()).values[0]?.value ?? 0;

describe('ingest batches', () => {
  let fake: sinon.SinonFakeTimers;
  let bus: ReturnType<typeof createMemoryBus>;
  let memoryStore: ReturnType<typeof createMemoryNodeStore>;
  let metrics: Metrics;
  let ingest: Ingest;
  let settled: { acked: number; requeued: number };
  let storeState: ReturnType<typeof switchableStore>['state'];
  let deadLetters: Delivery[];
  let log: ReturnType<typeof createMemoryLogger>;

  beforeEach(async () => {
    // setImmediate stays real: the memory bus delivers with it.
    fake = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'], now: T0 });
    bus = createMemoryBus();
    memoryStore = createMemoryNodeStore({ historyPoints: 10 });
    metrics = createMetrics();
    const counting = settlementCountingBus(bus);
    settled = counting.settled;
    const switchable = switchableStore(memoryStore);
    storeState = switchable.state;
    log = createMemoryLogger('warn');
    ingest = createIngest({ bus: counting.bus, store: switchable.store, log, clock: { now: () => Date.now() }, metrics, config });
    await ingest.start();
    deadLetters = [];
    await bus.consume(
      names.deadLetterQueue,
      (d) => {
        deadLetters.push(d);
        d.ack();
      },
      { prefetch: 100 },
    );
  });

  afterEach(async () => {
    storeState.down = false;
    storeState.broken = null;
    const stopped = ingest.stop();
    await fake.tickAsync(10_000);
    await stopped;
    fake.restore();
  });

  /** Lets deliveries arrive (setImmediate) and flushes (fake timers) until the bus and the batcher are idle. */
  async function settle(rounds = 5, stepMs = FLUSH_MS): Promise<void> {
    for (let i = 0; i < rounds; i++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      await fake.tickAsync(stepMs);
    }
  }

  /** The node ids of the control messages (asks to register again) the ingest sends from now on, in order. */
  async function controlRecipients(): Promise<string[]> {
    const asked: string[] = [];
    await bus.declareQueue({ name: 'ingest-test.control', bindings: [{ exchange: broker.exchanges.agentControl, routingKey: '#' }] });
    await bus.consume(
      'ingest-test.control',
      (d) => {
        asked.push(String((JSON.parse(d.body.toString()) as { nodeId: string }).nodeId));
        d.ack();
      },
      { prefetch: 100 },
    );
    return asked;
  }

  async function publish(type: MessageType, nodeId: string, payload: object, options: { routingKey?: string; raw?: Buffer } = {}): Promise<void> {
    const message = { id: randomUUID(), type, version: 1, sentAt: new Date(Date.now()).toISOString(), nodeId, payload };
    await bus.publish(names.inbound, options.routingKey ?? routeOf[type](nodeId), options.raw ?? message, { messageId: message.id });
  }

  describe('batching', () => {
    it('collapses many heartbeats of one node into one node write', async () => {
      await publish('agent.register', 'node-1', registration('node-1'));
      await settle();
      const [nodeWritesBefore, storeWritesBefore, tripsBefore] = [await counterValue(metrics.nodeWrites), await counterValue(metrics.storeWrites), memoryStore.roundTrips()];

      for (let i = 1; i <= 50; i++) await publish('agent.heartbeat', 'node-1', stats(i, T0 + i));
      await settle();

      expect((await counterValue(metrics.nodeWrites)) - nodeWritesBefore).to.equal(1);
      expect((await counterValue(metrics.storeWrites)) - storeWritesBefore).to.equal(1);
      expect(memoryStore.roundTrips() - tripsBefore, 'one bulk write, no read').to.equal(1);
      expect(settled.acked).to.equal(51);
      expect((await memoryStore.get('node-1'))!.stats).to.deep.include({ cpuUsage: 50, reportedAt: new Date(T0 + 50) });
    });

    it('writes the heartbeats of many nodes with one bulk write, one node write each', async () => {
      const nodes = Array.from({ length: 10 }, (_, i) => `node-${i}`);
      for (const nodeId of nodes) await publish('agent.register', nodeId, registration(nodeId));
      await settle();
      const [nodeWritesBefore, storeWritesBefore] = [await counterValue(metrics.nodeWrites), await counterValue(metrics.storeWrites)];

      for (let beat = 1; beat <= 20; beat++) for (const nodeId of nodes) await publish('agent.heartbeat', nodeId, stats(beat, T0 + beat));
      await settle();

      expect((await counterValue(metrics.nodeWrites)) - nodeWritesBefore).to.equal(10);
      expect((await counterValue(metrics.storeWrites)) - storeWritesBefore).to.equal(1);
      expect(settled.acked).to.equal(10 + 200);
      for (const node of await memoryStore.list()) expect(node.stats!.cpuUsage, node.nodeId).to.equal(20);
    });
  });

  describe('batches side by side', () => {
    it("stores a second batch while the first one's write waits, and holds a node's heartbeat back until the batch with its registration is stored", async () => {
      let release!: () => void;
      storeState.holdNext = new Promise<void>((resolve) => (release = resolve));
      // 500 messages start a batch (INGEST_BATCH_SIZE): the first holds node x's registration, and its write waits.
      for (let i = 0; i < 499; i++) await publish('agent.register', `a-${i}`, registration(`a-${i}`));
      await publish('agent.register', 'x', registration('x'));
      await publish('agent.heartbeat', 'x', stats(42, T0 + 1));
      for (let i = 0; i < 500; i++) await publish('agent.register', `b-${i}`, registration(`b-${i}`));
      await settle(3);

      const whileFirstWaits = { ...settled };
      const xWhileFirstWaits = await memoryStore.get('x');
      release();
      await settle();

      expect(whileFirstWaits, 'the second batch, stored and acknowledged beside the first').to.deep.equal({ acked: 500, requeued: 0 });
      expect(xWhileFirstWaits).to.equal(null);
      expect(deadLetters, "the heartbeat waited for its node's registration").to.deep.equal([]);
      expect((await memoryStore.get('x'))!.stats).to.deep.include({ cpuUsage: 42 });
      expect(settled).to.deep.equal({ acked: 1001, requeued: 0 });
    });
  });

  describe('reads only what it must', () => {
    it('reads an OFFLINE node whose heartbeat arrives, brings it back ONLINE with one node.online, and writes the ONLINE ones without a read', async () => {
      await publish('agent.register', 'up', registration('up'));
      await publish('agent.register', 'down', registration('down'));
      await settle();
      const down = (await memoryStore.get('down'))!;
      await memoryStore.write([{ kind: 'update', nodeId: 'down', expectedRev: down.rev, newRev: randomUUID(), set: { status: 'OFFLINE', statusVersion: 2 }, pushOutbox: [] }]);
      const events: string[] = [];
      await bus.declareQueue({ name: 'ingest-test.events', bindings: [{ exchange: broker.exchanges.nodeEvents, routingKey: '#' }] });
      await bus.consume(
        'ingest-test.events',
        (d) => {
          events.push(d.routingKey);
          d.ack();
        },
        { prefetch: 10 },
      );
      storeState.reads.length = 0;

      await publish('agent.heartbeat', 'up', stats(11, T0 + 1));
      await publish('agent.heartbeat', 'down', stats(22, T0 + 1));
      await settle();

      expect(storeState.reads, 'one read, of the node the refresh did not match').to.deep.equal([['down']]);
      expect((await memoryStore.get('up'))!).to.deep.include({ status: 'ONLINE', statusVersion: 1 });
      expect((await memoryStore.get('down'))!).to.deep.include({ status: 'ONLINE', statusVersion: 3 });
      expect(events).to.deep.equal(['node.online']);
      expect(settled.requeued).to.equal(0);
    });
  });

  describe('behind a backlog', () => {
    it('asks no agent to register again while more than one batch waits or runs beside its own, and asks once it has caught up', async () => {
      const asked = await controlRecipients();

      // Batches of at most 500 nodes here (INGEST_PREFETCH 2000 over 4 batches in flight): two run side by side
      // with the rest waiting, then the last 200 go once nothing else is outstanding.
      for (let i = 0; i < 1200; i++) await publish('agent.heartbeat', `queued-${i}`, stats(1));
      await settle(10);
      const whileBehind = asked.filter((nodeId) => Number(nodeId.slice('queued-'.length)) < 1000);
      const caughtUp = asked.length - whileBehind.length;
      await publish('agent.heartbeat', 'lost-record', stats(1));
      await settle();

      expect(whileBehind).to.deep.equal([]);
      expect(caughtUp, 'the last batch, with less than a batch outstanding').to.equal(200);
      expect(asked.at(-1)).to.equal('lost-record');
      expect(deadLetters).to.have.length(1201);
    });

    it('writes the late heartbeats of a backlog without a read, one statement a node: their newest stats, and no liveness', async () => {
      const nodes = Array.from({ length: 20 }, (_, i) => `late-${i}`);
      for (const nodeId of nodes) await publish('agent.register', nodeId, registration(nodeId));
      await settle();
      // A batch of 500 live heartbeats whose write waits, while 600 heartbeats sent long before they arrive gather
      // behind it (sent 1-30 s after the live ones, delivered 3 min later: late against a 1-minute timeout).
      let release!: () => void;
      storeState.holdNext = new Promise<void>((resolve) => (release = resolve));
      for (let i = 0; i < 500; i++) await publish('agent.heartbeat', nodes[i % 20]!, stats(1, T0 + 1));
      await settle(2);
      await fake.tickAsync(180_000);
      for (let beat = 1; beat <= 30; beat++) for (const nodeId of nodes) await publish('agent.heartbeat', nodeId, stats(beat + 1, T0 + 1 + beat * 1000));
      await settle(2);
      storeState.reads.length = 0;
      const tripsBefore = memoryStore.roundTrips();

      release();
      await settle(10);

      expect(storeState.reads, 'no read').to.deep.equal([]);
      expect(memoryStore.roundTrips() - tripsBefore, 'the live batch, then one bulk write of the late ones').to.equal(2);
      const after = (await memoryStore.get('late-0'))!;
      expect(after.stats).to.deep.include({ cpuUsage: 31, reportedAt: new Date(T0 + 1 + 30_000) });
      expect(after, 'no status change').to.deep.include({ status: 'ONLINE', statusVersion: 1 });
      expect(after.lastHeartbeat!.getTime(), 'lastHeartbeat: the live batch, not the late one').to.be.below(T0 + 10_000);
      expect(after.clockSkewMs, 'the baseline of the live stream').to.be.within(0, 1000);
      const late = (await metrics.messagesIngested.get()).values.find((v) => v.labels.outcome === 'late');
      expect(late?.value).to.equal(600);
      expect(settled).to.deep.equal({ acked: 20 + 500 + 600, requeued: 0 });
    });
  });

  describe('late heartbeats when not behind', () => {
    it('reads the node of a late heartbeat and asks its starved agent to register again (a clock that jumped back, not a backlog)', async () => {
      const asked = await controlRecipients();
      await publish('agent.register', 'jumped', registration('jumped'));
      await settle();
      await fake.tickAsync(180_000);
      storeState.reads.length = 0;

      await publish('agent.heartbeat', 'jumped', stats(7, T0 + 1000));
      await settle();

      expect(storeState.reads, 'read, not written blind').to.deep.equal([['jumped']]);
      expect(asked).to.deep.equal(['jumped']);
      expect((await memoryStore.get('jumped'))!.stats).to.deep.include({ cpuUsage: 7 });
    });
  });

  describe('canaries', () => {
    const canary = (senderId: string, sentAt: number) => ({
      id: randomUUID(),
      type: 'orchestrator.canary',
      version: 1,
      sentAt: new Date(sentAt).toISOString(),
      senderId,
      kind: 'sweeper',
      intervalMs: 1000,
    });

    it('stores the newest canary of each sender with the batch, and acknowledges it only then', async () => {
      await bus.publish(names.inbound, ROUTING.canary('sweeper-a'), canary('sweeper-a', T0 - 2000), { messageId: 'c1' });
      await bus.publish(names.inbound, ROUTING.canary('sweeper-a'), canary('sweeper-a', T0 - 1000), { messageId: 'c2' });
      await publish('agent.register', 'node-1', registration('node-1'));
      await settle();

      const [record] = await memoryStore.canaries();
      expect(record).to.deep.include({ senderId: 'sweeper-a', kind: 'sweeper', sentAt: new Date(T0 - 1000), pathSince: null });
      expect(settled).to.deep.equal({ acked: 3, requeued: 0 });
      expect(deadLetters).to.deep.equal([]);
    });

    it('starts a new run of a sender whose earlier canaries failed to get onto the path, or that arrives stalled', async () => {
      // TIMEOUT_MINUTES=1: a canary is stalled once it took more than 20 s.
      await bus.publish(names.inbound, ROUTING.canary('sweeper-a'), canary('sweeper-a', Date.now() - 10_000), { messageId: 'c1' });
      await settle();
      expect((await memoryStore.canaries())[0], 'slow, not stalled').to.deep.include({ pathSince: null });
      await bus.publish(
        names.inbound,
        ROUTING.canary('sweeper-a'),
        { ...canary('sweeper-a', Date.now()), failedSince: new Date(Date.now() - 900).toISOString() },
        { messageId: 'c2' },
      );
      await settle();
      const failed = (await memoryStore.canaries())[0]!;
      expect(failed.pathSince!.getTime()).to.be.at.least(failed.sentAt!.getTime());
      await bus.publish(names.inbound, ROUTING.canary('sweeper-b'), canary('sweeper-b', Date.now() - 30_000), { messageId: 'c3' });
      await settle();

      expect((await memoryStore.canaries()).find((r) => r.senderId === 'sweeper-b')!.pathSince, 'stalled').to.not.equal(null);
    });

    it('acknowledges nothing while the store cannot record the canary', async () => {
      storeState.down = true;
      await bus.publish(names.inbound, ROUTING.canary('sweeper-a'), canary('sweeper-a', T0), { messageId: 'c1' });
      await settle(10, 200);

      expect(settled.acked).to.equal(0);
      storeState.down = false;
      await settle(10, 1000);
      expect(settled.acked).to.equal(1);
      expect((await memoryStore.canaries())[0]!.sentAt).to.deep.equal(new Date(T0));
    });

    it('dead-letters a canary whose routing key names another sender', async () => {
      await bus.publish(names.inbound, ROUTING.canary('sweeper-b'), canary('sweeper-a', T0), { messageId: 'c1' });
      await settle();

      expect(deadLetters.map((d) => String(d.headers[HEADERS.refusalReason]))).to.deep.equal(['routing key agent.canary.sweeper-b does not match the canary of sweeper-a']);
      expect(await memoryStore.canaries()).to.deep.equal([]);
    });
  });

  describe('refusals', () => {
    const reasonOf = (d: Delivery) => String(d.headers[HEADERS.refusalReason]);

    it('dead-letters malformed JSON, schema violations, routing-key mismatches and unknown nodes with the reason, and keeps serving', async () => {
      await publish('agent.register', 'node-1', registration('node-1'));
      await settle();
      const before = (await memoryStore.get('node-1'))!;

      await publish('agent.heartbeat', 'node-1', {}, { raw: Buffer.from('{"type": "agent.heartbeat", oops') });
      await publish('agent.heartbeat', 'node-1', stats(150));
      await publish('agent.heartbeat', 'node-2', stats(10), { routingKey: ROUTING.heartbeat('node-1') });
      await publish('agent.heartbeat', { $gt: '' } as unknown as string, stats(10), { routingKey: ROUTING.heartbeat('node-1') });
      await publish('agent.heartbeat', 'ghost', stats(10));
      await publish('agent.heartbeat', 'node-1', stats(33, T0 + 5));
      await settle();

      const reasons = deadLetters.map(reasonOf);
      expect(reasons).to.have.length(5);
      expect(
        reasons.find((r) => r === 'malformed JSON'),
        'malformed JSON',
      ).to.not.equal(undefined);
      expect(
        reasons.find((r) => r.startsWith('invalid message') && r.includes('cpuUsage')),
        'schema',
      ).to.not.equal(undefined);
      expect(
        reasons.find((r) => r.startsWith('invalid message') && r.includes('nodeId')),
        'operator injection',
      ).to.not.equal(undefined);
      expect(
        reasons.find((r) => r.startsWith('routing key')),
        'routing key mismatch',
      ).to.not.equal(undefined);
      expect(
        reasons.find((r) => r.startsWith('unknown node')),
        'unknown node',
      ).to.not.equal(undefined);
      const malformed = deadLetters.find((d) => reasonOf(d) === 'malformed JSON')!;
      expect(malformed.body.toString()).to.equal('{"type": "agent.heartbeat", oops');
      expect(malformed.headers[HEADERS.originalRoutingKey]).to.equal(ROUTING.heartbeat('node-1'));

      const after = (await memoryStore.get('node-1'))!;
      expect(after.stats!.cpuUsage, 'only the valid heartbeat changed the node').to.equal(33);
      expect(after).to.deep.include({ status: before.status, statusVersion: before.statusVersion, hostname: before.hostname });
      expect(await memoryStore.get('ghost')).to.equal(null);
      expect(await bus.queueDepth(names.ingestQueue)).to.equal(0);
      expect(settled).to.deep.equal({ acked: 7, requeued: 0 });
    });
  });

  describe('store outage', () => {
    it('acknowledges nothing while the store is unavailable and stores everything once it is back', async () => {
      await publish('agent.register', 'node-1', registration('node-1'));
      await settle();
      const ackedBefore = settled.acked;

      storeState.down = true;
      await publish('agent.register', 'node-2', registration('node-2'));
      for (let i = 1; i <= 5; i++) await publish('agent.heartbeat', 'node-1', stats(i * 10, T0 + 100 + i));
      await settle(20, 500);

      expect(settled.acked - ackedBefore, 'acked during the outage').to.equal(0);
      expect(settled.requeued).to.equal(0);
      expect(deadLetters).to.deep.equal([]);
      expect(ingest.isHealthy()).to.equal(false);
      expect(await memoryStore.get('node-2')).to.equal(null);

      storeState.down = false;
      await settle(10, 1000);

      expect(settled.acked - ackedBefore).to.equal(6);
      expect(deadLetters).to.deep.equal([]);
      expect(ingest.isHealthy()).to.equal(true);
      expect((await memoryStore.get('node-2'))!.status).to.equal('ONLINE');
      expect((await memoryStore.get('node-1'))!.stats!.cpuUsage).to.equal(50);
    });
  });

  describe('a batch that keeps failing', () => {
    const deadLetteredFor = async (reason: string) => (await metrics.deadLettered.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;

    it(`gives it back after a back-off, logs the error once, and the queue dead-letters it once given back ${INGEST_DELIVERY_LIMIT} times, reason delivery_limit`, async () => {
      await publish('agent.register', 'node-1', registration('node-1'));
      await settle();
      const ackedBefore = settled.acked;

      storeState.broken = new Error('a bug in the write');
      await publish('agent.heartbeat', 'node-1', stats(10, T0 + 1));
      // Back-offs 100 ms doubling: 6.3 s for the first delivery and the five redeliveries.
      await settle(40, 250);

      expect(settled.requeued, 'given back once per delivery').to.equal(INGEST_DELIVERY_LIMIT + 1);
      expect(settled.acked - ackedBefore).to.equal(0);
      expect(deadLetters).to.have.length(1);
      const [letter] = deadLetters;
      expect(letter!.routingKey).to.equal(ROUTING.heartbeat('node-1'));
      expect(letter!.headers).to.include({ 'x-first-death-reason': 'delivery_limit', 'x-first-death-queue': names.ingestQueue });
      expect(await bus.queueDepth(names.ingestQueue)).to.equal(0);
      expect(log.lines.filter((l) => l.includes('Ingest batch failed unexpectedly, retrying with back-off: a bug in the write'))).to.have.length(1);
      expect(log.lines.filter((l) => l.includes('1 agent message(s) failed on their last delivery (given back 5 times before)'))).to.have.length(1);
      expect(await deadLetteredFor('delivery limit')).to.equal(1);

      // It no longer blocks anything: once the fault is gone the next heartbeat is stored.
      storeState.broken = null;
      await publish('agent.heartbeat', 'node-1', stats(20, T0 + 2));
      await settle();
      expect((await memoryStore.get('node-1'))!.stats!.cpuUsage).to.equal(20);
    });

    it('stores a batch that failed once when it is delivered again, and dead-letters nothing', async () => {
      await publish('agent.register', 'node-1', registration('node-1'));
      await settle();
      storeState.broken = new Error('once');

      await publish('agent.heartbeat', 'node-1', stats(30, T0 + 1));
      await settle(1, 50);
      expect(log.lines.filter((l) => l.includes('Ingest batch failed unexpectedly, retrying with back-off: once'))).to.have.length(1);
      storeState.broken = null;
      await settle(10, 100);

      expect(settled.requeued).to.equal(1);
      expect(deadLetters).to.deep.equal([]);
      expect(await deadLetteredFor('delivery limit')).to.equal(0);
      expect((await memoryStore.get('node-1'))!.stats!.cpuUsage).to.equal(30);
    });
  });
});

describe('ingest start', () => {
  it('fails, saying how to migrate it once, when the broker holds the ingest queue with other arguments (the classic queue of earlier versions)', async () => {
    const bus = createMemoryBus();
    const classic = topology(broker);
    classic.queues = classic.queues.map((q) => (q.name === broker.queues.ingest ? { ...q, arguments: { 'x-dead-letter-exchange': broker.exchanges.deadLetter } } : q));
    await bus.declareTopology(classic);
    const ingest = createIngest({
      bus,
      store: createMemoryNodeStore({ historyPoints: 0 }),
      log: createMemoryLogger('warn'),
      clock: { now: () => Date.now() },
      metrics: createMetrics(),
      config,
    });

    const refused = await ingest.start().catch((e: unknown) => e);

    expect(refused).to.be.instanceOf(QueueMismatchError);
    expect(refused).to.include({ queue: broker.queues.ingest });
    expect((refused as Error).message).to.include(`The broker holds the queue ${broker.queues.ingest} with another type or other arguments than this version declares`);
    expect((refused as Error).message).to.include('`npm run ingest -- --migrate-queue`');
    await bus.close();
  });
});

describe('the key that orders deliveries in batches', () => {
  const delivery = (routingKey: string) => ({ routingKey }) as Delivery;

  it("is the node for all of a node's message types (node ids may hold dots), the sender for canaries, else the routing key", () => {
    const node = 'web-1.eu.example';
    const keys = [ROUTING.register(node), ROUTING.heartbeat(node), ROUTING.shutdown(node)].map((k) => deliveryKey(delivery(k)));

    expect(new Set(keys)).to.deep.equal(new Set([`node:${node}`]));
    expect(deliveryKey(delivery(ROUTING.heartbeat('web-2')))).to.not.equal(keys[0]);
    expect(deliveryKey(delivery(ROUTING.canary('sweeper-a')))).to.equal('agent.canary.sweeper-a');
    expect(deliveryKey(delivery('agent.unknown.x'))).to.equal('agent.unknown.x');
  });
});

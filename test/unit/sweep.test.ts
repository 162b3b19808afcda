import { expect } from 'chai';
import { BusUnavailableError, type Bus } from '../../shared/bus/bus.js';
import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import { manualClock } from '../../shared/clock.js';
import { createEventPublisher } from '../../shared/events/event-publisher.js';
import { createMemoryLogger } from '../../shared/logger.js';
import type { ClusterEvent, NodeEvent } from '../../shared/messages/index.js';
import { createMetrics } from '../../shared/metrics.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { brokerNames, ROUTING, topology } from '../../shared/topology.js';
import { createSweep, type SweepDeps } from '../../services/sweeper/sweep.js';
import { insert, nodeRecord, update } from '../contract/node-fixtures.js';

const SECOND = 1000;
const TIMEOUT = 60 * SECOND;
const HOLD = 2 * TIMEOUT;
const CANARY_INTERVAL = 5 * SECOND;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

/** Lets the memory bus deliver (it pumps on setImmediate). */
const delivered = () => new Promise<void>((resolve) => setImmediate(resolve));

interface WorldOptions {
  /** Wraps the store the sweep sees (the test keeps the real one). */
  storeSeenBySweep?: (store: NodeStore) => NodeStore;
  /** Wraps the bus the sweep publishes on (the subscriber keeps the real one). */
  busSeenBySweep?: (bus: Bus) => Bus;
  afterMark?: SweepDeps['afterMark'];
  batchSize?: number;
}

/** A sweeper against the in-memory store and bus, a manual clock, and a subscriber bound to every node event. */
async function world(options: WorldOptions = {}) {
  const clock = manualClock(T0);
  const store = createMemoryNodeStore({ historyPoints: 10 });
  const bus = createMemoryBus();
  const names = brokerNames('sweep-test');
  await bus.declareTopology(topology(names));
  const subscriber = await bus.declareQueue({ name: 'subscriber', bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: '#' }] });
  const received: Array<{ routingKey: string; messageId?: string; body: unknown }> = [];
  await bus.consume(
    subscriber,
    (d) => {
      received.push({ routingKey: d.routingKey, messageId: d.messageId, body: JSON.parse(d.body.toString()) as unknown });
      d.ack();
    },
    { prefetch: 100 },
  );
  const log = createMemoryLogger('debug');
  const metrics = createMetrics();
  const seen = options.storeSeenBySweep?.(store) ?? store;
  const publishingBus = options.busSeenBySweep?.(bus) ?? bus;
  const events = createEventPublisher({ bus: publishingBus, store: seen, exchange: names.exchanges.nodeEvents, log, metrics });
  const sweepOnce = createSweep({
    store: seen,
    bus: publishingBus,
    events,
    nodeEventsExchange: names.exchanges.nodeEvents,
    log,
    clock,
    metrics,
    config: {
      timeoutMs: TIMEOUT,
      sweep: { batchSize: options.batchSize ?? 500, massSilence: { enabled: true, share: 0.5, minNodes: 4, holdMs: HOLD } },
    },
    afterMark: options.afterMark,
  });

  const w = {
    clock,
    store,
    log,
    received,
    /** A canary sender whose canaries have made the trip since `since`, the last one just now. */
    async pathProvenSince(since: number) {
      await store.recordCanarySender({ senderId: 'sweeper-1', kind: 'sweeper', intervalMs: CANARY_INTERVAL, aliveAt: new Date(clock.now()) });
      await store.recordCanaryArrival({ senderId: 'sweeper-1', kind: 'sweeper', intervalMs: CANARY_INTERVAL, sentAt: new Date(clock.now()), pathSince: new Date(since) });
    },
    /** Nodes whose last heartbeat was `silentForMs` ago. */
    async nodes(ids: string[], silentForMs: number, status: 'ONLINE' | 'OFFLINE' = 'ONLINE') {
      await store.write(ids.map((id) => insert(nodeRecord(id, { status, statusVersion: 1, lastHeartbeat: new Date(clock.now() - silentForMs), outbox: [] }))));
    },
    /** Moves time on; canaries keep making the trip meanwhile, as they do while the path works. */
    async advance(ms: number) {
      clock.advance(ms);
      const [record] = await store.canaries();
      if (record?.sentAt) await w.pathProvenSince(record.pathSince?.getTime() ?? T0 - 10 * TIMEOUT);
    },
    async sweep() {
      const outcome = await sweepOnce();
      await delivered();
      return outcome;
    },
    offlineEvents: () => received.filter((r) => r.routingKey === ROUTING.nodeOffline).map((r) => r.body as NodeEvent),
    clusterEvents: () => received.filter((r) => r.routingKey === ROUTING.clusterDegraded).map((r) => r.body as ClusterEvent),
  };
  return w;
}

const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

/** The store the sweep sees, counting the calls of each method (each a store query or bulk write), with their arguments. */
function countingStore() {
  const calls: Array<{ method: string; args: unknown[] }> = [];
  const wrap = (store: NodeStore): NodeStore =>
    new Proxy(store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          calls.push({ method: String(property), args });
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  const count = (method: string) => calls.filter((c) => c.method === method).length;
  return { wrap, calls, count, reset: () => calls.splice(0) };
}

describe('sweep', () => {
  describe('timeouts', () => {
    it('marks a node OFFLINE once its last heartbeat is older than the timeout, with one node.offline event, reason timeout', async () => {
      const w = await world();
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(['silent'], TIMEOUT + SECOND);
      await w.nodes(['fresh'], 10 * SECOND);
      await w.nodes(['at-the-timeout'], TIMEOUT);
      await w.nodes(['gone'], 10 * TIMEOUT, 'OFFLINE');

      const outcome = await w.sweep();

      expect(outcome).to.deep.equal({ kind: 'marked', nodeIds: ['silent'] });
      const silent = (await w.store.get('silent'))!;
      expect(silent).to.deep.include({ status: 'OFFLINE', statusVersion: 2, outbox: [] });
      expect(silent.statusChangedAt).to.deep.equal(new Date(T0));
      expect((await w.store.list({ status: 'ONLINE' })).map((n) => n.nodeId)).to.deep.equal(['at-the-timeout', 'fresh']);
      const events = w.offlineEvents();
      expect(events).to.have.length(1);
      expect(events[0]).to.deep.include({ type: 'node.offline', nodeId: 'silent', status: 'OFFLINE', previousStatus: 'ONLINE', statusVersion: 2, reason: 'timeout' });
      expect(w.received[0]!.messageId, 'the broker message id is the eventId').to.equal(events[0]!.eventId);
      expect(w.log.lines.filter((l) => l.includes('Node silent missed heartbeat, marking as OFFLINE'))).to.have.length(1);
    });

    it('does nothing to a node it already marked: a second sweep publishes no second event', async () => {
      const w = await world();
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(['silent'], TIMEOUT + SECOND);
      await w.sweep();

      await w.advance(10 * SECOND);
      const second = await w.sweep();

      expect(second).to.deep.equal({ kind: 'marked', nodeIds: [] });
      expect(w.offlineEvents()).to.have.length(1);
      expect((await w.store.get('silent'))!.statusVersion).to.equal(2);
    });

    it('marks every expired node when there are more than one batch of them', async () => {
      const w = await world({ batchSize: 2 });
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('silent', 5), 2 * TIMEOUT);
      await w.nodes(ids('fresh', 10), SECOND);

      const outcome = await w.sweep();

      expect(outcome.kind === 'marked' && [...outcome.nodeIds].sort()).to.deep.equal(ids('silent', 5));
      expect(w.offlineEvents()).to.have.length(5);
    });

    it('lets a heartbeat stored between its read and its write win', async () => {
      let raced = false;
      const w = await world({
        storeSeenBySweep: (store) => ({
          ...store,
          async write(writes) {
            if (!raced) {
              // The ingest stores a heartbeat for the node the sweep has just read as expired.
              raced = true;
              const current = (await store.get('node-1'))!;
              await store.write([update('node-1', current.rev, { lastHeartbeat: new Date(T0) })]);
            }
            return store.write(writes);
          },
        }),
      });
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(['node-1'], TIMEOUT + SECOND);

      const outcome = await w.sweep();

      expect(outcome).to.deep.equal({ kind: 'marked', nodeIds: [] });
      expect(await w.store.get('node-1')).to.deep.include({ status: 'ONLINE', statusVersion: 1, outbox: [] });
      expect(w.offlineEvents()).to.deep.equal([]);
    });
  });

  describe('heartbeat path coverage (canaries)', () => {
    it('marks nobody while no canary has made the trip', async () => {
      const w = await world();
      await w.nodes(['node-1'], 10 * TIMEOUT);

      const outcome = await w.sweep();

      expect(outcome).to.deep.include({ kind: 'held', reason: 'path-down' });
      expect((await w.store.get('node-1'))!.status).to.equal('ONLINE');
      expect(w.offlineEvents()).to.deep.equal([]);
      expect(w.log.lines.filter((l) => l.includes('Heartbeat path down'))).to.have.length(1);
    });

    it('while canaries stop arriving, marks only nodes silent for a timeout before the last one, and logs the break once', async () => {
      const w = await world();
      await w.pathProvenSince(T0 - 10 * TIMEOUT); // the last canary that made the trip: now, T0
      await w.nodes(['silent-before'], TIMEOUT + SECOND);
      await w.nodes(['alive-then'], SECOND);
      w.clock.advance(5 * TIMEOUT); // nothing arrives any more (a broker alarm, say); the sender still runs
      await w.store.recordCanarySender({ senderId: 'sweeper-1', kind: 'sweeper', intervalMs: CANARY_INTERVAL, aliveAt: new Date(w.clock.now()) });

      const first = await w.sweep();
      const second = await w.sweep();

      expect(first).to.deep.equal({ kind: 'marked', nodeIds: ['silent-before'] });
      expect(second).to.deep.equal({ kind: 'marked', nodeIds: [] });
      expect((await w.store.get('alive-then'))!.status, 'its silence lies in unproven time').to.equal('ONLINE');
      expect(w.log.lines.filter((l) => l.includes('Heartbeat path down'))).to.have.length(1);
    });

    it('gives every node a full timeout after the path comes back before marking it', async () => {
      const w = await world();
      await w.nodes(['node-1'], 10 * TIMEOUT);
      await w.pathProvenSince(T0 - 10 * SECOND);

      const justRecovered = await w.sweep();
      await w.advance(TIMEOUT - 20 * SECOND);
      const almostATimeout = await w.sweep();
      await w.advance(11 * SECOND);
      const afterATimeout = await w.sweep();

      expect(justRecovered).to.deep.include({ kind: 'held', reason: 'path-recovering' });
      expect(almostATimeout).to.deep.include({ kind: 'held', reason: 'path-recovering' });
      expect(afterATimeout).to.deep.equal({ kind: 'marked', nodeIds: ['node-1'] });
      expect(w.offlineEvents()).to.have.length(1);
    });
  });

  describe('outbox', () => {
    it('publishes an event left in the outbox at the next sweep, with the same eventId, once', async () => {
      let failures = 1;
      const w = await world({
        afterMark: async () => {
          if (failures-- > 0) throw new Error('sweeper killed between marking and publishing');
        },
      });
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(['node-1'], TIMEOUT + SECOND);

      const error = await w.sweep().then(
        () => null,
        (e: Error) => e,
      );
      const stored = (await w.store.get('node-1'))!;
      expect(error?.message).to.include('killed');
      expect(stored.status).to.equal('OFFLINE');
      expect(stored.outbox).to.have.length(1);
      expect(w.received).to.deep.equal([]);

      await w.advance(5 * SECOND);
      const next = await w.sweep();

      expect(next).to.deep.equal({ kind: 'marked', nodeIds: [] });
      expect(w.offlineEvents()).to.have.length(1);
      expect(w.offlineEvents()[0]!.eventId).to.equal(stored.outbox[0]!.eventId);
      expect((await w.store.get('node-1'))!.outbox).to.deep.equal([]);

      await w.advance(5 * SECOND);
      await w.sweep();
      expect(w.offlineEvents(), 'published once').to.have.length(1);
    });

    it('leaves an event younger than the outbox grace (5 s) to the process that stored it', async () => {
      const w = await world();
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      const young = {
        eventId: 'e-young',
        type: 'node.online',
        version: 1,
        nodeId: 'node-1',
        status: 'ONLINE',
        previousStatus: 'OFFLINE',
        statusVersion: 2,
        lastHeartbeat: new Date(T0).toISOString(),
        occurredAt: new Date(T0 - 200).toISOString(),
        reason: 'heartbeat',
      } as const;
      await w.store.write([insert(nodeRecord('node-1', { statusVersion: 2, lastHeartbeat: new Date(T0), outbox: [young] }))]);

      await w.sweep();
      const atOnce = w.received.length;
      await w.advance(5 * SECOND);
      await w.sweep();

      expect(atOnce).to.equal(0);
      expect(w.received.map((r) => (r.body as NodeEvent).eventId)).to.deep.equal(['e-young']);
    });
  });

  describe('store work per sweep', () => {
    it('reads the expired nodes with one query, marks them with one bulk write, clears their outbox with one more, and counts no fleet for 2 silent nodes', async () => {
      const counting = countingStore();
      const w = await world({ storeSeenBySweep: counting.wrap });
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('silent', 2), TIMEOUT + SECOND);
      await w.nodes(ids('alive', 100), SECOND);
      await w.sweep(); // the first sweep of a process also drains the outbox
      await w.nodes(ids('later', 2), TIMEOUT + SECOND);
      counting.reset();

      const outcome = await w.sweep();

      expect(outcome.kind === 'marked' && [...outcome.nodeIds].sort()).to.deep.equal(ids('later', 2));
      expect(counting.calls.map((c) => c.method).sort()).to.deep.equal(['canaries', 'findExpired', 'guardState', 'removeFromOutbox', 'write']);
      const [writes] = counting.calls.find((c) => c.method === 'write')!.args as [unknown[]];
      expect(writes).to.have.length(2);
      const [removals] = counting.calls.find((c) => c.method === 'removeFromOutbox')!.args as [Array<{ nodeId: string }>];
      expect(removals.map((r) => r.nodeId).sort()).to.deep.equal(ids('later', 2));
      expect((await w.store.get('later-0'))!.outbox).to.deep.equal([]);
    });

    it('counts the ONLINE nodes only as far as the guard needs: 3 silent of 100 stop the count at 7', async () => {
      const counting = countingStore();
      const w = await world({ storeSeenBySweep: counting.wrap });
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('silent', 3), TIMEOUT + SECOND);
      await w.nodes(ids('alive', 97), SECOND);

      const outcome = await w.sweep();

      expect(outcome.kind === 'marked' && outcome.nodeIds).to.have.length(3);
      expect(counting.calls.filter((c) => c.method === 'countOnline').map((c) => c.args)).to.deep.equal([[7]]);
      expect(counting.count('countByStatus') + counting.count('countExpired')).to.equal(0);
    });

    it('reads past a full first page to count the silent nodes exactly, with one query and no count of them', async () => {
      const counting = countingStore();
      const w = await world({ storeSeenBySweep: counting.wrap, batchSize: 2 });
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('node', 7), TIMEOUT + SECOND);
      await w.nodes(ids('alive', 3), SECOND);

      const outcome = await w.sweep();

      expect(outcome).to.deep.equal({ kind: 'held', reason: 'mass-silence', silent: 7 });
      expect(w.clusterEvents()[0]).to.deep.include({ silentNodes: 7, onlineNodes: 10 });
      expect(counting.count('findExpired')).to.equal(1);
      expect(counting.count('countExpired')).to.equal(0);
      expect(counting.count('write')).to.equal(0);
    });

    it('drains the outbox at its first sweep, then not at every sweep', async () => {
      const counting = countingStore();
      const w = await world({ storeSeenBySweep: counting.wrap });
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('alive', 3), SECOND);

      await w.sweep();
      const first = counting.count('findWithOutbox');
      for (let i = 0; i < 5; i++) {
        await w.advance(5 * SECOND);
        await w.sweep();
      }
      const withinAPeriod = counting.count('findWithOutbox') - first;
      await w.advance(10 * SECOND);
      await w.sweep();

      expect(first).to.equal(1);
      expect(withinAPeriod, 'five sweeps within 30 s').to.equal(0);
      expect(counting.count('findWithOutbox') - first, 'after 30 s').to.equal(1);
    });
  });

  describe('publishing', () => {
    it('publishes the events of a page all at once: a confirm holds up only the events of its own node', async () => {
      let inFlight = 0;
      let mostInFlight = 0;
      const w = await world({
        busSeenBySweep: (bus) => ({
          ...bus,
          async publish(...args: Parameters<Bus['publish']>) {
            inFlight++;
            mostInFlight = Math.max(mostInFlight, inFlight);
            await new Promise((resolve) => setTimeout(resolve, 5));
            inFlight--;
            return bus.publish(...args);
          },
        }),
      });
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('silent', 3), TIMEOUT + SECOND);
      await w.nodes(ids('alive', 7), SECOND);

      await w.sweep();

      expect(mostInFlight).to.equal(3);
      expect(w.offlineEvents()).to.have.length(3);
    });

    it("writes the next page while the page before is being published, at most one page's events in flight", async () => {
      const counting = countingStore();
      const w = await world({
        storeSeenBySweep: counting.wrap,
        batchSize: 2,
        busSeenBySweep: (bus) => ({
          ...bus,
          async publish(...args: Parameters<Bus['publish']>) {
            await new Promise((resolve) => setTimeout(resolve, 5));
            return bus.publish(...args);
          },
        }),
      });
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('silent', 5), TIMEOUT + SECOND);
      await w.nodes(ids('alive', 15), SECOND);
      await w.sweep(); // the first sweep of a process also drains the outbox
      await w.nodes(ids('later', 5), TIMEOUT + SECOND);
      counting.reset();

      await w.sweep();

      const order = counting.calls.map((c) => c.method).filter((m) => m === 'write' || m === 'removeFromOutbox');
      expect(order).to.deep.equal(['write', 'write', 'removeFromOutbox', 'write', 'removeFromOutbox', 'removeFromOutbox']);
      expect(w.offlineEvents()).to.have.length(10);
      for (const id of ids('later', 5)) expect((await w.store.get(id))!.outbox).to.deep.equal([]);
    });

    it('leaves the events the broker refused in the outbox, logs that once for the sweep, and the next drain publishes them', async () => {
      let refusing = true;
      const w = await world({
        busSeenBySweep: (bus) => ({
          ...bus,
          async publish(exchange, routingKey, body, options) {
            const nodeId = (body as NodeEvent).nodeId;
            if (refusing && nodeId !== 'silent-0') throw new BusUnavailableError('broker refused the message (test)');
            return bus.publish(exchange, routingKey, body, options);
          },
        }),
      });
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('silent', 3), TIMEOUT + SECOND);
      await w.nodes(ids('alive', 7), SECOND);

      const outcome = await w.sweep();

      expect(outcome.kind === 'marked' && [...outcome.nodeIds].sort()).to.deep.equal(ids('silent', 3));
      expect(w.offlineEvents().map((e) => e.nodeId)).to.deep.equal(['silent-0']);
      expect((await w.store.get('silent-0'))!.outbox).to.deep.equal([]);
      expect((await w.store.get('silent-1'))!.outbox).to.have.length(1);
      expect(w.log.lines.filter((l) => l.includes('left in the outbox'))).to.have.length(1);
      expect(w.log.lines.find((l) => l.includes('left in the outbox'))).to.include('node.offline of 2 nodes');

      refusing = false;
      await w.advance(5 * SECOND);
      await w.sweep();

      expect(
        w
          .offlineEvents()
          .map((e) => e.nodeId)
          .sort(),
      ).to.deep.equal(ids('silent', 3));
      expect((await w.store.get('silent-1'))!.outbox).to.deep.equal([]);
    });
  });

  describe('mass-silence guard', () => {
    it('marks nobody when all 10 nodes go silent at once, and publishes one cluster.degraded event', async () => {
      const w = await world();
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('node', 10), TIMEOUT + SECOND);

      const first = await w.sweep();
      await w.advance(10 * SECOND);
      const second = await w.sweep();

      expect(first).to.deep.equal({ kind: 'held', reason: 'mass-silence', silent: 10 });
      expect(second).to.deep.equal({ kind: 'held', reason: 'mass-silence', silent: 10 });
      expect(await w.store.countByStatus()).to.deep.equal({ ONLINE: 10, OFFLINE: 0 });
      expect(w.offlineEvents()).to.deep.equal([]);
      const degraded = w.clusterEvents();
      expect(degraded).to.have.length(1);
      expect(degraded[0]).to.deep.include({ type: 'cluster.degraded', silentNodes: 10, onlineNodes: 10 });
    });

    it('marks the silent nodes when only 2 of 10 go silent', async () => {
      const w = await world();
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('silent', 2), TIMEOUT + SECOND);
      await w.nodes(ids('alive', 8), SECOND);

      const outcome = await w.sweep();

      expect(outcome.kind === 'marked' && [...outcome.nodeIds].sort()).to.deep.equal(ids('silent', 2));
      expect(w.offlineEvents()).to.have.length(2);
      expect(w.clusterEvents()).to.deep.equal([]);
    });

    it('marks them after all once the silence outlasts the hold, then releases the guard', async () => {
      const w = await world();
      await w.pathProvenSince(T0 - 10 * TIMEOUT);
      await w.nodes(ids('node', 10), TIMEOUT + SECOND);
      await w.sweep();

      await w.advance(HOLD - SECOND);
      const stillHeld = await w.sweep();
      await w.advance(SECOND);
      const released = await w.sweep();
      await w.advance(10 * SECOND);
      await w.sweep();

      expect(stillHeld).to.deep.include({ kind: 'held', reason: 'mass-silence' });
      expect(released.kind === 'marked' && released.nodeIds).to.have.length(10);
      expect(w.offlineEvents()).to.have.length(10);
      expect(w.clusterEvents()).to.have.length(1);
      expect(await w.store.guardState()).to.deep.equal({ heldSince: null, eventId: null });
    });
  });
});

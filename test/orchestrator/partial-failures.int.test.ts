import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { BusUnavailableError, type Bus, type Delivery } from '../../shared/bus/bus.js';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import { systemClock } from '../../shared/clock.js';
import { loadOrchestratorConfig } from '../../shared/config.js';
import { pathCoverage } from '../../shared/domain/path-coverage.js';
import { createMemoryLogger } from '../../shared/logger.js';
import type { NodeEvent } from '../../shared/messages/index.js';
import { createMetrics } from '../../shared/metrics.js';
import { createMemoryScheduler } from '../../shared/scheduler/memory-scheduler.js';
import { createMongoNodeStore } from '../../shared/store/mongo-node-store.js';
import { StoreUnavailableError, type NodeStore } from '../../shared/store/node-store.js';
import { brokerNames, ROUTING, topology } from '../../shared/topology.js';
import { createIngest } from '../../services/ingest/ingest.js';
import { createSweeper } from '../../services/sweeper/sweeper.js';
import { sleep } from '../support/fleet.js';
import { registerBody, statsBody } from '../support/orchestrator.js';
import { eventually, mongoUrlFor, RABBITMQ_URL, requireServices, uniqueName } from '../support/services.js';

const TIMEOUT_MS = 1000;

/**
 * An ingest and a sweeper in this process, each with its own broker connection as separate processes have,
 * on the shared RabbitMQ and MongoDB-compatible server, in a namespace and database of their own. Each may be
 * given its own view of the store and of the bus, so that a test can break one side only.
 */
async function startParts(options: { ingestStore?: (store: NodeStore) => NodeStore; sweeperBus?: (bus: Bus) => Bus } = {}) {
  const namespace = uniqueName('pf');
  const database = namespace.replace(/-/g, '_');
  const config = loadOrchestratorConfig({
    RABBITMQ_URL,
    MONGO_URL: mongoUrlFor(database),
    TIMEOUT_MINUTES: String(TIMEOUT_MS / 60_000),
    HEALTH_CHECK_INTERVAL: '250',
    INGEST_FLUSH_MS: '20',
    BROKER_NAMESPACE: namespace,
    LOG_LEVEL: 'info',
    MASS_SILENCE_GUARD: 'false',
    AUTH_MODE: 'off',
  });
  const names = brokerNames(namespace);
  const log = createMemoryLogger('info');
  const metrics = createMetrics();
  const store = await createMongoNodeStore({ url: config.mongoUrl, historyPoints: 0, serverSelectionTimeoutMs: 2000 });
  await store.ensureIndexes();
  const bus = await createRabbitBus({ url: config.rabbitmqUrl, log, name: `test-${namespace}`, initialMaxRetries: 3 });
  await bus.declareTopology(topology(names));
  const sweeperBus = await createRabbitBus({ url: config.rabbitmqUrl, log, name: `test-sweeper-${namespace}`, initialMaxRetries: 3 });

  // A subscriber's own queue on node.events, keeping each delivery's message id.
  const subscriber = `${namespace}.subscriber`;
  await bus.declareQueue({ name: subscriber, durable: true, bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: '#' }] });
  const received: Array<{ event: NodeEvent; messageId: string | undefined }> = [];
  await bus.consume(subscriber, (d: Delivery) => (received.push({ event: JSON.parse(d.body.toString()) as NodeEvent, messageId: d.messageId }), d.ack()), { prefetch: 100 });

  const ingest = createIngest({ bus, store: options.ingestStore?.(store) ?? store, log: log.child({ component: 'ingest' }), clock: systemClock, metrics, config });
  await ingest.start();
  const sweeper = createSweeper({
    bus: options.sweeperBus?.(sweeperBus) ?? sweeperBus,
    store,
    scheduler: createMemoryScheduler(),
    log: log.child({ component: 'sweeper' }),
    clock: systemClock,
    metrics,
    config,
  });
  await sweeper.start();

  async function publishAgent(type: 'agent.register' | 'agent.heartbeat', nodeId: string, payload: object): Promise<void> {
    const id = randomUUID();
    const key = type === 'agent.register' ? ROUTING.register(nodeId) : ROUTING.heartbeat(nodeId);
    await bus.publish(names.exchanges.agentInbound, key, { id, type, version: 1, sentAt: new Date().toISOString(), nodeId, payload }, { messageId: id });
  }

  return {
    store,
    log,
    received,
    events: (type: string, nodeId?: string) => received.map((r) => r.event).filter((e) => e.type === type && (!nodeId || e.nodeId === nodeId)),
    publishAgent,
    async stop() {
      await sweeper.stop().catch(() => undefined);
      await ingest.stop().catch(() => undefined);
      for (const q of [subscriber, ...Object.values(names.queues)]) await bus.deleteQueue(q).catch(() => undefined);
      for (const e of Object.values(names.exchanges)) await bus.deleteExchange(e).catch(() => undefined);
      await store.connection.dropDatabase().catch(() => undefined);
      await sweeperBus.close();
      await bus.close();
      await store.close();
    },
  };
}

describe('partial failures @int', function () {
  this.timeout(60_000);
  before(requireServices('rabbitmq', 'mongodb'));
  let parts: Awaited<ReturnType<typeof startParts>> | undefined;
  afterEach(async () => {
    await parts?.stop();
    parts = undefined;
  });

  it("marks no node OFFLINE while the ingest's store writes fail for three timeouts (reads and broker working), then keeps the beating nodes ONLINE and marks the silent one once", async () => {
    // The ingest's view of the store: while `failing`, every write it makes is refused, as a store that lost
    // its disk or its primary would refuse them; reads, and the sweeper's own view, keep working.
    let failing = false;
    let refused = 0;
    const WRITES = new Set<PropertyKey>(['write', 'recordCanaryArrival', 'removeFromOutbox']);
    const refusingWrites = (store: NodeStore): NodeStore =>
      new Proxy(store, {
        get(target, prop) {
          const value = Reflect.get(target, prop, target) as unknown;
          if (typeof value !== 'function') return value;
          if (!WRITES.has(prop)) return value.bind(target);
          return async (...args: unknown[]) => {
            if (failing) {
              refused++;
              throw new StoreUnavailableError('not writable (test: the store refuses writes)');
            }
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
    parts = await startParts({ ingestStore: refusingWrites });
    const p = parts;
    const beating = ['keeps-beating-1', 'keeps-beating-2'];
    const silent = 'goes-silent';
    const all = [...beating, silent];
    for (const id of all) await p.publishAgent('agent.register', id, registerBody(id));
    const quiet = new Set<string>();
    const newestConfirmed = new Map<string, number>();
    let stopped = false;
    const fleet = (async () => {
      while (!stopped) {
        await Promise.all(
          all
            .filter((id) => !quiet.has(id))
            .map(async (id) => {
              const body = statsBody();
              await p.publishAgent('agent.heartbeat', id, body).then(
                () => newestConfirmed.set(id, Date.parse(body.timestamp)),
                () => undefined,
              );
            }),
        );
        await sleep(200);
      }
    })();
    try {
      await eventually(async () => (await p.store.list({ status: 'ONLINE' })).filter((n) => n.stats).length === all.length, 10_000, 100);
      await eventually(async () => pathCoverage(await p.store.canaries(), Date.now()).state === 'up', 10_000, 100);
      await sleep(TIMEOUT_MS);

      quiet.add(silent);
      failing = true;
      const brokeAt = Date.now();
      while (Date.now() - brokeAt < 3 * TIMEOUT_MS) {
        expect(p.events('node.offline'), 'node.offline while no canary can complete').to.deep.equal([]);
        await sleep(100);
      }
      expect(refused, 'writes refused').to.be.above(0);
      const coverage = pathCoverage(await p.store.canaries(), Date.now());
      expect(coverage.state, 'the heartbeat path as the sweeper sees it').to.equal('down');
      expect(coverage.coveredUntil, 'no canary completed the trip since the writes failed').to.be.at.most(brokeAt);
      for (const node of await p.store.getMany(all).then((m) => [...m.values()])) expect(node.status, node.nodeId).to.equal('ONLINE');

      failing = false;
      const restoredAt = Date.now();
      await eventually(() => p.events('node.offline', silent).length === 1, 10 * TIMEOUT_MS, 50);
      // The path broke (its canaries stalled): a full timeout from when heartbeats were recorded again.
      expect(Date.parse(p.events('node.offline', silent)[0]!.occurredAt) - restoredAt, 'ms from the writes coming back to the mark').to.be.at.least(TIMEOUT_MS);
      // Two more timeouts: the nodes that kept beating stay ONLINE, the silent one is not marked again.
      await sleep(2 * TIMEOUT_MS);
      stopped = true;
      await fleet;
      expect(p.events('node.offline').map((e) => e.nodeId)).to.deep.equal([silent]);
      expect(p.events('node.online')).to.deep.equal([]);
      const nodes = await p.store.getMany(all);
      for (const id of beating) expect(nodes.get(id)!.status, id).to.equal('ONLINE');
      expect(nodes.get(silent)).to.deep.include({ status: 'OFFLINE', statusVersion: 2, outbox: [] });
      // Every heartbeat the broker confirmed is stored, those held through the outage included.
      await eventually(
        async () => {
          const stored = await p.store.getMany(beating);
          return beating.every((id) => (stored.get(id)?.stats?.reportedAt.getTime() ?? 0) >= newestConfirmed.get(id)!);
        },
        5000,
        100,
      );
      expect(
        p.log.lines.filter((l) => l.includes('Store unavailable (')),
        'the outage logged once',
      ).to.have.length(1);
    } finally {
      stopped = true;
      await fleet;
    }
  });

  it('publishes an outbox event again with the same eventId (and message id) when the broker got the first publish but its confirm was lost', async () => {
    // The sweeper's view of the broker: the first node.offline goes out and reaches the broker, and then the
    // sweeper is told it failed, as when the confirm times out or the connection drops before it arrives.
    let lostConfirms = 0;
    const confirmLostOnce = (bus: Bus): Bus =>
      new Proxy(bus, {
        get(target, prop) {
          const value = Reflect.get(target, prop, target) as unknown;
          if (prop !== 'publish' || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value;
          return async (exchange: string, routingKey: string, ...rest: unknown[]) => {
            await (value as (...a: unknown[]) => Promise<void>).call(target, exchange, routingKey, ...rest);
            if (routingKey === ROUTING.nodeOffline && lostConfirms++ === 0) throw new BusUnavailableError('no broker confirm within 5000 ms (test: the confirm was lost)');
          };
        },
      });
    parts = await startParts({ sweeperBus: confirmLostOnce });
    const p = parts;
    await p.publishAgent('agent.register', 'confirm-lost', registerBody('confirm-lost'));

    // The first copy arrives at once; the drain publishes the event left in the outbox once it is due (5 s).
    await eventually(() => p.events('node.offline').length === 2, 20_000, 50);
    await sleep(1000); // no third copy
    const copies = p.received.filter((r) => r.event.type === 'node.offline');
    expect(copies).to.have.length(2);
    const [first, second] = copies;
    expect(second!.event, 'the same event, eventId included').to.deep.equal(first!.event);
    expect(copies.map((c) => c.messageId)).to.deep.equal([first!.event.eventId, first!.event.eventId]);
    expect(first!.event).to.include({ nodeId: 'confirm-lost', statusVersion: 2, previousStatus: 'ONLINE', status: 'OFFLINE' });
    expect((await p.store.get('confirm-lost'))!.outbox, 'out of the outbox once confirmed').to.deep.equal([]);
    expect(p.log.lines.filter((l) => l.includes('node.offline of 1 nodes left in the outbox'))).to.have.length(1);
  });
});

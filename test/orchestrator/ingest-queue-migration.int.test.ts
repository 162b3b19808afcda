import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import amqp from 'amqplib';
import { QueueMismatchError, type Bus, type Delivery } from '../../shared/bus/bus.js';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import { migrateQueue, QueueMigrationError } from '../../shared/bus/rabbit-queue-migration.js';
import { loadOrchestratorConfig } from '../../shared/config.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import { brokerNames, ROUTING, topology, type BrokerNames, type Topology } from '../../shared/topology.js';
import { createIngest } from '../../services/ingest/ingest.js';
import { eventually, RABBITMQ_URL, requireServices, uniqueName } from '../support/services.js';

/** The topology of the versions before the quorum queue: the same, with a classic ingest queue. */
function classicTopology(names: BrokerNames): Topology {
  const t = topology(names);
  return { ...t, queues: t.queues.map((q) => (q.name === names.queues.ingest ? { ...q, arguments: { 'x-dead-letter-exchange': names.exchanges.deadLetter } } : q)) };
}

/** Whether the broker holds `queue` (a passive declare on a channel of its own). */
async function queueExists(queue: string): Promise<boolean> {
  const connection = await amqp.connect(RABBITMQ_URL);
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => undefined);
    return await channel.checkQueue(queue).then(
      () => true,
      () => false,
    );
  } finally {
    await connection.close();
  }
}

describe('migrating the ingest queue to a quorum queue @int', function () {
  this.timeout(60_000);
  before(requireServices('rabbitmq'));

  let names: BrokerNames;
  let bus: Bus;
  const log = createMemoryLogger('warn');

  beforeEach(async () => {
    names = brokerNames(uniqueName('migrate'));
    bus = await createRabbitBus({ url: RABBITMQ_URL, log, name: `test-${names.queues.ingest}`, initialMaxRetries: 3 });
    await bus.declareTopology(classicTopology(names));
  });
  afterEach(async () => {
    for (const q of [...Object.values(names.queues), `${names.queues.ingest}.migrating`]) await bus.deleteQueue(q).catch(() => undefined);
    for (const e of Object.values(names.exchanges)) await bus.deleteExchange(e).catch(() => undefined);
    await bus.close();
  });

  const keys = (i: number) => [ROUTING.heartbeat(`node.${i}`), ROUTING.register(`node-${i}`), ROUTING.shutdown(`n${i}`), ROUTING.canary(`sweeper-${i}`)][i % 4]!;
  const publish = (i: number) => bus.publish(names.exchanges.agentInbound, keys(i), { n: i }, { messageId: `m-${i}`, headers: { 'x-trace': `t-${i}` } });

  async function drain(queue: string, count: number): Promise<Delivery[]> {
    const got: Delivery[] = [];
    const consumer = await bus.consume(
      queue,
      (d) => {
        got.push(d);
        d.ack();
      },
      { prefetch: 500 },
    );
    await eventually(() => got.length >= count, 20_000, 20);
    await new Promise((resolve) => setTimeout(resolve, 200));
    await consumer.cancel();
    return got;
  }

  it('moves every message of the classic queue, with its routing key, message id and headers, into the quorum queue it declares, and removes the holding queue', async () => {
    for (let i = 0; i < 40; i++) await publish(i);
    await eventually(async () => (await bus.queueDepth(names.queues.ingest)) === 40);

    const result = await migrateQueue({ url: RABBITMQ_URL, topology: topology(names), queue: names.queues.ingest, log, pollMs: 20 });

    expect(result).to.deep.equal({ migrated: true, moved: 40, held: 40 });
    // Declared as a quorum queue now: the old declaration is the one refused.
    expect(await bus.declareTopology(classicTopology(names)).catch((e: unknown) => e)).to.be.instanceOf(QueueMismatchError);
    await bus.declareTopology(topology(names));
    expect(await queueExists(`${names.queues.ingest}.migrating`), 'holding queue').to.equal(false);
    const got = await drain(names.queues.ingest, 40);
    expect(got.map((d) => d.messageId)).to.deep.equal(Array.from({ length: 40 }, (_, i) => `m-${i}`));
    for (const [i, d] of got.entries()) {
      expect(d.routingKey, d.messageId).to.equal(keys(i));
      expect(d.headers, d.messageId).to.include({ 'x-trace': `t-${i}` });
      expect(JSON.parse(d.body.toString())).to.deep.equal({ n: i });
    }
    // Bound again: a new publish reaches it.
    await publish(99);
    expect((await drain(names.queues.ingest, 1)).map((d) => d.messageId)).to.deep.equal(['m-99']);
  });

  it('keeps what agents publish while it migrates', async () => {
    const backlog = 3000;
    await Promise.all(Array.from({ length: backlog }, (_, i) => publish(i)));
    let publishing = true;
    let published = backlog;
    const publisher = (async () => {
      while (publishing) {
        await publish(published);
        published++;
      }
    })();

    const result = await migrateQueue({ url: RABBITMQ_URL, topology: topology(names), queue: names.queues.ingest, log, pollMs: 20 });
    publishing = false;
    await publisher;

    expect(result.moved).to.be.at.least(backlog);
    expect(published - backlog, 'published during the migration').to.be.greaterThan(0);
    expect(result.held).to.be.at.least(backlog);
    const got = await drain(names.queues.ingest, published);
    const ids = new Set(got.map((d) => d.messageId));
    const missing = Array.from({ length: published }, (_, i) => `m-${i}`).filter((id) => !ids.has(id));
    expect(missing, 'lost').to.deep.equal([]);
  });

  it('changes nothing while something still consumes the queue, and says to stop the ingests', async () => {
    const consumer = await bus.consume(names.queues.ingest, () => undefined, { prefetch: 1 });
    try {
      const refused = await migrateQueue({ url: RABBITMQ_URL, topology: topology(names), queue: names.queues.ingest, log }).catch((e: unknown) => e);
      expect(refused).to.be.instanceOf(QueueMigrationError);
      expect((refused as Error).message).to.match(/1 consumer\(s\) still read .*stop every process that consumes it \(every ingest\) first/);
    } finally {
      await consumer.cancel();
    }
    expect(await queueExists(`${names.queues.ingest}.migrating`)).to.equal(false);
    await bus.declareTopology(classicTopology(names));
  });

  it('leaves a queue that is already as declared alone', async () => {
    await migrateQueue({ url: RABBITMQ_URL, topology: topology(names), queue: names.queues.ingest, log, pollMs: 20 });

    expect(await migrateQueue({ url: RABBITMQ_URL, topology: topology(names), queue: names.queues.ingest, log })).to.deep.equal({ migrated: false, moved: 0, held: 0 });
  });

  it("stops the ingest's start on the classic queue with what to do", async () => {
    const config = loadOrchestratorConfig({ AUTH_MODE: 'off', RABBITMQ_URL, BROKER_NAMESPACE: names.exchanges.agentInbound.slice(0, -'.agent.inbound'.length) });
    const ingest = createIngest({
      bus,
      store: createMemoryNodeStore({ historyPoints: 0 }),
      log,
      clock: { now: () => Date.now() },
      metrics: createMetrics(),
      config,
      instanceId: randomUUID(),
    });

    const refused = await ingest.start().catch((e: unknown) => e);

    expect(refused).to.be.instanceOf(QueueMismatchError);
    const message = (refused as Error).message;
    expect(message).to.include(`The broker holds the queue ${names.queues.ingest}`);
    // The broker names the first argument it finds different (x-overflow, x-queue-type, ...).
    expect(message).to.match(/the broker says: inequivalent arg '[\w-]+' for queue/);
    expect(message).to.include('npm run ingest -- --migrate-queue');
    expect(message).to.include('docs/operations.md, "Migrating the ingest queue"');
  });
});

import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import type { Context } from 'mocha';
import { BrokerBlockedError, BusUnavailableError, QueueMismatchError, type Bus, type Consumer, type Delivery, type QueueOptions } from '../../shared/bus/bus.js';
import { brokerNames, HEADERS, INGEST_DELIVERY_LIMIT, ROUTING, topology, type BrokerNames } from '../../shared/topology.js';
import { eventually, uniqueName } from '../support/services.js';

export interface BusFactory {
  open(): Promise<Bus>;
  close(bus: Bus): Promise<void>;
  /**
   * Takes the bus's connection away the way a broker restart would and lets it come back; resolves once the
   * connection is gone. Returns false when the environment cannot do that (the case is then skipped).
   */
  dropConnection?(bus: Bus): Promise<boolean>;
}

interface Received {
  deliveries: Delivery[];
  bodies(): unknown[];
}

/** Polls while the bus works in the background (the memory bus delivers on setImmediate, RabbitMQ over the wire). */
const within = <T>(check: () => T | Promise<T>, timeoutMs = 5000) => eventually(check, timeoutMs, 10);

/** Gives the broker a moment to deliver anything it wrongly would (for "no more than" assertions). */
const quiet = (ms = 150) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The bus port's contract: the topology, confirmed publishes, prefetch, requeue, topic routing and dead
 * letters that ingest, sweeper, api and agent rely on. Each test works in a namespace of its own, deleted after.
 */
export function busContract(adapter: string, factory: BusFactory): void {
  describe(`Bus contract: ${adapter}`, function () {
    let bus: Bus;
    let names: BrokerNames;
    let consumers: Consumer[];
    let extraQueues: string[];

    before(async () => {
      bus = await factory.open();
    });
    after(async () => {
      if (bus) await factory.close(bus);
    });
    beforeEach(async () => {
      names = brokerNames(uniqueName('c'));
      consumers = [];
      extraQueues = [];
      await bus.declareTopology(topology(names));
    });
    afterEach(async () => {
      for (const c of consumers) await c.cancel().catch(() => undefined);
      for (const q of [...extraQueues, ...Object.values(names.queues)]) await bus.deleteQueue(q).catch(() => undefined);
      for (const e of Object.values(names.exchanges)) await bus.deleteExchange(e).catch(() => undefined);
    });

    /** Consumes `queue` (declaring it, if given as options), keeping every delivery; acks at once unless told not to. */
    async function collect(queue: string | QueueOptions, options: { prefetch?: number; ack?: boolean; onConsuming?: (queue: string) => void } = {}): Promise<Received> {
      const deliveries: Delivery[] = [];
      consumers.push(
        await bus.consume(
          queue,
          (d) => {
            deliveries.push(d);
            if (options.ack ?? true) d.ack();
          },
          { prefetch: options.prefetch ?? 100, onConsuming: options.onConsuming },
        ),
      );
      return { deliveries, bodies: () => deliveries.map((d) => JSON.parse(d.body.toString()) as unknown) };
    }

    const heartbeat = (nodeId: string, n = 0) => ({ type: 'agent.heartbeat', nodeId, n });

    it('reports publishing as not blocked, with an empty backlog, once its publishes are confirmed', async () => {
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1'));

      expect(bus.publishState()).to.deep.equal({ blocked: false, backlog: { unconfirmed: 0, oldestMs: 0 } });
    });

    it('declares the topology again without error and without losing queued messages', async () => {
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1'));

      await bus.declareTopology(topology(names));
      await bus.declareTopology(topology(names));

      await within(async () => (await bus.queueDepth(names.queues.ingest)) === 1);
    });

    it('routes a confirmed publish to the ingest queue, keeping body, routing key, message id and headers, also for node ids with dots', async () => {
      const ids = ['node-1', 'host.example.com', 'a.b.c.d'];
      for (const nodeId of ids) {
        await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat(nodeId), heartbeat(nodeId), { messageId: `m-${nodeId}`, headers: { 'x-trace': nodeId } });
      }
      await bus.publish(names.exchanges.agentInbound, ROUTING.register('host.example.com'), { type: 'agent.register' });
      await bus.publish(names.exchanges.agentInbound, ROUTING.shutdown('a.b'), { type: 'agent.shutdown' });

      const got = await collect(names.queues.ingest);

      await within(() => got.deliveries.length === 5);
      const [first, second, third] = got.deliveries;
      expect(got.deliveries.map((d) => d.routingKey)).to.deep.equal([...ids.map(ROUTING.heartbeat), ROUTING.register('host.example.com'), ROUTING.shutdown('a.b')]);
      expect(JSON.parse(second!.body.toString())).to.deep.equal(heartbeat('host.example.com'));
      expect(third).to.deep.include({ messageId: 'm-a.b.c.d', exchange: names.exchanges.agentInbound, redelivered: false });
      expect(third!.headers).to.include({ 'x-trace': 'a.b.c.d' });
      expect(first!.deliveredAt).to.be.a('number');
    });

    it('accepts a Buffer body as is', async () => {
      const raw = Buffer.from('not json {');
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), raw);

      const got = await collect(names.queues.ingest);

      await within(() => got.deliveries.length === 1);
      expect(got.deliveries[0]!.body.equals(raw)).to.equal(true);
    });

    it('hands a consumer no more unacknowledged deliveries than its prefetch', async () => {
      for (let i = 0; i < 10; i++) await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1', i));

      const got = await collect(names.queues.ingest, { prefetch: 3, ack: false });
      await within(() => got.deliveries.length === 3);
      await quiet();
      expect(got.deliveries, 'before any ack').to.have.length(3);

      got.deliveries[0]!.ack();
      await within(() => got.deliveries.length === 4);
      await quiet();
      expect(got.deliveries, 'after one ack').to.have.length(4);
      expect(got.bodies().map((b) => (b as { n: number }).n)).to.deep.equal([0, 1, 2, 3]);
    });

    it('redelivers a requeued message, marked redelivered, with the same body and message id', async () => {
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1', 7), { messageId: 'm-7' });
      const got = await collect(names.queues.ingest, { ack: false });
      await within(() => got.deliveries.length === 1);

      got.deliveries[0]!.requeue();

      await within(() => got.deliveries.length === 2);
      const again = got.deliveries[1]!;
      again.ack();
      expect(again).to.deep.include({ redelivered: true, messageId: 'm-7', routingKey: ROUTING.heartbeat('node-1') });
      expect(JSON.parse(again.body.toString())).to.deep.equal(heartbeat('node-1', 7));
    });

    it('ignores a second settlement of the same delivery', async () => {
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1'));
      const got = await collect(names.queues.ingest, { ack: false });
      await within(() => got.deliveries.length === 1);

      got.deliveries[0]!.ack();
      got.deliveries[0]!.requeue();
      got.deliveries[0]!.ack();

      await quiet();
      expect(got.deliveries).to.have.length(1);
      expect(await bus.queueDepth(names.queues.ingest)).to.equal(0);
    });

    it('routes to a queue only what its topic patterns match', async () => {
      const offlineOnly = `${names.exchanges.nodeEvents}.offline-${randomUUID().slice(0, 6)}`;
      const patterns = `${names.exchanges.nodeEvents}.patterns-${randomUUID().slice(0, 6)}`;
      extraQueues.push(offlineOnly, patterns);
      await bus.declareQueue({ name: offlineOnly, durable: true, bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: ROUTING.nodeOffline }] });
      await bus.declareQueue({
        name: patterns,
        durable: true,
        bindings: [
          { exchange: names.exchanges.nodeEvents, routingKey: '*.online' },
          { exchange: names.exchanges.nodeEvents, routingKey: 'cluster.#' },
        ],
      });
      const keys = [ROUTING.nodeRegistered, ROUTING.nodeOnline, ROUTING.nodeOffline, ROUTING.clusterDegraded, 'cluster.degraded.detail', 'node.online.extra'];

      for (const key of keys) await bus.publish(names.exchanges.nodeEvents, key, { key });
      const a = await collect(offlineOnly);
      const b = await collect(patterns);

      await within(() => a.deliveries.length === 1 && b.deliveries.length === 3);
      await quiet();
      expect(a.deliveries.map((d) => d.routingKey)).to.deep.equal([ROUTING.nodeOffline]);
      expect(b.deliveries.map((d) => d.routingKey)).to.deep.equal([ROUTING.nodeOnline, ROUTING.clusterDegraded, 'cluster.degraded.detail']);
    });

    it('delivers what is published to the dead-letter exchange to the dead-letter queue, headers included', async () => {
      const headers = { [HEADERS.refusalReason]: 'malformed JSON', [HEADERS.refusedBy]: 'ingest', [HEADERS.originalRoutingKey]: ROUTING.heartbeat('node.1') };
      await bus.publish(names.exchanges.deadLetter, ROUTING.heartbeat('node.1'), Buffer.from('{oops'), { headers, messageId: 'bad-1', contentType: 'application/octet-stream' });

      const got = await collect(names.queues.deadLetter);

      await within(() => got.deliveries.length === 1);
      const dead = got.deliveries[0]!;
      expect(dead.headers).to.include(headers);
      expect(dead.body.toString()).to.equal('{oops');
      expect(dead).to.deep.include({ messageId: 'bad-1', routingKey: ROUTING.heartbeat('node.1') });
      expect(await bus.queueDepth(names.queues.ingest), 'nothing reaches the ingest queue').to.equal(0);
    });

    it(`dead-letters a message given back to the ingest queue more than ${INGEST_DELIVERY_LIMIT} times, reason delivery_limit, counting its redeliveries in x-delivery-count`, async () => {
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node.1'), Buffer.from('{poison'), { messageId: 'poison-1', headers: { 'x-trace': 'p' } });
      const got = await collect(names.queues.ingest, { ack: false });
      const dead = await collect(names.queues.deadLetter);

      for (let i = 0; i <= INGEST_DELIVERY_LIMIT; i++) {
        await within(() => got.deliveries.length === i + 1);
        got.deliveries[i]!.requeue();
      }

      await within(() => dead.deliveries.length === 1);
      await quiet();
      expect(got.deliveries, 'the first delivery and one per time given back, up to the limit').to.have.length(INGEST_DELIVERY_LIMIT + 1);
      // No header on the first delivery; then how many times it was given back.
      expect(got.deliveries.map((d) => d.headers[HEADERS.deliveryCount] ?? 0)).to.deep.equal([...Array(INGEST_DELIVERY_LIMIT + 1).keys()]);
      const letter = dead.deliveries[0]!;
      expect(letter.body.toString()).to.equal('{poison');
      expect(letter).to.deep.include({ messageId: 'poison-1', routingKey: ROUTING.heartbeat('node.1') });
      expect(letter.headers).to.include({ 'x-trace': 'p', 'x-first-death-reason': 'delivery_limit', 'x-first-death-queue': names.queues.ingest });
      const deaths = letter.headers['x-death'] as Array<Record<string, unknown>>;
      expect(deaths).to.have.length(1);
      expect(deaths[0]).to.include({ reason: 'delivery_limit', queue: names.queues.ingest, exchange: names.exchanges.agentInbound, count: 1 });
      expect(deaths[0]!['routing-keys']).to.deep.equal([ROUTING.heartbeat('node.1')]);
      expect(await bus.queueDepth(names.queues.ingest)).to.equal(0);
    });

    it('refuses to declare a topology queue the broker holds with another type or other arguments, with QueueMismatchError naming it, and keeps working', async () => {
      const classic = `${names.queues.ingest}.classic-${randomUUID().slice(0, 6)}`;
      extraQueues.push(classic);
      await bus.declareQueue({ name: classic, durable: true, bindings: [] });
      const asQuorum = { exchanges: [], queues: [{ name: classic, durable: true, arguments: { 'x-queue-type': 'quorum' } }], bindings: [] };
      const asClassic = topology(names);
      asClassic.queues = asClassic.queues.map((q) => (q.name === names.queues.ingest ? { ...q, arguments: { 'x-dead-letter-exchange': names.exchanges.deadLetter } } : q));

      for (const [what, declared, queue] of [
        ['quorum over classic', asQuorum, classic],
        ['classic over quorum', asClassic, names.queues.ingest],
      ] as const) {
        const refused = await bus.declareTopology(declared).then(
          () => null,
          (e: unknown) => e,
        );
        expect(refused, what).to.be.instanceOf(QueueMismatchError);
        expect(refused, what).to.include({ code: 'QUEUE_MISMATCH', queue });
        expect((refused as QueueMismatchError).message, what).to.include(queue);
      }

      const got = await collect(names.queues.ingest);
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1'));
      await within(() => got.deliveries.length === 1);
      expect(bus.isConnected()).to.equal(true);
    });

    it('reports the messages waiting in a queue, not counting unacknowledged ones', async () => {
      expect(await bus.queueDepth(names.queues.ingest)).to.equal(0);
      for (let i = 0; i < 3; i++) await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1', i));
      await within(async () => (await bus.queueDepth(names.queues.ingest)) === 3);

      const got = await collect(names.queues.ingest, { prefetch: 1, ack: false });
      await within(() => got.deliveries.length === 1);

      await within(async () => (await bus.queueDepth(names.queues.ingest)) === 2);
      for (let i = 0; i < 3; i++) {
        await within(() => got.deliveries.length > i);
        got.deliveries[i]!.ack();
      }
      await within(async () => (await bus.queueDepth(names.queues.ingest)) === 0);
    });

    it('declares a server-named queue with its bindings and returns the name', async () => {
      const first = await bus.declareQueue({ exclusive: true, autoDelete: true, bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: '#' }] });
      const second = await bus.declareQueue({ exclusive: true, autoDelete: true, bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: ROUTING.nodeOffline }] });
      extraQueues.push(first, second);
      expect(first)
        .to.be.a('string')
        .and.match(/^amq\.gen-/);
      expect(second).to.not.equal(first);

      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeRegistered, { n: 1 });
      const got = await collect(first);

      await within(() => got.deliveries.length === 1);
      expect(got.deliveries[0]!.routingKey).to.equal(ROUTING.nodeRegistered);
      expect(await bus.queueDepth(second)).to.equal(0);
    });

    it('declares a named queue again without error and keeps its messages', async () => {
      const name = `${names.exchanges.nodeEvents}.sub-${randomUUID().slice(0, 6)}`;
      extraQueues.push(name);
      const options = { name, durable: true, bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: ROUTING.nodeOffline }] };
      expect(await bus.declareQueue(options)).to.equal(name);
      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOffline, { n: 1 });

      expect(await bus.declareQueue(options)).to.equal(name);

      await within(async () => (await bus.queueDepth(name)) === 1);
    });

    it('declares the queue a subscription names, with its bindings, before consuming, and tells the consumer its name', async () => {
      const started: string[] = [];
      const got = await collect(
        { exclusive: true, autoDelete: true, bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: ROUTING.nodeOffline }] },
        { onConsuming: (queue) => started.push(queue) },
      );
      await within(() => started.length === 1);
      expect(started[0]).to.match(/^amq\.gen-/);

      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOnline, { n: 1 });
      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOffline, { n: 2 });

      await within(() => got.deliveries.length === 1);
      await quiet();
      expect(got.bodies()).to.deep.equal([{ n: 2 }]);
    });

    it('refuses a subscription whose queue cannot be declared, with BusUnavailableError, and keeps consuming the others', async () => {
      const refused = await bus
        .consume({ exclusive: true, autoDelete: true, bindings: [{ exchange: `${names.exchanges.nodeEvents}.missing`, routingKey: '#' }] }, (d) => d.ack(), { prefetch: 1 })
        .then(
          (c) => (consumers.push(c), null),
          (e: unknown) => e,
        );
      expect(refused).to.be.instanceOf(BusUnavailableError);

      const got = await collect(names.queues.ingest);
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1'));
      await within(() => got.deliveries.length === 1);
      expect(bus.isConnected()).to.equal(true);
    });

    it('stops delivering to a cancelled consumer', async () => {
      const got = await collect(names.queues.ingest);
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1', 1));
      await within(() => got.deliveries.length === 1);

      await consumers[0]!.cancel();
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1', 2));

      await within(async () => (await bus.queueDepth(names.queues.ingest)) === 1);
      expect(got.deliveries).to.have.length(1);
    });

    it('after losing its connection, reconnects, declares its queues again and its consumer receives again', async function (this: Context) {
      if (!factory.dropConnection) return this.skip();
      this.timeout(30_000);
      // Exclusive: the broker deletes it with the connection, so only a re-declaration brings it back.
      const control = await bus.declareQueue({
        name: `${names.exchanges.agentControl}.node-1`,
        exclusive: true,
        autoDelete: true,
        bindings: [{ exchange: names.exchanges.agentControl, routingKey: ROUTING.control('node-1') }],
      });
      extraQueues.push(control);
      const ingest = await collect(names.queues.ingest);
      const controlled = await collect(control);
      const changes: boolean[] = [];
      bus.onConnectionChange((connected) => changes.push(connected));
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1', 1));
      await within(() => ingest.deliveries.length === 1);

      if (!(await factory.dropConnection(bus))) return this.skip();

      await eventually(() => bus.isConnected(), 15_000, 50);
      // Publishing may still be refused for a moment while channels reopen: retry until confirmed.
      await eventually(() => bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1', 2)).then(() => true), 10_000, 100);
      await eventually(() => bus.publish(names.exchanges.agentControl, ROUTING.control('node-1'), { type: 'control.reregister' }).then(() => true), 10_000, 100);

      await eventually(() => ingest.deliveries.some((d) => (JSON.parse(d.body.toString()) as { n: number }).n === 2), 10_000);
      await eventually(() => controlled.deliveries.length === 1, 10_000);
      expect(changes.slice(0, 2)).to.deep.equal([false, true]);
    });

    it('counts a delivery the ingest queue got back from a lost connection like one given back (x-delivery-count)', async function (this: Context) {
      if (!factory.dropConnection) return this.skip();
      this.timeout(30_000);
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), heartbeat('node-1', 1), { messageId: 'held' });
      const got = await collect(names.queues.ingest, { ack: false });
      await within(() => got.deliveries.length === 1);

      if (!(await factory.dropConnection(bus))) return this.skip();

      await eventually(() => bus.isConnected(), 15_000, 50);
      await eventually(() => got.deliveries.length === 2, 10_000);
      got.deliveries[1]!.ack();
      expect(got.deliveries[1]).to.deep.include({ messageId: 'held', redelivered: true });
      expect(got.deliveries[1]!.headers[HEADERS.deliveryCount]).to.equal(1);
    });

    const connectionBound: Array<[string, (names: BrokerNames) => Omit<QueueOptions, 'bindings'>]> = [
      ['a server-named, exclusive, auto-delete queue', () => ({ exclusive: true, autoDelete: true })],
      ['a named auto-delete queue', (n) => ({ name: `${n.exchanges.nodeEvents}.auto-${randomUUID().slice(0, 6)}`, autoDelete: true })],
    ];
    for (const [kind, queueOf] of connectionBound) {
      it(`keeps a subscription declared with ${kind} receiving after the connection is dropped and comes back`, async function (this: Context) {
        if (!factory.dropConnection) return this.skip();
        this.timeout(30_000);
        const queue: QueueOptions = { ...queueOf(names), bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: ROUTING.nodeOffline }] };
        if (queue.name) extraQueues.push(queue.name);
        const started: string[] = [];
        const got = await collect(queue, { onConsuming: (name) => started.push(name) });
        await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOffline, { n: 1 });
        await within(() => got.deliveries.length === 1);

        if (!(await factory.dropConnection(bus))) return this.skip();

        await eventually(() => bus.isConnected(), 15_000, 50);
        // The queue died with the connection: only the subscription declaring it again brings it back.
        await eventually(() => started.length === 2, 10_000, 20);
        await eventually(() => bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOffline, { n: 2 }).then(() => true), 10_000, 100);
        await eventually(() => got.deliveries.length === 2, 10_000);
        expect(got.bodies()).to.deep.equal([{ n: 1 }, { n: 2 }]);
        if (queue.name) expect(started).to.deep.equal([queue.name, queue.name]);
        else expect(started[1], 'a new server-named queue').to.not.equal(started[0]);
      });
    }
  });
}

export interface BlockingBusFactory {
  open(): Promise<Bus>;
  close(bus: Bus): Promise<void>;
  /** Makes the broker block publishers (a memory alarm); resolves once the alarm is in effect. */
  block(bus: Bus): Promise<void>;
  /** Clears it; resolves once the alarm is gone. */
  unblock(bus: Bus): Promise<void>;
  /** The reason the broker gives for the block, e.g. 'low on memory'. */
  reason: string;
  /** The bus's wedge threshold (wedgedAfterMs). */
  wedgedAfterMs: number;
  /** Holds confirms back, as a wedged channel would; absent when the environment cannot (the cases are skipped). */
  stallConfirms?(bus: Bus): void;
  releaseConfirms?(bus: Bus): void;
}

/**
 * What the bus port promises while the broker blocks publishers (a memory or disk alarm) or stops confirming:
 * a plain publishState(), publishes that fail fast with BrokerBlockedError instead of hanging, a deadline for
 * those in flight when the block began, and publishing again once it ends. Separate from busContract because
 * a real alarm blocks every publisher of the broker: run it only against a broker of the test's own.
 */
export function busBlockingContract(adapter: string, factory: BlockingBusFactory): void {
  describe(`Bus contract, blocked publishing: ${adapter}`, function () {
    this.timeout(60_000);
    let bus: Bus;
    let names: BrokerNames;
    let consumers: Consumer[];

    before(async () => {
      bus = await factory.open();
    });
    after(async () => {
      if (bus) await factory.close(bus);
    });
    beforeEach(async () => {
      names = brokerNames(uniqueName('b'));
      consumers = [];
      await bus.declareTopology(topology(names));
    });
    afterEach(async () => {
      factory.releaseConfirms?.(bus);
      for (const c of consumers) await c.cancel().catch(() => undefined);
      for (const q of Object.values(names.queues)) await bus.deleteQueue(q).catch(() => undefined);
      for (const e of Object.values(names.exchanges)) await bus.deleteExchange(e).catch(() => undefined);
    });

    const beat = (n: number, options = {}) => bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), { n }, options);
    const outcome = (p: Promise<unknown>) =>
      p.then(
        () => null,
        (e: unknown) => e,
      );
    async function received(): Promise<number[]> {
      const ns: number[] = [];
      consumers.push(await bus.consume(names.queues.ingest, (d) => (ns.push((JSON.parse(d.body.toString()) as { n: number }).n), d.ack()), { prefetch: 100 }));
      return ns;
    }

    it('reports a broker block with its reason, fails publishes at once with BrokerBlockedError, and publishes again once it ends', async () => {
      await beat(1);
      expect(bus.publishState().blocked).to.equal(false);

      await factory.block(bus);
      let waited: Promise<unknown> = Promise.resolve('not sent');
      try {
        // RabbitMQ tells a connection it is blocked when it next publishes: that publish is in flight when the
        // block begins and gets a deadline instead of hanging until the alarm clears.
        let started = Date.now();
        const first = await outcome(beat(2));
        expect(first, 'the first publish during the alarm').to.be.instanceOf(BrokerBlockedError);
        expect(Date.now() - started, 'ms for the first publish to fail').to.be.below(3000);

        const state = bus.publishState();
        expect(state).to.deep.include({ blocked: true, cause: 'broker', reason: factory.reason });
        expect(state.blocked && state.since)
          .to.be.a('number')
          .within(Date.now() - 30_000, Date.now());

        started = Date.now();
        const second = await outcome(beat(3));
        expect(Date.now() - started, 'ms for a publish to fail while blocked').to.be.below(100);
        expect(second).to.be.instanceOf(BrokerBlockedError).and.to.include({ code: 'BROKER_BLOCKED', reason: factory.reason });
        expect((second as Error).message).to.include(factory.reason);

        // A caller may choose to wait: its publish goes out and is confirmed once the block ends.
        waited = outcome(beat(4, { whenBlocked: 'wait' }));
        await within(() => bus.publishState().backlog.unconfirmed >= 1);
      } finally {
        await factory.unblock(bus);
      }
      await eventually(() => !bus.publishState().blocked, 15_000, 50);
      expect(await waited, 'the publish that chose to wait').to.equal(null);
      await beat(5);
      const ns = await received();
      await eventually(() => ns.includes(4) && ns.includes(5), 10_000);
      expect(ns).to.not.include(3);
    });

    it('keeps delivering to its consumers and taking their acks while the broker blocks its publishes', async () => {
      for (let n = 1; n <= 5; n++) await beat(n);
      await within(async () => (await bus.queueDepth(names.queues.ingest)) === 5);

      await factory.block(bus);
      try {
        // This bus publishes during the alarm, so the broker blocks its publishing (RabbitMQ: the connection that
        // published, which it then reads nothing more from).
        await outcome(beat(6));
        await eventually(() => bus.publishState().blocked, 5000, 20);
        // Prefetch 1: each next delivery needs the broker to have read the previous ack.
        const ns: number[] = [];
        const consuming = bus.consume(names.queues.ingest, (d) => (ns.push((JSON.parse(d.body.toString()) as { n: number }).n), d.ack()), { prefetch: 1 });
        const stalled = new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('no consumer within 10 s: the broker reads nothing from the connection it blocked')), 10_000).unref(),
        );
        consumers.push(await Promise.race([consuming, stalled]));
        await eventually(() => ns.length >= 5, 10_000, 20);
        expect(ns.slice(0, 5)).to.deep.equal([1, 2, 3, 4, 5]);
        await within(async () => (await bus.queueDepth(names.queues.ingest)) === 0);
        expect(bus.publishState().blocked, 'still blocked meanwhile').to.equal(true);
      } finally {
        await factory.unblock(bus);
      }
      await eventually(() => !bus.publishState().blocked, 15_000, 50);
    });

    it('gives a publish in flight when the block begins a deadline, and keeps it in the backlog until it is confirmed', async function (this: Context) {
      if (!factory.stallConfirms || !factory.releaseConfirms) return this.skip();
      factory.stallConfirms(bus);
      const inFlight = outcome(beat(1));
      await within(() => bus.publishState().backlog.unconfirmed === 1);

      await factory.block(bus);
      const started = Date.now();
      expect(await inFlight).to.be.instanceOf(BrokerBlockedError);
      expect(Date.now() - started).to.be.below(3000);
      expect(bus.publishState().backlog.unconfirmed, 'still awaiting its confirm').to.equal(1);

      await factory.unblock(bus);
      factory.releaseConfirms(bus);
      await within(() => bus.publishState().backlog.unconfirmed === 0);
      expect(bus.publishState().blocked).to.equal(false);
    });

    it('counts as blocked while the oldest publish goes unconfirmed past the wedge threshold, and not once confirms come again', async function (this: Context) {
      if (!factory.stallConfirms || !factory.releaseConfirms) return this.skip();
      factory.stallConfirms(bus);
      const stuck = outcome(beat(1));
      await within(() => bus.publishState().backlog.unconfirmed === 1);
      expect(bus.publishState().blocked, 'younger than the threshold').to.equal(false);

      await quiet(factory.wedgedAfterMs + 50);
      const state = bus.publishState();
      expect(state).to.deep.include({ blocked: true, cause: 'no-confirm' });
      expect(state.blocked && state.reason).to.match(/^no publisher confirm for [\d.]+ s \(1 unconfirmed\)$/);
      expect(state.backlog.unconfirmed).to.equal(1);
      expect(state.backlog.oldestMs).to.be.at.least(factory.wedgedAfterMs);
      const started = Date.now();
      expect(await outcome(beat(2))).to.be.instanceOf(BrokerBlockedError);
      expect(Date.now() - started).to.be.below(100);

      factory.releaseConfirms(bus);
      expect(await stuck).to.equal(null);
      expect(bus.publishState()).to.deep.equal({ blocked: false, backlog: { unconfirmed: 0, oldestMs: 0 } });
      await beat(3);
      const ns = await received();
      await within(() => ns.length === 2);
      expect(ns).to.deep.equal([1, 3]);
    });
  });
}

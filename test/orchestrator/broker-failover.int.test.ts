import { existsSync } from 'node:fs';
import { expect } from 'chai';
import type { Context } from 'mocha';
import { BusUnavailableError, type Bus } from '../../shared/bus/bus.js';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { freePort, startPrivateRabbit, type PrivateRabbit } from '../support/private-services.js';
import { eventually, uniqueName } from '../support/services.js';

const RABBIT_BIN = '/usr/lib/rabbitmq/bin';
const CONFIRM_TIMEOUT_MS = 5000;

interface StreamResult {
  confirmed: string[];
  failed: Error[];
}

/**
 * Publishes persistent messages to `queue` from `lanes` concurrent lanes (so that about that many are always in
 * flight) until `stop` resolves, then waits for every publish to be answered. Fails the test if one is still
 * unanswered after the confirm timeout: a publish that is never answered is one silently dropped.
 */
async function publishStream(bus: Bus, queue: string, stop: Promise<unknown>, lanes = 200): Promise<StreamResult> {
  const result: StreamResult = { confirmed: [], failed: [] };
  let stopped = false;
  let seq = 0;
  const unanswered = new Set<string>();
  const lane = async () => {
    while (!stopped) {
      const id = String(seq++);
      unanswered.add(id);
      try {
        await bus.publish('', queue, { id }, { messageId: id, persistent: true });
        result.confirmed.push(id);
      } catch (error) {
        result.failed.push(error as Error);
        // Rejected at once while disconnected: no need to spin.
        await new Promise((resolve) => setTimeout(resolve, 20));
      } finally {
        unanswered.delete(id);
      }
    }
  };
  const running = Promise.all(Array.from({ length: lanes }, lane));
  await stop;
  stopped = true;
  await Promise.race([
    running,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${unanswered.size} publishes unanswered after the confirm timeout`)), CONFIRM_TIMEOUT_MS + 5000)),
  ]);
  return result;
}

/** The messageIds in `queue` (drained with a bus of its own on `url`). */
async function messageIdsIn(url: string, queue: string, expected: number): Promise<Set<string>> {
  const reader = await createRabbitBus({ url, log: createMemoryLogger('error'), name: uniqueName('failover-reader'), initialMaxRetries: 5, maxReconnectDelayMs: 500 });
  const ids = new Set<string>();
  try {
    const consumer = await reader.consume(
      queue,
      (d) => {
        if (d.messageId) ids.add(d.messageId);
        d.ack();
      },
      { prefetch: 2000 },
    );
    // Everything confirmed is there; duplicates (re-sent after a lost confirm) are allowed, so wait for the queue to drain.
    await eventually(async () => ids.size >= expected && (await reader.queueDepth(queue)) === 0, 30_000, 100).catch(() => undefined);
    await consumer.cancel();
    await reader.deleteQueue(queue).catch(() => undefined);
  } finally {
    await reader.close();
  }
  return ids;
}

/**
 * RABBITMQ_URL as a list of broker nodes, and publishes in flight when a connection is lost, on private RabbitMQ
 * nodes (two unclustered brokers stand in for a cluster's nodes: the bus declares its topology on each after a
 * reconnect). The shared broker is never stopped.
 */
describe('broker node list and in-flight publishes @int', function () {
  this.timeout(180_000);
  let first: PrivateRabbit | undefined;
  let second: PrivateRabbit | undefined;
  const buses: Bus[] = [];

  before(async function (this: Context) {
    this.timeout(120_000);
    if (!existsSync(`${RABBIT_BIN}/rabbitmq-server`)) {
      const message = `rabbitmq-server is not installed (${RABBIT_BIN}); run \`npm run services\``;
      if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${message} (REQUIRE_SERVICES=1)`);
      process.stderr.write(`\n  !!! SKIPPING ${this.test?.parent?.fullTitle() ?? 'suite'}: ${message}\n\n`);
      return this.skip();
    }
    const firstPort = await freePort();
    let secondPort = await freePort();
    while (Math.abs(secondPort - firstPort) < 2) secondPort = await freePort();
    // Both started before either is awaited; both stopped in after() even when one failed to start.
    const started = await Promise.allSettled([startPrivateRabbit({ port: firstPort }), startPrivateRabbit({ port: secondPort })]);
    first = started[0].status === 'fulfilled' ? started[0].value : undefined;
    second = started[1].status === 'fulfilled' ? started[1].value : undefined;
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
  });
  afterEach(async () => {
    for (const bus of buses.splice(0)) await bus.close().catch(() => undefined);
    // A test that stopped a node's app gives it back, also when it failed.
    for (const node of [first, second]) if (node) await node.startApp().catch(() => undefined);
  });
  after(async () => {
    await Promise.all([first?.stop(), second?.stop()]);
  });

  async function open(url: string | string[], log = createMemoryLogger('info')): Promise<Bus & { log: typeof log }> {
    const bus = await createRabbitBus({ url, log, name: uniqueName('failover'), initialMaxRetries: 5, maxReconnectDelayMs: 500, confirmTimeoutMs: CONFIRM_TIMEOUT_MS });
    buses.push(bus);
    return Object.assign(bus, { log });
  }

  async function durableQueue(bus: Bus): Promise<string> {
    return bus.declareQueue({ name: uniqueName('failover-q'), durable: true, bindings: [] });
  }

  it('connects to the second node of the list when the first does not answer', async () => {
    const closedPort = await freePort();
    const bus = await open(`amqp://guest:guest@127.0.0.1:${closedPort},${first!.url}`);
    expect(bus.isConnected()).to.equal(true);
    const queue = await durableQueue(bus);
    await bus.publish('', queue, { hello: 'second node' });
    expect(await bus.queueDepth(queue)).to.equal(1);
    expect(bus.log.lines.some((l) => l.includes(`Broker publish connection to 127.0.0.1:${first!.port}`))).to.equal(true);
    await bus.deleteQueue(queue);
  });

  it('moves on to the next node of the list when its connection is lost, with one outage line', async () => {
    const bus = await open([first!.url, second!.url]);
    const queue = await durableQueue(bus);
    await first!.stopApp();
    await eventually(() => bus.isConnected(), 20_000, 50);
    await bus.publish('', queue, { hello: 'after the first node went' });
    // The queue was declared again on the second node by the reconnect, and the message went there.
    const onSecond = await open(second!.url, createMemoryLogger('error'));
    expect(await onSecond.queueDepth(queue)).to.equal(1);
    const lost = bus.log.lines.filter((l) => l.includes('Broker connection lost'));
    expect(lost, bus.log.lines.join('\n')).to.have.length(1);
    expect(bus.log.lines.filter((l) => l.includes('Broker connection restored'))).to.have.length(1);
    await onSecond.deleteQueue(queue);
  });

  it('publishes again the messages in flight when the broker closes the connection, and confirms each', async () => {
    const bus = await open(first!.url);
    const queue = await durableQueue(bus);
    const { confirmed, failed } = await publishStream(
      bus,
      queue,
      (async () => {
        await new Promise((resolve) => setTimeout(resolve, 500));
        await first!.closeAllConnections();
        await eventually(() => bus.isConnected(), 20_000, 20);
        await new Promise((resolve) => setTimeout(resolve, 500));
      })(),
    );
    const resent = bus.log.lines.find((l) => /Re-sending \d+ publishes/.test(l));
    expect(resent, 'no publish was in flight when the connection was closed').to.be.a('string');
    // Rejected only while disconnected (before the publish was made), never after it went out.
    for (const error of failed) {
      expect(error).to.be.instanceOf(BusUnavailableError);
      expect(error.message).to.equal('broker unavailable');
    }
    const ids = await messageIdsIn(first!.url, queue, confirmed.length);
    expect(confirmed.filter((id) => !ids.has(id))).to.deep.equal([]);
  });

  it('fails back to the caller the publishes in flight when no node answers, and loses none it confirmed', async () => {
    const bus = await open(first!.url);
    const queue = await durableQueue(bus);
    const { confirmed, failed } = await publishStream(
      bus,
      queue,
      (async () => {
        await new Promise((resolve) => setTimeout(resolve, 500));
        await first!.stopApp();
        await new Promise((resolve) => setTimeout(resolve, 1000));
      })(),
    );
    expect(failed.length).to.be.greaterThan(0);
    for (const error of failed) expect(error).to.be.instanceOf(BusUnavailableError);
    // Those that were in flight say so (the rest were refused at once while disconnected).
    expect(failed.some((e) => e.message !== 'broker unavailable')).to.equal(true);
    await first!.startApp();
    const ids = await messageIdsIn(first!.url, queue, confirmed.length);
    expect(confirmed.filter((id) => !ids.has(id))).to.deep.equal([]);
  });
});

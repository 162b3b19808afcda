import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import type { Context } from 'mocha';
import type { Bus } from '../../shared/bus/bus.js';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import { systemClock } from '../../shared/clock.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import { brokerNames, topology } from '../../shared/topology.js';
import { createApp } from '../../services/api/app.js';
import { createBrokerTransport } from '../../services/agent/broker-transport.js';
import { createFailoverTransport } from '../../services/agent/failover-transport.js';
import { createHttpTransport } from '../../services/agent/http-transport.js';
import { createMessageFactory } from '../../services/agent/outbound-messages.js';
import { noAuth } from '../../services/agent/request-auth.js';
import { realTimers } from '../../services/agent/timers.js';
import { TransportError } from '../../services/agent/transport.js';
import { busBlockingContract } from '../contract/bus.contract.js';
import { insert, nodeRecord } from '../contract/node-fixtures.js';
import { freePort, startPrivateRabbit, type PrivateRabbit } from '../support/private-services.js';
import { eventually, uniqueName } from '../support/services.js';

const RABBIT_BIN = '/usr/lib/rabbitmq/bin';
const REASON = 'low on memory';

/**
 * A memory alarm on a RabbitMQ node of this test's own (an alarm blocks every publisher of a broker, so never on
 * the shared one): the bus reports the block and fails fast, the api answers agent posts with 503 + Retry-After
 * at once and is not ready, the agent's failover fails a beat without hanging, and all recover once it clears.
 */
describe('broker memory alarm @int', function () {
  this.timeout(120_000);
  let rabbit: PrivateRabbit | undefined;

  before(async function (this: Context) {
    this.timeout(90_000);
    if (!existsSync(`${RABBIT_BIN}/rabbitmq-server`)) {
      const message = `rabbitmq-server is not installed (${RABBIT_BIN}); run \`npm run services\``;
      if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${message} (REQUIRE_SERVICES=1)`);
      process.stderr.write(`\n  !!! SKIPPING ${this.test?.parent?.fullTitle() ?? 'suite'}: ${message}\n\n`);
      return this.skip();
    }
    rabbit = await startPrivateRabbit({ port: await freePort() });
  });
  after(async () => {
    if (!rabbit) return;
    await ctl('set_vm_memory_high_watermark', '0.4').catch(() => undefined);
    await rabbit.stop();
  });

  /** rabbitmqctl / rabbitmq-diagnostics against the private node. */
  const ctl = (...args: string[]) => rabbit!.ctl(...args);
  const alarmOn = () =>
    rabbit!.diagnostics('check_local_alarms').then(
      () => false,
      () => true,
    );

  async function raiseAlarm(): Promise<void> {
    await ctl('set_vm_memory_high_watermark', 'absolute', '1');
    await eventually(alarmOn, 15_000, 200);
  }
  async function clearAlarm(): Promise<void> {
    await ctl('set_vm_memory_high_watermark', '0.4');
    await eventually(async () => !(await alarmOn()), 15_000, 200);
  }

  busBlockingContract('RabbitMQ (private node, memory alarm)', {
    open: () =>
      createRabbitBus({
        url: rabbit!.url,
        log: createMemoryLogger('warn'),
        name: uniqueName('alarm-contract'),
        initialMaxRetries: 3,
        maxReconnectDelayMs: 500,
        confirmTimeoutMs: 15_000,
      }),
    close: (bus) => bus.close(),
    block: () => raiseAlarm(),
    unblock: () => clearAlarm(),
    reason: REASON,
    wedgedAfterMs: 2000,
  });

  describe('api and agent', () => {
    const names = brokerNames(uniqueName('alarm'));
    const log = createMemoryLogger('info');
    let bus: Bus | undefined;
    let server: Server | undefined;
    let url = '';

    before(async () => {
      bus = await createRabbitBus({ url: rabbit!.url, log, name: uniqueName('alarm-api'), initialMaxRetries: 3, maxReconnectDelayMs: 500 });
      await bus.declareTopology(topology(names));
      // No ingest here: the node the posts are for is stored as registered.
      const store = createMemoryNodeStore({ historyPoints: 0 });
      await store.write([insert(nodeRecord('node-1', { status: 'ONLINE', lastHeartbeat: new Date() }))]);
      const app = createApp({ bus, store, names, log, clock: systemClock, metrics: createMetrics() });
      server = await new Promise<Server>((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s));
      });
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => {
      server?.closeAllConnections();
      if (server) await new Promise((resolve) => server!.close(resolve));
      await bus?.close();
    });

    const stats = () => ({ cpuUsage: 1, memoryUsage: 2, diskUsage: 3, containerCount: 0, timestamp: new Date().toISOString() });
    /** A stats post as a legacy agent makes it, with its 5 s client timeout; its status and how long it took. */
    async function postStats(): Promise<{ status: number; ms: number; retryAfter: string | null; body: Record<string, unknown> }> {
      const started = Date.now();
      const res = await fetch(`${url}/api/nodes/node-1/stats`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(stats()),
        signal: AbortSignal.timeout(5000),
      });
      return { status: res.status, ms: Date.now() - started, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Record<string, unknown> };
    }

    it('answers stats with 503 + Retry-After within a second, is not ready naming the alarm, and accepts and is ready again once it clears', async () => {
      const registered = await fetch(`${url}/api/nodes/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ nodeId: 'node-1', hostname: 'host-1', ipAddress: '10.0.0.1', maxServers: 20 }),
      });
      expect(registered.status).to.equal(201);
      expect((await postStats()).status).to.equal(200);

      await raiseAlarm();
      try {
        // The broker tells the connection it is blocked at this post's publish: answered after the short grace.
        const first = await postStats();
        expect(first).to.deep.include({ status: 503, retryAfter: '5' });
        expect(first.ms, 'ms for the first post during the alarm').to.be.below(1500);
        expect(first.body).to.include({ error: 'BROKER_BLOCKED', reason: REASON });

        const second = await postStats();
        expect(second).to.deep.include({ status: 503, retryAfter: '5' });
        expect(second.ms, 'ms for a post once the block is known').to.be.below(500);

        expect(bus!.publishState()).to.deep.include({ blocked: true, cause: 'broker', reason: REASON });
        const ready = await fetch(`${url}/readyz`);
        expect(ready.status).to.equal(503);
        expect(await ready.json()).to.deep.include({ ready: false, brokerBlocked: true, brokerBlockedReason: REASON });
        expect(await (await fetch(`${url}/metrics`)).text()).to.match(/^orchestrator_broker_blocked 1$/m);

        // An agent on this broker: the blocked broker is skipped, the api's 503 is a failed beat at once.
        const failover = createFailoverTransport({
          broker: createBrokerTransport({ bus: bus!, names, timers: realTimers }),
          http: createHttpTransport({ baseUrl: url, auth: noAuth }),
          clock: systemClock,
          timers: realTimers,
          log: createMemoryLogger('warn'),
        });
        const messages = createMessageFactory({ nodeId: 'node-1', wallClock: systemClock, auth: noAuth });
        const started = Date.now();
        const error = await failover.send(messages.heartbeat(stats()), { timeoutMs: 5000 }).then(
          () => null,
          (e: unknown) => e,
        );
        expect(Date.now() - started).to.be.below(1000);
        expect(error).to.be.instanceOf(TransportError).and.to.include({ code: 'UNAVAILABLE', retryAfterMs: 5000 });
        expect((error as Error).message).to.equal(`HTTP 503: BROKER_BLOCKED (${REASON}) (broker: broker blocking publishes: ${REASON})`);
      } finally {
        await clearAlarm();
      }

      await eventually(async () => (await postStats()).status === 200, 20_000, 250);
      expect(bus!.publishState().blocked).to.equal(false);
      expect((await fetch(`${url}/readyz`)).status).to.equal(200);
      expect(await (await fetch(`${url}/metrics`)).text()).to.match(/^orchestrator_broker_blocked 0$/m);
      expect(log.lines.filter((l) => l.includes(`Broker is blocking publishes (${REASON})`))).to.have.length(1);
      expect(log.lines.filter((l) => /Publishing no longer blocked \(broker unblocked\) after [\d.]+ s/.test(l))).to.have.length(1);
    });
  });
});

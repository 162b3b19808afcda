import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { createMemoryBus, type MemoryBus } from '../../shared/bus/memory-bus.js';
import { systemClock } from '../../shared/clock.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import { brokerNames, topology } from '../../shared/topology.js';
import { createApp } from '../../services/api/app.js';
import { createApiGuard } from '../../services/api/auth/api-guard.js';
import { createMemoryRateLimiter } from '../../shared/rate-limit/memory-rate-limiter.js';

const names = brokerNames('blocked');
/** Agent requests per node per minute: fewer than the requests a blocked broker answers 503 in the test below. */
const RATE_LIMIT = 5;
const register = { nodeId: 'node-1', hostname: 'host-1', ipAddress: '10.0.0.1', maxServers: 20 };
const stats = () => ({ cpuUsage: 1, memoryUsage: 2, diskUsage: 3, containerCount: 0, timestamp: new Date().toISOString() });

/** The api on the in-memory bus, whose block(reason) stands in for a broker's memory or disk alarm. */
describe('api while the broker blocks publishes', () => {
  let bus: MemoryBus;
  let server: Server;
  let url: string;

  beforeEach(async () => {
    bus = createMemoryBus({ wedgedAfterMs: 100, confirmTimeoutMs: 2000 });
    await bus.declareTopology(topology(names));
    const store = createMemoryNodeStore({ historyPoints: 0 });
    const log = createMemoryLogger('warn');
    const guard = createApiGuard({
      config: { auth: { mode: 'off' }, rateLimit: { perNodePerMinute: RATE_LIMIT } },
      store,
      rateLimiter: createMemoryRateLimiter({ limit: RATE_LIMIT }),
      clock: systemClock,
      log,
    });
    const app = createApp({ bus, store, names, log, clock: systemClock, metrics: createMetrics(), guard });
    server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    bus.releaseConfirms();
    bus.unblock();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const post = (path: string, body: object) =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(4000) });
  const readyz = async () => {
    const res = await fetch(`${url}/readyz`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const metric = async (name: string) => {
    const text = await (await fetch(`${url}/metrics`)).text();
    return Number(/^(\S+) (\S+)$/m.exec(text.split('\n').find((l) => l.startsWith(`${name} `)) ?? '')?.[2]);
  };

  it('answers register, stats and shutdown at once with 503, Retry-After and the alarm named, and accepts them again once unblocked', async () => {
    expect((await post('/api/nodes/register', register)).status).to.equal(201);
    const queued = await bus.queueDepth(names.queues.ingest);

    bus.block('low on memory');
    for (const [path, body] of [
      ['/api/nodes/node-1/stats', stats()],
      ['/api/nodes/register', register],
      ['/api/nodes/node-1/shutdown', {}],
    ] as const) {
      const started = Date.now();
      const res = await post(path, body);
      expect(Date.now() - started, `ms for ${path}`).to.be.below(1000);
      expect(res.status, path).to.equal(503);
      expect(res.headers.get('retry-after')).to.equal('5');
      const json = (await res.json()) as Record<string, unknown>;
      expect(json).to.include({ error: 'BROKER_BLOCKED', reason: 'low on memory', message: 'cannot accept now: the message broker is blocking publishes (low on memory)' });
      expect(Date.parse(json.blockedSince as string)).to.be.within(Date.now() - 5000, Date.now());
    }
    expect(await bus.queueDepth(names.queues.ingest), 'nothing was published').to.equal(queued);

    bus.unblock();
    const res = await post('/api/nodes/node-1/stats', stats());
    expect(res.status).to.equal(200);
    expect(await bus.queueDepth(names.queues.ingest)).to.equal(queued + 1);
  });

  it('is not ready while blocked, naming the alarm, and shows it in the metrics', async () => {
    expect(await readyz()).to.deep.include({ status: 200 });
    expect((await readyz()).body).to.deep.include({ ready: true, brokerBlocked: false });
    expect(await metric('orchestrator_broker_blocked')).to.equal(0);

    bus.block('low on memory');
    const { status, body } = await readyz();
    expect(status).to.equal(503);
    expect(body).to.deep.include({ ready: false, unavailable: ['broker'], brokerBlocked: true, brokerBlockedReason: 'low on memory' });
    expect(body.checks).to.deep.include({ broker: false, store: true });
    expect(body.brokerBlockedSince).to.be.a('string');
    expect(await metric('orchestrator_broker_blocked')).to.equal(1);

    bus.unblock();
    expect((await readyz()).status).to.equal(200);
    expect(await metric('orchestrator_broker_blocked')).to.equal(0);
  });

  it('counts a channel that stops confirming as blocked: the next posts fail at once, the backlog shows in the metrics', async () => {
    expect((await post('/api/nodes/register', register)).status).to.equal(201);
    bus.stallConfirms();
    const first = post('/api/nodes/node-1/stats', stats());
    await new Promise((r) => setTimeout(r, 150));

    const started = Date.now();
    const res = await post('/api/nodes/node-1/stats', stats());
    expect(Date.now() - started).to.be.below(1000);
    expect(res.status).to.equal(503);
    expect(((await res.json()) as { reason: string }).reason).to.match(/^no publisher confirm for/);
    expect(await metric('orchestrator_broker_unconfirmed_publishes')).to.equal(1);
    expect(await metric('orchestrator_broker_oldest_unconfirmed_seconds')).to.be.at.least(0.1);
    expect((await readyz()).body).to.deep.include({ brokerBlocked: true });

    bus.releaseConfirms();
    // No 2xx unless confirmed: the held one is answered once the broker confirms it.
    expect((await first).status).to.equal(200);
    expect(await metric('orchestrator_broker_unconfirmed_publishes')).to.equal(0);
    expect((await readyz()).status).to.equal(200);
  });

  it("spends none of a node's rate-limit budget on the requests it answers 503, so agents that retried through the block are accepted after it", async () => {
    expect((await post('/api/nodes/register', register)).status).to.equal(201);
    bus.block('low on memory');
    for (let i = 0; i < RATE_LIMIT * 2; i++) expect((await post('/api/nodes/node-1/stats', stats())).status, `request ${i + 1} while blocked`).to.equal(503);
    bus.unblock();

    // The registration took one of the budget; the 503s none: the rest is still there, and only then 429.
    const after = [];
    for (let i = 0; i < RATE_LIMIT; i++) after.push((await post('/api/nodes/node-1/stats', stats())).status);
    expect(after).to.deep.equal([...Array<number>(RATE_LIMIT - 1).fill(200), 429]);
  });
});

import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import type { QueueOptions } from '../../shared/bus/bus.js';
import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import { systemClock } from '../../shared/clock.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import type { NodeEvent } from '../../shared/messages/index.js';
import type { NodeRecord } from '../../shared/store/node-record.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import { brokerNames, ROUTING, topology } from '../../shared/topology.js';
import { createApp } from '../../services/api/app.js';
import { mountDashboard, type Dashboard, type DashboardOptions } from '../../services/api/dashboard/dashboard-routes.js';
import { openSse, type SseStream } from './sse-reader.js';

const names = brokerNames('');

function nodeRecord(nodeId: string, overrides: Partial<NodeRecord> = {}): NodeRecord {
  const now = Date.now();
  return {
    nodeId,
    hostname: `${nodeId}.example`,
    ipAddress: '10.0.0.7',
    maxServers: 20,
    status: 'ONLINE',
    registeredAt: new Date(now - 3_600_000),
    lastHeartbeat: new Date(now - 5_000),
    statusChangedAt: new Date(now - 3_600_000),
    statusVersion: 1,
    rev: randomUUID(),
    stats: { cpuUsage: 12.5, memoryUsage: 40.25, diskUsage: 55, containerCount: 3, reportedAt: new Date(now - 5_500) },
    history: [
      // Older than the sparkline's hour: not sent.
      { t: new Date(now - 2 * 3_600_000), cpu: 99, mem: 99 },
      { t: new Date(now - 60_000), cpu: 10, mem: 40 },
      { t: new Date(now - 30_000), cpu: 12.5, mem: 40.25 },
    ],
    outbox: [],
    clockSkewMs: null,
    reregisterRequestedAt: null,
    credentialHash: null,
    ...overrides,
  };
}

/**
 * The in-memory bus, except that server-named queues die with the connection as they do on RabbitMQ
 * (whose adapter does not re-declare them), so a subscriber has to subscribe again.
 */
function rabbitLikeBus() {
  const bus = createMemoryBus();
  const serverNamed = new Set<string>();
  return {
    ...bus,
    async declareQueue(options: QueueOptions) {
      const name = await bus.declareQueue(options);
      if (!options.name) serverNamed.add(name);
      return name;
    },
    setConnected(connected: boolean) {
      if (!connected) for (const name of serverNamed) void bus.deleteQueue(name);
      if (!connected) serverNamed.clear();
      bus.setConnected(connected);
    },
  };
}

function offlineEvent(nodeId: string): NodeEvent {
  return {
    eventId: randomUUID(),
    type: 'node.offline',
    version: 1,
    nodeId,
    status: 'OFFLINE',
    previousStatus: 'ONLINE',
    statusVersion: 2,
    lastHeartbeat: new Date(Date.now() - 30_000).toISOString(),
    occurredAt: new Date().toISOString(),
    reason: 'timeout',
  };
}

describe('dashboard', () => {
  let store: ReturnType<typeof createMemoryNodeStore>;
  let bus: ReturnType<typeof rabbitLikeBus>;
  let dashboard: Dashboard;
  let server: Server;
  let url: string;
  const streams: SseStream[] = [];

  async function start(options: Partial<DashboardOptions> = {}): Promise<void> {
    const log = createMemoryLogger('warn');
    const app = createApp({
      bus,
      store,
      names,
      log,
      clock: systemClock,
      metrics: createMetrics(),
      extend: (a) => {
        dashboard = mountDashboard(a, { store, bus, names, log, clock: systemClock, pollMs: 50, ...options });
      },
    });
    await dashboard.ready();
    server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async function stream(): Promise<SseStream> {
    const s = await openSse(`${url}/api/stream`);
    streams.push(s);
    return s;
  }

  async function changeNode(nodeId: string, set: Partial<NodeRecord>): Promise<void> {
    const current = (await store.get(nodeId))!;
    const result = await store.write([{ kind: 'update', nodeId, expectedRev: current.rev, newRev: randomUUID(), set, pushOutbox: [] }]);
    expect(result.conflicts).to.deep.equal([]);
  }

  beforeEach(async () => {
    store = createMemoryNodeStore({ historyPoints: 120 });
    bus = rabbitLikeBus();
    await bus.declareTopology(topology(names));
    await store.write([{ kind: 'insert', record: nodeRecord('node-1') }, { kind: 'insert', record: nodeRecord('node-2', { status: 'OFFLINE', stats: null, history: [] }) }]);
  });

  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    await dashboard?.close();
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await bus.close();
    await store.close();
  });

  describe('GET /', () => {
    it('serves the page with the node table, its stylesheet and its script', async () => {
      await start();
      const page = await fetch(`${url}/`);
      expect(page.status).to.equal(200);
      expect(page.headers.get('content-type')).to.match(/^text\/html/);
      expect(page.headers.get('content-security-policy')).to.include("script-src 'self'");
      const html = await page.text();
      expect(html).to.include('data-testid="node-table"');
      expect(html).to.include('data-testid="event-feed"');
      expect(html).to.include('src="dashboard.js"');

      const css = await fetch(`${url}/dashboard.css`);
      expect(css.headers.get('content-type')).to.match(/^text\/css/);
      const js = await fetch(`${url}/dashboard.js`);
      expect(js.headers.get('content-type')).to.match(/javascript/);
      expect(await js.text()).to.include('/api/stream');
    });
  });

  describe('GET /api/stream', () => {
    it('starts with a snapshot of every node as GET /api/nodes shows it, plus the last hour of history', async () => {
      await start();
      const s = await stream();
      expect(s.status).to.equal(200);
      expect(s.headers.get('content-type')).to.match(/^text\/event-stream/);

      const snapshot = JSON.parse((await s.next('snapshot')).data);
      const list = (await (await fetch(`${url}/api/nodes`)).json()) as Array<Record<string, unknown>>;
      expect(snapshot.nodes.map((n: { nodeId: string }) => n.nodeId)).to.deep.equal(['node-1', 'node-2']);
      for (const [i, view] of list.entries()) {
        const { history, ...rest } = snapshot.nodes[i];
        expect(rest).to.deep.equal(view);
        expect(history).to.be.an('array');
      }
      expect(snapshot.nodes[0].history.map((p: { cpu: number }) => p.cpu)).to.deep.equal([10, 12.5]);
      expect(snapshot.nodes[0].history[0]).to.have.all.keys('t', 'cpu', 'mem');
      expect(snapshot.events).to.deep.equal([]);
      expect(Date.parse(snapshot.serverTime)).to.be.closeTo(Date.now(), 5000);
    });

    it('pushes a node event published on node.events as it happens, and lists it in later snapshots', async () => {
      await start();
      const s = await stream();
      await s.next('snapshot');
      const event = offlineEvent('node-1');
      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOffline, event, { messageId: event.eventId });

      expect(JSON.parse((await s.next('event')).data)).to.deep.equal(event);
      const later = await stream();
      expect(JSON.parse((await later.next('snapshot')).data).events).to.deep.equal([event]);
    });

    it('pushes a redelivered event only once', async () => {
      await start();
      const s = await stream();
      await s.next('snapshot');
      const event = offlineEvent('node-1');
      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOffline, event);
      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOffline, event);
      const other = offlineEvent('node-2');
      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOffline, other);

      expect(JSON.parse((await s.next('event')).data).eventId).to.equal(event.eventId);
      expect(JSON.parse((await s.next('event')).data).eventId).to.equal(other.eventId);
    });

    it('pushes a node whose heartbeat the store recorded', async () => {
      await start();
      const s = await stream();
      await s.next('snapshot');
      const heartbeat = new Date();
      await changeNode('node-1', {
        lastHeartbeat: heartbeat,
        stats: { cpuUsage: 77, memoryUsage: 50, diskUsage: 55, containerCount: 4, reportedAt: heartbeat },
      });

      const node = JSON.parse((await s.next('node')).data);
      expect(node.nodeId).to.equal('node-1');
      expect(node.lastHeartbeat).to.equal(heartbeat.toISOString());
      expect(node.stats.cpuUsage).to.equal(77);
      expect(node.history.map((p: { cpu: number }) => p.cpu)).to.deep.equal([10, 12.5]);
    });

    it('pushes a status change and the removal of a node', async () => {
      await start();
      const s = await stream();
      await s.next('snapshot');
      await changeNode('node-1', { status: 'OFFLINE', statusVersion: 2, statusChangedAt: new Date() });
      const node = JSON.parse((await s.next('node')).data);
      expect([node.nodeId, node.status]).to.deep.equal(['node-1', 'OFFLINE']);

      await store.delete('node-2');
      expect(JSON.parse((await s.next('remove')).data)).to.deep.equal({ nodeId: 'node-2' });
    });

    it('keeps receiving node events after the broker connection comes back', async () => {
      await start();
      const s = await stream();
      await s.next('snapshot');
      bus.setConnected(false);
      bus.setConnected(true);
      await dashboard.ready();
      const event = offlineEvent('node-1');
      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOffline, event);

      expect(JSON.parse((await s.next('event')).data).eventId).to.equal(event.eventId);
    });

    it('sends keep-alive comments while idle', async () => {
      await start({ keepAliveMs: 50 });
      const s = await stream();
      await s.next('snapshot');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(s.comments).to.include('keep-alive');
    });

    it('refuses streams beyond the cap with 503, and forgets a page that went away', async () => {
      await start({ maxClients: 1 });
      const first = await stream();
      await first.next('snapshot');
      const refused = await fetch(`${url}/api/stream`);
      expect(refused.status).to.equal(503);
      expect(refused.headers.get('retry-after')).to.equal('10');
      expect(((await refused.json()) as { error: string }).error).to.equal('TOO_MANY_STREAMS');

      first.close();
      for (let i = 0; i < 50 && dashboard.clients() > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(dashboard.clients()).to.equal(0);
      const again = await stream();
      expect(again.status).to.equal(200);
    });

    it('asks the operator check before streaming', async () => {
      const { HttpError } = await import('../../services/api/http-error.js');
      await start({
        authorize: async (req) => {
          if (req.query.token !== 'secret') throw new HttpError(401, 'UNAUTHORIZED', 'operator token required');
        },
      });
      expect((await fetch(`${url}/api/stream`)).status).to.equal(401);
      const s = await openSse(`${url}/api/stream?token=secret`);
      streams.push(s);
      expect(s.status).to.equal(200);
    });

    it('ends every stream on close, so the server can stop', async () => {
      await start();
      const s = await stream();
      await s.next('snapshot');
      await dashboard.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await s.next('never').then(
        () => expect.fail('stream should have ended'),
        (error: Error) => expect(error.message).to.match(/ended/),
      );
    });
  });
});

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import { systemClock } from '../../shared/clock.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createMetrics } from '../../shared/metrics.js';
import { STATS_FIELDS, type NodeEvent } from '../../shared/messages/index.js';
import type { HistoryPoint, NodeRecord } from '../../shared/store/node-record.js';
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
    outbox: [],
    clockSkewMs: null,
    reregisterRequestedAt: null,
    credentialHash: null,
    ...overrides,
  };
}

function statusEvent(
  nodeId: string,
  status: 'ONLINE' | 'OFFLINE',
  statusVersion: number,
  type: NodeEvent['type'] = status === 'ONLINE' ? 'node.online' : 'node.offline',
): NodeEvent {
  return {
    eventId: randomUUID(),
    type,
    version: 1,
    nodeId,
    status,
    previousStatus: type === 'node.registered' ? null : status === 'ONLINE' ? 'OFFLINE' : 'ONLINE',
    statusVersion,
    lastHeartbeat: new Date().toISOString(),
    occurredAt: new Date().toISOString(),
    reason: type === 'node.registered' ? 'registered' : status === 'ONLINE' ? 'heartbeat' : 'timeout',
  };
}

/** The history each test's node-1 has: the store's history writes are not under test here. */
function node1History(): HistoryPoint[] {
  const now = Date.now();
  return [
    // Older than the sparkline's hour: not sent.
    { t: new Date(now - 2 * 3_600_000), cpu: 99, mem: 99 },
    { t: new Date(now - 60_000), cpu: 10, mem: 40 },
    { t: new Date(now - 30_000), cpu: 12.5, mem: 40.25 },
  ];
}

describe('dashboard page script', () => {
  it('shows every stats field a heartbeat carries (STATS_FIELDS): a field added to the schema must be added to the page', () => {
    const script = readFileSync(new URL('../../services/api/dashboard/public/dashboard.js', import.meta.url), 'utf8');
    for (const field of STATS_FIELDS) expect(script, `dashboard.js shows ${field}`).to.include(field);
  });
});

const fleetId = (i: number) => `gs-${String(i).padStart(5, '0')}`;

/** `count` nodes gs-00000…, every fifth OFFLINE, host names rack-<i % 40>-host-<i>.eu.example. */
function fleet(count: number): NodeRecord[] {
  return Array.from({ length: count }, (_, i) => nodeRecord(fleetId(i), { hostname: `rack-${i % 40}-host-${i}.eu.example`, status: i % 5 === 0 ? 'OFFLINE' : 'ONLINE' }));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
  let bus: ReturnType<typeof createMemoryBus>;
  let dashboard: Dashboard;
  let server: Server;
  let url: string;
  const streams: SseStream[] = [];

  /** The stored history of each node as the dashboard's reads see it (the store's history writes are not under test here). */
  const storedHistory = new Map<string, HistoryPoint[]>();

  /** The store as the dashboard sees it: histories come from `storedHistory`, and reads are counted. */
  function dashboardStore() {
    return {
      ...store,
      async getMany(ids: string[]) {
        reads.getMany++;
        reads.ids += ids.length;
        if (readDelayMs) await sleep(readDelayMs);
        return store.getMany(ids);
      },
      async histories(ids: string[]) {
        return new Map(ids.map((id) => [id, structuredClone(storedHistory.get(id) ?? [])]));
      },
      async *scan(pageSize: number) {
        reads.list++;
        yield* store.scan(pageSize);
      },
    };
  }
  let reads = { getMany: 0, ids: 0, list: 0 };
  /** How long the dashboard's reads by id take. */
  let readDelayMs = 0;

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
        dashboard = mountDashboard(a, { store: dashboardStore(), bus, names, log, clock: systemClock, refreshMs: 50, pageMs: 20, historyMs: 50, ...options });
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
    storedHistory.clear();
    storedHistory.set('node-1', node1History());
    reads = { getMany: 0, ids: 0, list: 0 };
    readDelayMs = 0;
    store = createMemoryNodeStore({ historyPoints: 120 });
    bus = createMemoryBus();
    await bus.declareTopology(topology(names));
    await store.write([
      { kind: 'insert', record: nodeRecord('node-1') },
      { kind: 'insert', record: nodeRecord('node-2', { status: 'OFFLINE', stats: null }) },
    ]);
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

    it('pushes a node whose heartbeat the store recorded, its history only when that grew', async () => {
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
      expect(node, 'the page has this history already').not.to.have.property('history');

      storedHistory.get('node-1')!.push({ t: new Date(), cpu: 77, mem: 50 });
      const grown = JSON.parse((await s.next('node')).data);
      expect(grown.history.map((p: { cpu: number }) => p.cpu)).to.deep.equal([10, 12.5, 77]);
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
  describe('a page of a large fleet', () => {
    interface PageData {
      query: { q: string; status: string; offset: number; limit: number };
      total: number;
      matched: Record<'ALL' | 'ONLINE' | 'OFFLINE', number>;
      fleet: { total: number; online: number; offline: number; containers: number };
      ids: string[];
      nodes: Array<{ nodeId: string; status: string; hostname: string; stats: { cpuUsage: number } | null; history?: unknown[] }>;
    }

    async function seed(count: number): Promise<void> {
      const records = fleet(count);
      for (let i = 0; i < records.length; i += 5000) {
        await store.write(records.slice(i, i + 5000).map((record) => ({ kind: 'insert' as const, record })));
      }
    }

    async function snapshotOf(query: string): Promise<PageData & { events: unknown[] }> {
      const s = await stream(query);
      return JSON.parse((await s.next('snapshot')).data);
    }

    async function stream(query = ''): Promise<SseStream> {
      const s = await openSse(`${url}/api/stream${query}`);
      streams.push(s);
      return s;
    }

    const framesOf = (s: SseStream, event: string) => s.received.filter((m) => m.event === event).map((m) => JSON.parse(m.data));

    it('streams one page: the first `limit` nodes in nodeId order, the counts of the search and of the fleet', async () => {
      await seed(250);
      await start();
      const page = await snapshotOf('?limit=20');
      expect(page.nodes.map((n) => n.nodeId)).to.deep.equal(fleet(20).map((n) => n.nodeId));
      expect(page.ids).to.deep.equal(page.nodes.map((n) => n.nodeId));
      expect(page.query).to.deep.equal({ q: '', status: 'ALL', offset: 0, limit: 20 });
      // 250 + node-1 (ONLINE) + node-2 (OFFLINE); every fifth of the fleet is OFFLINE.
      expect(page.fleet).to.deep.equal({ total: 252, online: 201, offline: 51, containers: 201 * 3 });
      expect(page.total).to.equal(252);
      expect(page.matched).to.deep.equal({ ALL: 252, ONLINE: 201, OFFLINE: 51 });

      const third = await snapshotOf('?limit=20&offset=40&status=offline');
      expect(third.nodes.map((n) => n.nodeId)).to.deep.equal(
        fleet(250)
          .filter((n) => n.status === 'OFFLINE')
          .slice(40, 51)
          .map((n) => n.nodeId)
          .concat('node-2')
          .slice(0, 20),
      );
      expect(third.nodes.every((n) => n.status === 'OFFLINE')).to.equal(true);
      expect(third.total).to.equal(51);
    });

    it('finds nodes by id or host name, case-insensitively, and filters the result by status', async () => {
      await seed(250);
      await start();
      const byId = await snapshotOf('?q=GS-0012');
      expect(byId.nodes.map((n) => n.nodeId)).to.deep.equal([
        'gs-00120',
        'gs-00121',
        'gs-00122',
        'gs-00123',
        'gs-00124',
        'gs-00125',
        'gs-00126',
        'gs-00127',
        'gs-00128',
        'gs-00129',
      ]);
      expect(byId.matched).to.deep.equal({ ALL: 10, ONLINE: 8, OFFLINE: 2 });
      expect(byId.fleet.total, 'the fleet counts ignore the search').to.equal(252);

      const byHost = await snapshotOf(`?q=${encodeURIComponent('rack-7-host')}`);
      expect(byHost.nodes.map((n) => n.hostname)).to.deep.equal(
        fleet(250)
          .filter((_, i) => i % 40 === 7)
          .map((n) => n.hostname),
      );

      const offline = await snapshotOf(`?q=${encodeURIComponent('RACK-5-')}&status=OFFLINE`);
      expect(offline.nodes.map((n) => n.nodeId)).to.deep.equal(['gs-00005', 'gs-00045', 'gs-00085', 'gs-00125', 'gs-00165', 'gs-00205', 'gs-00245']);
      expect(offline.matched).to.deep.equal({ ALL: 7, ONLINE: 0, OFFLINE: 7 });

      const none = await snapshotOf('?q=no-such-node');
      expect([none.nodes, none.total]).to.deep.equal([[], 0]);
    });

    it('shows the last page when asked for one past the end', async () => {
      await seed(95);
      await start();
      const page = await snapshotOf('?limit=25&offset=500');
      expect(page.query.offset).to.equal(75);
      expect(page.nodes.map((n) => n.nodeId)).to.deep.equal([
        'gs-00075',
        ...fleet(95)
          .slice(76)
          .map((n) => n.nodeId),
        'node-1',
        'node-2',
      ]);
    });

    it('refuses a bad query with 400 naming what is wrong', async () => {
      await start();
      for (const [query, invalid] of [
        ['?status=BROKEN', ['status']],
        ['?limit=101', ['limit']],
        ['?limit=0&offset=-1', ['offset', 'limit']],
        ['?q=a&q=b', ['q']],
        [`?q=${'x'.repeat(129)}`, ['q']],
      ] as const) {
        const response = await fetch(`${url}/api/stream${query}`);
        expect(response.status, query).to.equal(400);
        const body = (await response.json()) as { error: string; invalid: string[] };
        expect([body.error, [...body.invalid].sort()], query).to.deep.equal(['INVALID_QUERY', [...invalid].sort()]);
      }
    });

    it('reads the fleet once, then only the rows pages show, by id', async () => {
      await seed(2000);
      await start({ refreshMs: 100 });
      const first = await stream('?limit=10');
      const second = await stream('?limit=10&offset=1000');
      await first.next('snapshot');
      await second.next('snapshot');
      const before = { ...reads };
      await sleep(550);
      expect(reads.list, 'full reads of the fleet').to.equal(1);
      // About 5 refreshes, each one read of the 20 rows both pages show (the machine may be slow: a wide range).
      const refreshes = reads.getMany - before.getMany;
      expect(refreshes).to.be.within(1, 6);
      expect(reads.ids - before.ids).to.equal(refreshes * 20);
    });

    it("sends a shown node's stats at most once per refresh, however often it heartbeats, and nothing about nodes it does not show", async () => {
      await seed(10);
      await start({ refreshMs: 300 });
      const s = await stream('?limit=3'); // gs-00000, gs-00001, gs-00002
      await s.next('snapshot');
      for (let i = 1; i <= 20; i++) {
        const at = new Date();
        const stats = { cpuUsage: i, memoryUsage: 50, diskUsage: 55, containerCount: 4, reportedAt: at };
        await changeNode('gs-00001', { lastHeartbeat: at, stats });
        await changeNode('gs-00007', { lastHeartbeat: at, stats });
        await sleep(10);
      }
      await sleep(700);
      const updates = framesOf(s, 'node');
      expect(
        updates.every((n) => n.nodeId === 'gs-00001'),
        'only the shown node',
      ).to.equal(true);
      expect(updates.length, '20 heartbeats within ~0.3 s: one or two refreshes saw them').to.be.within(1, 3);
      expect(updates.at(-1).stats.cpuUsage).to.equal(20);
    });

    it('applies status events to the counts and to a filtered page at once, coalescing a burst into a few page updates', async () => {
      await seed(200);
      await start({ pageMs: 200, refreshMs: 60_000 });
      const s = await stream('?status=ONLINE&limit=5');
      const snapshot: PageData = JSON.parse((await s.next('snapshot')).data);
      expect(snapshot.ids).to.deep.equal(['gs-00001', 'gs-00002', 'gs-00003', 'gs-00004', 'gs-00006']);

      // The sweeper marks 40 nodes OFFLINE, one event each, in a burst.
      const marked = fleet(200)
        .filter((n) => n.status === 'ONLINE')
        .slice(0, 40)
        .map((n) => n.nodeId);
      for (const nodeId of marked) {
        await changeNode(nodeId, { status: 'OFFLINE', statusVersion: 2, statusChangedAt: new Date() });
        const event = statusEvent(nodeId, 'OFFLINE', 2);
        await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeOffline, event, { messageId: event.eventId });
      }
      await s.next('event'); // each status change reaches the page as it happens
      await sleep(700);
      expect(framesOf(s, 'event')).to.have.length(40);
      const pages: PageData[] = framesOf(s, 'page');
      expect(pages.length, '40 events, page updates at most every 200 ms').to.be.within(1, 5);
      const last = pages.at(-1)!;
      expect(last.fleet).to.deep.equal({ total: 202, online: 161 - 40, offline: 41 + 40, containers: (161 - 40) * 3 });
      expect(last.total).to.equal(121);
      const expected = fleet(200)
        .filter((n) => n.status === 'ONLINE')
        .slice(40, 45)
        .map((n) => n.nodeId);
      expect(last.ids).to.deep.equal(expected);
      // Every row that entered the page came with its data, once.
      const sent = pages.flatMap((p) => p.nodes.map((n) => n.nodeId));
      expect(expected.every((id) => sent.includes(id))).to.equal(true);
      expect(new Set(sent).size).to.equal(sent.length);
    });

    it('learns of a node registered after it started from its node.registered event', async () => {
      await seed(5);
      await start({ pageMs: 20, refreshMs: 60_000 });
      const s = await stream('?q=gs-');
      expect(JSON.parse((await s.next('snapshot')).data).total).to.equal(5);
      await store.write([{ kind: 'insert', record: nodeRecord('gs-00002a', { hostname: 'late.example' }) }]);
      const event = statusEvent('gs-00002a', 'ONLINE', 1, 'node.registered');
      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeRegistered, event, { messageId: event.eventId });

      const page: PageData = JSON.parse((await s.next('page')).data);
      expect(page.total).to.equal(6);
      expect(page.ids).to.deep.equal(['gs-00000', 'gs-00001', 'gs-00002', 'gs-00002a', 'gs-00003', 'gs-00004']);
      expect(page.nodes.map((n) => n.nodeId)).to.deep.equal(['gs-00002a']);
      expect(page.fleet.total).to.equal(8);
    });

    it('shows a node on a page opened right after its node.registered event arrived', async () => {
      await seed(5);
      await start({ refreshMs: 60_000 });
      const watcher = await stream();
      await watcher.next('snapshot');
      await store.write([{ kind: 'insert', record: nodeRecord('gs-00000a') }]);
      readDelayMs = 150; // the read of the new node is still under way when the page opens
      const event = statusEvent('gs-00000a', 'ONLINE', 1, 'node.registered');
      await bus.publish(names.exchanges.nodeEvents, ROUTING.nodeRegistered, event, { messageId: event.eventId });
      await watcher.next('event');
      const page = await snapshotOf('?limit=3');
      expect(page.ids).to.deep.equal(['gs-00000', 'gs-00000a', 'gs-00001']);
    });

    it('serves a page of a 20,000-node fleet as a small snapshot', async function () {
      this.timeout(60_000);
      await seed(20_000);
      await start();
      const t0 = performance.now();
      const s = await stream();
      const message = await s.next('snapshot');
      const ms = performance.now() - t0;
      const page: PageData = JSON.parse(message.data);
      process.stdout.write(`      (20,000 nodes: snapshot of one page in ${ms.toFixed(0)} ms, ${(message.data.length / 1024).toFixed(1)} KiB)\n`);
      expect(page.fleet.total).to.equal(20_002);
      expect(page.nodes).to.have.length(50);
      expect(message.data.length).to.be.below(100_000);
      const found = await snapshotOf('?q=RACK-13-HOST-19973.');
      expect(found.nodes.map((n) => n.nodeId)).to.deep.equal(['gs-19973']);
      const last = await snapshotOf('?offset=19990&limit=100&status=ONLINE');
      // 16,000 + node-1 ONLINE: the last page of 100 starts at 16,000 and holds node-1.
      expect(last.query.offset).to.equal(16_000);
      expect(last.nodes.map((n) => n.nodeId)).to.deep.equal(['node-1']);
    });
  });
});

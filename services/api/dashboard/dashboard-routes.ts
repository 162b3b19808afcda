import { fileURLToPath } from 'node:url';
import type { Express, NextFunction, Request, Response } from 'express';
import type { Bus } from '../../../shared/bus/bus.js';
import type { Clock } from '../../../shared/clock.js';
import { expectedRate } from '../../../shared/domain/heartbeat-pace.js';
import type { FleetPaceReader } from '../../../shared/fleet-pace-reader.js';
import type { Logger } from '../../../shared/logger.js';
import { createOutageLog } from '../../../shared/outage-log.js';
import type { NodeStore } from '../../../shared/store/node-store.js';
import type { BrokerNames } from '../../../shared/topology.js';
import { HttpError } from '../http-error.js';
import { changeKey, historyKey, toDashboardNode } from './dashboard-node.js';
import { STATUS_FILTERS, type FleetPage, type FleetQuery, type StatusFilter } from './fleet-index.js';
import { createNodeEventFeed } from './node-event-feed.js';
import { createNodeWatch, type ShownNode } from './node-watch.js';

export interface DashboardOptions {
  store: NodeStore;
  bus: Bus;
  names: BrokerNames;
  log: Logger;
  clock: Clock;
  /**
   * The rows open pages show are re-read from the store (by `_id`, one batched read for all pages) this
   * often, so a node's stats reach a page at most once per interval (default 5000 ms). Status changes do
   * not wait for it: they come with node.events.
   */
  refreshMs?: number;
  /** A shown node's history is read again when the one held is this old (default 30 s, the default history resolution). */
  historyMs?: number;
  /** After the fleet changed, each page's rows and counts are recomputed at most this often (default 1000 ms). */
  pageMs?: number;
  /** Full re-read of the fleet while pages are open (default 10 min; see node-watch.ts). */
  resyncMs?: number;
  /** A stream opened before the api has read the fleet waits this long for it, then gets 503 (default 10 s). */
  loadWaitMs?: number;
  /** Most pages streaming at once; more get 503 (default 100). */
  maxClients?: number;
  /** Comment line that keeps idle proxies from closing the stream (default 15 s). */
  keepAliveMs?: number;
  /** Operator check for the stream (ApiGuard.operator plugs in here); the page passes ?token= on. */
  authorize?: (req: Request) => Promise<void>;
  /** The fleet's heartbeat pace, shown above the table (absent: not shown). */
  fleetPace?: FleetPaceReader;
  /** TIMEOUT_MINUTES in ms: each row shows its node's deadline, by its own timeout or this one. */
  timeoutMs?: number;
}

export interface Dashboard {
  /** Pages currently streaming (or opening). */
  clients(): number;
  /** Resolves once the node-event subscription consumes and the fleet index is loaded (for tests). */
  ready(): Promise<void>;
  /** Ends every stream and the subscription: call before server.close(), which waits for open streams. */
  close(): Promise<void>;
}

/**
 * A page whose unread output exceeds its snapshot plus this much is dropped (it reads too slowly to keep
 * up); it reconnects to a fresh snapshot. Bounds the memory one stuck page can hold.
 */
const MAX_BACKLOG_BYTES = 1024 * 1024;
const RECONNECT_MS = 3000;
export const DEFAULT_PAGE_SIZE = 50;
/** Most rows one page shows (and so holds in its DOM). */
export const MAX_PAGE_SIZE = 100;
const MAX_SEARCH_LENGTH = 128;
const MAX_OFFSET = 10_000_000;

const STATIC_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard.css': { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
  '/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
};

const PAGE_HEADERS = {
  'Cache-Control': 'no-cache',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  // Everything comes from this origin; nothing inline except the data: favicon.
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

function frame(event: string, data: unknown): string {
  // JSON.stringify never emits a raw newline, so one data line holds the whole payload.
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The stream's query string: what the page shows. Unknown parameters (token) are left alone. */
function parseView(query: Request['query']): FleetQuery {
  const invalid: string[] = [];
  const text = (name: string): string | undefined => {
    const value = query[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'string') {
      invalid.push(name);
      return undefined;
    }
    return value;
  };
  const integer = (name: string, fallback: number, min: number, max: number): number => {
    const value = text(name);
    if (value === undefined || value === '') return fallback;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      invalid.push(name);
      return fallback;
    }
    return n;
  };
  const q = text('q') ?? '';
  if (q.length > MAX_SEARCH_LENGTH) invalid.push('q');
  const status = (text('status') || 'ALL').toUpperCase() as StatusFilter;
  if (!STATUS_FILTERS.includes(status)) invalid.push('status');
  const offset = integer('offset', 0, 0, MAX_OFFSET);
  const limit = integer('limit', DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE);
  if (invalid.length) {
    throw new HttpError(
      400,
      'INVALID_QUERY',
      `invalid ${invalid.join(', ')}: q is at most ${MAX_SEARCH_LENGTH} characters, status ALL, ONLINE or OFFLINE, offset >= 0, limit 1-${MAX_PAGE_SIZE}`,
      { invalid },
    );
  }
  return { q: q.trim(), status, offset, limit };
}

/** One open stream and what its page shows. */
interface Client {
  res: Response;
  view: FleetQuery;
  /** False until its snapshot is written: frames wait in `out` meanwhile. */
  ready: boolean;
  /** Unread output allowed before the page is dropped. */
  backlog: number;
  /** Frames for the next write (one write per client per turn of the event loop). */
  out: string;
  /** The page it was last sent (ids, counts). */
  page: FleetPage | null;
  pageKey: string;
  /** What it was last sent of each node on its page. */
  sent: Map<string, { key: string; history: string }>;
}

/**
 * Mounts the live node dashboard: GET / with its dashboard.css and dashboard.js (static files from ./public,
 * no build step) and GET /api/stream, server-sent events for one page of the fleet. The query string says
 * which page: `q` (search in node id, host name and IP address), `status` (ALL, ONLINE, OFFLINE), `offset`,
 * `limit` (1-100, default 50); the page opens a new stream when its query changes.
 * - `snapshot` on every (re)connect: `{serverTime, query, total, matched, fleet, pace, ids, nodes, events}`: the page's
 *   nodes as GET /api/nodes shows them plus `history` `[{t, cpu, mem}]` of the last hour; `total` the nodes
 *   matching the query, `matched` those matching the search by status, `fleet` `{total, online, offline,
 *   containers}`; `events` the last node.events messages this process saw, oldest first
 * - `page` `{query, total, matched, fleet, pace, ids, nodes}` when the page's rows or counts changed (at most once a
 *   second): `ids` the rows now, `nodes` only those the page was not sent yet
 * - `node` a node of the page whose heartbeat, stats or status the store shows changed (re-read every 5 s);
 *   `history` only when it grew
 * - `remove` `{nodeId}` when a node of the page was deleted
 * - `event` a node.events message (node.registered / node.online / node.offline / cluster.degraded) as it
 *   arrives: status changes reach every page at once
 * - a `: keep-alive` comment line every 15 s
 * Call `close()` before `server.close()`.
 */
export function mountDashboard(app: Express, options: DashboardOptions): Dashboard {
  const { store, clock } = options;
  const log = options.log.child({ component: 'dashboard' });
  const maxClients = options.maxClients ?? 100;
  const keepAliveMs = options.keepAliveMs ?? 15_000;
  const refreshMs = options.refreshMs ?? 5000;
  const pageMs = options.pageMs ?? 1000;
  const loadWaitMs = options.loadWaitMs ?? 10_000;
  const clients = new Map<Response, Client>();
  let closed = false;
  let keepAlive: NodeJS.Timeout | null = null;
  let refreshTimer: NodeJS.Timeout | null = null;
  let refreshing = false;
  const refreshOutage = createOutageLog({
    log,
    what: 'Dashboard cannot re-read the nodes pages show',
    now: () => clock.now(),
    recoveredLine: () => 'Dashboard reads the node store again',
  });
  let flushScheduled = false;
  let pagesTimer: NodeJS.Timeout | null = null;
  let pagesRunning = false;
  let pagesDirty = false;
  let lastPages = 0;

  const watch = createNodeWatch({
    store,
    log,
    now: () => clock.now(),
    maxAgeMs: refreshMs,
    historyMaxAgeMs: options.historyMs,
    resyncMs: options.resyncMs,
    onIndexChange: schedulePages,
  });
  const feed = createNodeEventFeed({ bus: options.bus, names: options.names, log });
  feed.onEvent((event) => {
    broadcast(frame('event', event));
    if (event.type !== 'cluster.degraded') watch.applyEvent(event);
  });
  feed.onSubscribed((again) => {
    if (again) watch.resyncSoon();
  });

  // ---------- output ----------
  function flush(): void {
    flushScheduled = false;
    for (const client of clients.values()) {
      if (!client.ready || !client.out) continue;
      if (client.res.writableLength > client.backlog) {
        log.warn('Dashboard page reads too slowly, dropping its stream');
        client.out = '';
        client.res.destroy();
        continue;
      }
      client.res.write(client.out);
      client.out = '';
    }
  }

  function scheduleFlush(): void {
    if (flushScheduled) return;
    flushScheduled = true;
    setImmediate(flush);
  }

  function send(client: Client, chunk: string): void {
    client.out += chunk;
    // A page still waiting for its snapshot gets the latest events in it anyway: never hold more than that.
    if (!client.ready && client.out.length > MAX_BACKLOG_BYTES) client.out = '';
    scheduleFlush();
  }

  function broadcast(chunk: string): void {
    for (const client of clients.values()) send(client, chunk);
  }

  /** `node` frames of one refresh, each built once whichever pages get it. */
  function nodeFrames() {
    const now = clock.now();
    const cache = new Map<string, { full?: string; lite?: string }>();
    return (record: ShownNode, withHistory: boolean): string => {
      let entry = cache.get(record.nodeId);
      if (!entry) cache.set(record.nodeId, (entry = {}));
      if (withHistory) return (entry.full ??= frame('node', toDashboardNode(record, now, true, options.timeoutMs)));
      return (entry.lite ??= frame('node', toDashboardNode(record, now, false, options.timeoutMs)));
    };
  }

  // ---------- stats of the rows pages show ----------
  /** Re-reads every row some page shows (one batched read) and sends each page what changed on it. */
  async function refreshShown(): Promise<void> {
    if (refreshing || closed) return;
    const ids = new Set<string>();
    for (const client of clients.values()) if (client.ready && client.page) for (const id of client.page.ids) ids.add(id);
    if (!ids.size) return;
    refreshing = true;
    try {
      const records = await watch.read([...ids], true);
      refreshOutage.recovered();
      const nodeFrame = nodeFrames();
      for (const client of clients.values()) {
        if (!client.ready || !client.page) continue;
        for (const id of client.page.ids) {
          // A row that came onto the page while this read ran was read for that page already.
          if (!ids.has(id)) continue;
          const record = records.get(id);
          const sent = client.sent.get(id);
          if (!record) {
            if (sent) {
              client.sent.delete(id);
              send(client, frame('remove', { nodeId: id }));
            }
            continue;
          }
          const key = changeKey(record);
          const history = historyKey(record);
          if (sent && sent.key === key && sent.history === history) continue;
          send(client, nodeFrame(record, !sent || sent.history !== history));
          client.sent.set(id, { key, history });
        }
      }
    } catch (error) {
      if (!closed) refreshOutage.failed(error);
    } finally {
      refreshing = false;
    }
  }

  // ---------- page membership and counts ----------
  function pageKey(page: FleetPage, fleet: unknown): string {
    return JSON.stringify([page.ids, page.offset, page.total, page.matched, fleet]);
  }

  function pageData(client: Client, page: FleetPage, records: Map<string, ShownNode>) {
    const now = clock.now();
    // A node the store no longer has is left out; the next page update fills its place.
    const ids = page.ids.filter((id) => client.sent.has(id) || records.has(id));
    const nodes = [];
    for (const id of ids) {
      const record = records.get(id);
      if (!record) continue;
      nodes.push(toDashboardNode(record, now, true, options.timeoutMs));
      client.sent.set(id, { key: changeKey(record), history: historyKey(record) });
    }
    const shown = new Set(ids);
    for (const id of client.sent.keys()) if (!shown.has(id)) client.sent.delete(id);
    client.page = { ...page, ids };
    const { q, status, limit } = client.view;
    return { query: { q, status, offset: page.offset, limit }, total: page.total, matched: page.matched, fleet: watch.index.counts(), pace, ids, nodes };
  }

  /** The pace line's figures: the advertised interval, the ONLINE fleet it was counted from, the expected beats/s. */
  let pace: { intervalSeconds: number; onlineNodes: number; rate: number } | null = null;
  async function readPace(): Promise<void> {
    const current = await options.fleetPace?.current();
    pace = current ? { intervalSeconds: current.intervalSeconds, onlineNodes: current.onlineNodes, rate: expectedRate(current) } : null;
  }

  /** Sends every page whose rows or counts changed since it was last sent its new rows and counts (one store read for all). */
  async function updatePages(): Promise<void> {
    await readPace();
    const fleet = watch.index.counts();
    const changed: Array<{ client: Client; page: FleetPage; key: string }> = [];
    const missing = new Set<string>();
    for (const client of clients.values()) {
      if (!client.ready) continue;
      const page = watch.index.query(client.view);
      const key = pageKey(page, fleet);
      if (key === client.pageKey) continue;
      changed.push({ client, page, key });
      for (const id of page.ids) if (!client.sent.has(id)) missing.add(id);
    }
    if (!changed.length) return;
    let records: Map<string, ShownNode>;
    try {
      records = missing.size ? await watch.read([...missing], false) : new Map();
    } catch (error) {
      log.debug(`Dashboard could not read the new rows of pages: ${(error as Error).message}`);
      pagesDirty = true; // tried again at the next turn
      return;
    }
    if (closed) return;
    for (const { client, page, key } of changed) {
      if (!clients.has(client.res)) continue;
      send(client, frame('page', pageData(client, page, records)));
      client.pageKey = key;
    }
  }

  function schedulePages(): void {
    if (closed || !clients.size) return;
    pagesDirty = true;
    if (pagesTimer || pagesRunning) return;
    // runPages never rejects: updatePages handles its own read errors.
    pagesTimer = setTimeout(() => void runPages(), Math.max(0, lastPages + pageMs - clock.now()));
    pagesTimer.unref();
  }

  async function runPages(): Promise<void> {
    pagesTimer = null;
    pagesRunning = true;
    pagesDirty = false;
    lastPages = clock.now();
    try {
      await updatePages();
    } finally {
      pagesRunning = false;
      if (pagesDirty) schedulePages();
    }
  }

  // ---------- lifecycle ----------
  function updateActivity(): void {
    const active = clients.size > 0 && !closed;
    watch.setWatched(active);
    if (active && !keepAlive) {
      keepAlive = setInterval(() => broadcast(': keep-alive\n\n'), keepAliveMs);
      keepAlive.unref();
      // refreshShown logs its own read failures (once per outage).
      refreshTimer = setInterval(() => void refreshShown(), refreshMs);
      refreshTimer.unref();
    } else if (!active && keepAlive) {
      clearInterval(keepAlive);
      keepAlive = null;
      if (refreshTimer) clearInterval(refreshTimer);
      refreshTimer = null;
    }
  }

  for (const [path, { file, type }] of Object.entries(STATIC_FILES)) {
    const absolute = fileURLToPath(new URL(`./public/${file}`, import.meta.url));
    app.get(path, (_req: Request, res: Response, next: NextFunction) => {
      res.sendFile(absolute, { headers: { ...PAGE_HEADERS, 'Content-Type': type } }, (error) => {
        if (error && !res.headersSent) next(error);
      });
    });
  }

  app.get('/api/stream', async (req: Request, res: Response) => {
    await options.authorize?.(req);
    if (closed) throw new HttpError(503, 'SHUTTING_DOWN', 'the api is stopping', {}, { 'Retry-After': '5' });
    const view = parseView(req.query);
    if (clients.size >= maxClients) {
      throw new HttpError(503, 'TOO_MANY_STREAMS', `at most ${maxClients} dashboard streams at once`, {}, { 'Retry-After': '10' });
    }
    // Registered before anything is read, so that events arriving meanwhile follow its snapshot.
    const client: Client = { res, view, ready: false, backlog: MAX_BACKLOG_BYTES, out: '', page: null, pageKey: '', sent: new Map() };
    clients.set(res, client);
    res.on('close', () => {
      if (clients.delete(res)) updateActivity();
    });
    updateActivity();
    try {
      if (!(await watch.whenLoaded(loadWaitMs))) {
        throw new HttpError(503, 'STORE_UNAVAILABLE', 'the dashboard has not read the fleet yet', {}, { 'Retry-After': '5' });
      }
      // A node registered a moment ago (its node.events message is in) is on the page.
      await watch.settled();
      const page = watch.index.query(view);
      // Rows another page showed within the last refresh interval are not read again.
      const records = await watch.read(page.ids, false);
      await readPace();
      if (!clients.has(res) || closed) return;
      const data = pageData(client, page, records);
      client.pageKey = pageKey(page, data.fleet);
      res.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-cache, no-transform',
        Connection: 'keep-alive',
        // nginx and similar proxies would otherwise buffer the stream.
        'X-Accel-Buffering': 'no',
      });
      const snapshot = frame('snapshot', { serverTime: new Date(clock.now()).toISOString(), ...data, events: feed.recent() });
      res.write(`retry: ${RECONNECT_MS}\n\n${snapshot}`);
      client.backlog = Buffer.byteLength(snapshot) + MAX_BACKLOG_BYTES;
      client.ready = true;
      if (client.out) scheduleFlush();
      // The fleet may have moved on while the rows were read: the next page update catches up.
      schedulePages();
    } catch (error) {
      if (clients.delete(res)) updateActivity();
      throw error;
    }
  });

  return {
    clients: () => clients.size,
    async ready() {
      await Promise.all([feed.ready(), watch.whenLoaded(60_000)]);
    },
    async close() {
      closed = true;
      for (const client of clients.values()) client.res.end();
      clients.clear();
      updateActivity();
      if (pagesTimer) clearTimeout(pagesTimer);
      pagesTimer = null;
      watch.close();
      await feed.close();
    },
  };
}

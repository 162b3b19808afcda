import { fileURLToPath } from 'node:url';
import type { Express, NextFunction, Request, Response } from 'express';
import type { Bus } from '../../../shared/bus/bus.js';
import type { Clock } from '../../../shared/clock.js';
import type { Logger } from '../../../shared/logger.js';
import type { NodeStore } from '../../../shared/store/node-store.js';
import type { BrokerNames } from '../../../shared/topology.js';
import { HttpError } from '../http-error.js';
import { toDashboardNode } from './dashboard-node.js';
import { createNodeEventFeed } from './node-event-feed.js';
import { createNodeWatch } from './node-watch.js';

export interface DashboardOptions {
  store: NodeStore;
  bus: Bus;
  names: BrokerNames;
  log: Logger;
  clock: Clock;
  /** How often the store is polled for heartbeats while a page is connected (default 1000 ms). */
  pollMs?: number;
  /** Most pages streaming at once; more get 503 (default 100). */
  maxClients?: number;
  /** Comment line that keeps idle proxies from closing the stream (default 15 s). */
  keepAliveMs?: number;
  /** Operator check for the stream (issue 7 plugs ApiGuard.operator in here); the page passes ?token= on. */
  authorize?: (req: Request) => Promise<void>;
}

export interface Dashboard {
  /** Pages currently streaming. */
  clients(): number;
  /** Resolves once the node-event subscription consumes (for tests). */
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

/**
 * Mounts the live node dashboard: GET / with its dashboard.css and dashboard.js (static files from ./public,
 * no build step) and GET /api/stream, server-sent events:
 * - `snapshot` `{serverTime, nodes, events}` on every (re)connect: each node as GET /api/nodes shows it plus
 *   `history` `[{t, cpu, mem}]` of the last hour; `events` the last node.events messages this process saw, oldest first
 * - `node` one such node, when its lastHeartbeat, status or stats.reportedAt changed (store polled while a page is open)
 * - `remove` `{nodeId}` when a node was deleted
 * - `event` a node.events message (node.registered / node.online / node.offline / cluster.degraded) as it arrives
 * - a `: keep-alive` comment line every 15 s
 * Call `close()` before `server.close()`.
 */
export function mountDashboard(app: Express, options: DashboardOptions): Dashboard {
  const { store, clock } = options;
  const log = options.log.child({ component: 'dashboard' });
  const maxClients = options.maxClients ?? 100;
  const keepAliveMs = options.keepAliveMs ?? 15_000;
  /** Open streams and how much unread output each may have. */
  const clients = new Map<Response, number>();
  let opening = 0;
  let closed = false;
  let keepAlive: NodeJS.Timeout | null = null;

  function send(res: Response, limit: number, chunk: string): void {
    if (res.writableLength > limit) {
      log.warn('Dashboard page reads too slowly, dropping its stream');
      res.destroy();
      return;
    }
    res.write(chunk);
  }

  function broadcast(chunk: string): void {
    for (const [res, limit] of clients) send(res, limit, chunk);
  }

  const watch = createNodeWatch({
    store,
    log,
    pollMs: options.pollMs ?? 1000,
    onChanges({ changed, removed }) {
      if (!clients.size) return;
      const now = clock.now();
      let chunk = '';
      for (const node of changed) chunk += frame('node', toDashboardNode(node, now));
      for (const nodeId of removed) chunk += frame('remove', { nodeId });
      broadcast(chunk);
    },
  });

  const feed = createNodeEventFeed({ bus: options.bus, names: options.names, log });
  feed.onEvent((event) => broadcast(frame('event', event)));

  function updateActivity(): void {
    const active = clients.size > 0 && !closed;
    watch.setActive(active);
    if (active && !keepAlive) {
      keepAlive = setInterval(() => broadcast(': keep-alive\n\n'), keepAliveMs);
      keepAlive.unref();
    } else if (!active && keepAlive) {
      clearInterval(keepAlive);
      keepAlive = null;
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
    if (clients.size + opening >= maxClients) {
      throw new HttpError(503, 'TOO_MANY_STREAMS', `at most ${maxClients} dashboard streams at once`, {}, { 'Retry-After': '10' });
    }
    let gone = false;
    res.on('close', () => {
      gone = true;
      if (clients.delete(res)) updateActivity();
    });
    opening++;
    try {
      // The snapshot and the change tracking come from the same store read, so the page misses nothing.
      await watch.refresh((nodes) => {
        if (gone || closed) return;
        const now = clock.now();
        res.writeHead(200, {
          'Content-Type': 'text/event-stream; charset=utf-8',
          'Cache-Control': 'no-cache, no-transform',
          Connection: 'keep-alive',
          // nginx and similar proxies would otherwise buffer the stream.
          'X-Accel-Buffering': 'no',
        });
        const snapshot = frame('snapshot', { serverTime: new Date(now).toISOString(), nodes: nodes.map((n) => toDashboardNode(n, now)), events: feed.recent() });
        res.write(`retry: ${RECONNECT_MS}\n\n${snapshot}`);
        clients.set(res, Buffer.byteLength(snapshot) + MAX_BACKLOG_BYTES);
        updateActivity();
      });
    } finally {
      opening--;
    }
  });

  return {
    clients: () => clients.size,
    ready: () => feed.ready(),
    async close() {
      closed = true;
      for (const res of clients.keys()) res.end();
      clients.clear();
      updateActivity();
      watch.close();
      await feed.close();
    },
  };
}

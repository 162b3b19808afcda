import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { NodeEvent } from '../shared/messages/index.js';
import { ROUTING } from '../shared/topology.js';
import { createFleetIndex, summarize } from '../services/api/dashboard/fleet-index.js';
import { fleetNode, fleetOffline, fleetNodeId, seedFleet } from '../test/dashboard/fleet-fixture.js';
import { openSse, type SseStream } from '../test/dashboard/sse-reader.js';
import { REDIS_URL, RABBITMQ_URL } from '../test/support/services.js';
import { median, percentile, type BenchResult } from './lib/report.js';
import { openEnv, sleep, waitFor, type BenchEnv } from './lib/env.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TICKS_PER_SECOND = 100; // USER_HZ on Linux
/** Prime, coprime with the fleet size: k·STRIDE mod N visits every node once per N heartbeats. */
const HEARTBEAT_STRIDE = 7919;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** What the five pages show: the first page, a status filter, a search, a page deep in the fleet, 100 rows. */
const VIEWS = ['', '?status=OFFLINE', '?q=rack-7.', '?offset=10000', '?status=ONLINE&offset=5000&limit=100'];
/** Searches a browsing page types, one every few seconds. */
const BROWSE = ['?q=host-1', '?q=fleet-19', '?status=OFFLINE&offset=500', '?q=rack-3.&status=ONLINE', '?offset=15000', '?q=10.0.42.'];

function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
}

/** % of one core the process used over `seconds`. */
async function measureCpu(pid: number, seconds: number): Promise<{ pct: number; wallS: number }> {
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const wallS = (performance.now() - t0) / 1000;
  return { pct: ((cpuSeconds(pid) - c0) / wallS) * 100, wallS };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.exitCode === null && child.kill('SIGKILL'), 10_000).unref();
  });
}

/**
 * The fleet's steady load, straight into the store and onto node.events, as the ingest and the sweeper
 * would produce it: heartbeats (new lastHeartbeat and stats) of every node in turn at `rate` a second, in an
 * order spread over the fleet (node k·7919 mod N: any stretch of time touches nodes all over the id range, as
 * agents' own timers do), one unordered bulk write per 100 ms (a slower store lowers the rate reached), and one
 * status change a second (alternately a node going OFFLINE and one coming back), each stored and then
 * published on node.events.
 */
function startLoad(env: BenchEnv, nodes: number, rate: number) {
  const collection = env.store.connection.db!.collection<{ _id: string }>('nodes');
  const versions = new Map<number, number>();
  let stopped = false;
  let written = 0;
  let statusChanges = 0;
  let next = 0;
  let writeMs = 0;
  let writeErrors = 0;

  const heartbeats = (async () => {
    let debt = 0;
    let last = performance.now();
    while (!stopped) {
      const now = performance.now();
      debt += ((now - last) / 1000) * rate;
      last = now;
      const count = Math.min(Math.floor(debt), rate); // at most a second's worth in one bulk
      if (count > 0) {
        debt -= count;
        const at = new Date();
        const ops = Array.from({ length: count }, () => {
          const i = (next * HEARTBEAT_STRIDE) % nodes;
          next = (next + 1) % nodes;
          const cpu = (i * 37 + Math.floor(at.getTime() / 1000)) % 100;
          return {
            updateOne: {
              filter: { _id: fleetNodeId(i) },
              update: { $set: { lastHeartbeat: at, stats: { reportedAt: at, cpuUsage: cpu, memoryUsage: 40, diskUsage: 55, containerCount: i % 21 } } },
            },
          };
        });
        const t0 = performance.now();
        try {
          await collection.bulkWrite(ops as never, { ordered: false });
          written += count;
        } catch {
          writeErrors++;
        }
        writeMs += performance.now() - t0;
      }
      await sleep(100);
    }
  })();

  const churn = (async () => {
    let k = 0;
    while (!stopped) {
      await sleep(1000);
      if (stopped) break;
      // Alternately: an ONLINE node (index 1, 2, 3, … skipping OFFLINE ones) goes OFFLINE, and comes back.
      const i = 1 + Math.floor(k / 2) * 3 + (fleetOffline(1 + Math.floor(k / 2) * 3) ? 1 : 0);
      const goingOffline = k % 2 === 0;
      k++;
      const statusVersion = (versions.get(i) ?? 1) + 1;
      versions.set(i, statusVersion);
      const status = goingOffline ? 'OFFLINE' : 'ONLINE';
      const at = new Date();
      try {
        await collection.updateOne({ _id: fleetNodeId(i) }, { $set: { status, statusVersion, statusChangedAt: at, rev: randomUUID() } });
        const event: NodeEvent = {
          eventId: randomUUID(),
          type: goingOffline ? 'node.offline' : 'node.online',
          version: 1,
          nodeId: fleetNodeId(i),
          status,
          previousStatus: goingOffline ? 'ONLINE' : 'OFFLINE',
          statusVersion,
          lastHeartbeat: at.toISOString(),
          occurredAt: at.toISOString(),
          reason: goingOffline ? 'timeout' : 'heartbeat',
        };
        await env.bus.publish(env.names.exchanges.nodeEvents, goingOffline ? ROUTING.nodeOffline : ROUTING.nodeOnline, event, { messageId: event.eventId });
        statusChanges++;
      } catch {
        writeErrors++;
      }
    }
  })();

  return {
    snapshot: () => ({ written, statusChanges, writeMs, writeErrors }),
    async stop() {
      stopped = true;
      await Promise.all([heartbeats, churn]);
    },
  };
}

/** Opens the stream of `view` and resolves when its snapshot arrived, with the time that took. */
async function openPage(url: string, view: string): Promise<{ stream: SseStream; snapshotMs: number; snapshotBytes: number }> {
  const t0 = performance.now();
  const stream = await openSse(`${url}/api/stream${view}`);
  if (stream.status !== 200) throw new Error(`stream ${view}: HTTP ${stream.status}`);
  const snapshot = await stream.next('snapshot', 30_000);
  return { stream, snapshotMs: performance.now() - t0, snapshotBytes: snapshot.data.length };
}

/** Bytes and frames per stream since `from` (index into received). */
function traffic(streams: SseStream[], from: number[]) {
  let bytes = 0;
  let node = 0;
  let page = 0;
  let event = 0;
  streams.forEach((s, i) => {
    for (const m of s.received.slice(from[i])) {
      bytes += m.data.length + m.event.length + 16;
      if (m.event === 'node') node++;
      else if (m.event === 'page') page++;
      else if (m.event === 'event') event++;
    }
  });
  return { bytes, node, page, event };
}

/**
 * Heap bytes of the api's fleet index at `nodes` nodes, measured here on the same code: heap after building it
 * from records read one by one (as the api does; the records themselves are garbage afterwards) minus before.
 */
function indexMemory(nodes: number): { bytesPerNode: number; totalMiB: number } {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const now = Date.now();
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const index = createFleetIndex();
  // Through JSON, so that the strings are flat, as the driver's decoding of the store's documents leaves them.
  for (let i = 0; i < nodes; i++) index.upsert(JSON.parse(JSON.stringify(summarize(fleetNode(i, now)))));
  gc();
  gc();
  const bytes = process.memoryUsage().heapUsed - before;
  if (index.size !== nodes) throw new Error(`the index holds ${index.size} of ${nodes} nodes`);
  return { bytesPerNode: bytes / nodes, totalMiB: bytes / 2 ** 20 };
}

/** The little of the browser these page functions use (the project compiles without the DOM library). */
interface PageGlobals {
  performance: { getEntriesByName(name: string): Array<{ startTime: number }> };
}

async function firstPaints(url: string, runs: number): Promise<number[] | null> {
  if (!existsSync(CHROMIUM)) return null;
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const out: number[] = [];
    for (let i = 0; i < runs; i++) {
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      await page.goto(`${url}/`);
      await page.waitForFunction(() => (globalThis as unknown as PageGlobals).performance.getEntriesByName('dashboard:first-rows').length > 0, undefined, { timeout: 30_000 });
      out.push(await page.evaluate(() => (globalThis as unknown as PageGlobals).performance.getEntriesByName('dashboard:first-rows')[0]!.startTime));
      await page.close();
    }
    return out;
  } finally {
    await browser.close();
  }
}

/**
 * The dashboard at fleet size: the api as its own process (`services/api/main.ts`) on a 20,000-node store
 * under a steady heartbeat load; its CPU with no dashboard stream open (the baseline, same run) against five
 * streams showing different pages, and five pages browsing (a new query every few seconds); the first paint
 * in Chromium; the fleet index's memory.
 */
export async function runDashboard(options: { long: boolean }): Promise<BenchResult> {
  const scale = {
    nodes: 20_000,
    heartbeatRate: 333,
    heartbeatIntervalS: 60,
    statusChangesPerS: 1,
    clients: VIEWS.length,
    phaseS: options.long ? 60 : 30,
    warmupS: 5,
    browseEveryS: 5,
    firstPaintRuns: 5,
  };
  const env = await openEnv('dashboard');
  let api: ChildProcess | null = null;
  let load: ReturnType<typeof startLoad> | null = null;
  const streams: SseStream[] = [];
  try {
    let t0 = performance.now();
    await seedFleet(env.store, scale.nodes);
    const seedS = (performance.now() - t0) / 1000;

    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    t0 = performance.now();
    // BENCH_API_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=.cache/prof") is passed to the api's node, to see where its time goes.
    const extraArgs = (process.env.BENCH_API_NODE_ARGS ?? '').split(' ').filter(Boolean);
    api = spawn(process.execPath, [...extraArgs, '--import', 'tsx', 'services/api/main.ts'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        PORT: String(port),
        RABBITMQ_URL,
        MONGO_URL: env.config.mongoUrl,
        REDIS_URL,
        BROKER_NAMESPACE: env.namespace,
        AUTH_MODE: 'off',
        LOG_LEVEL: 'warn',
      },
    });
    // The api's log, kept to explain a failed run.
    const apiLog: string[] = [];
    const keep = (chunk: Buffer) => {
      apiLog.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      apiLog.splice(0, Math.max(0, apiLog.length - 40));
    };
    api.stdout!.on('data', keep);
    api.stderr!.on('data', keep);
    const up = await waitFor(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 60_000, 200);
    if (!up) throw new Error(`the api did not become ready within 60 s; its log:\n${apiLog.join('\n')}`);
    // The api reads the fleet once at start; a stream's snapshot waits for that read (503 after 10 s: try again).
    const loaded = await waitFor(
      async () => {
        const warm = await openPage(url, '?limit=1').catch(() => null);
        warm?.stream.close();
        return warm !== null;
      },
      180_000,
      1000,
    );
    if (!loaded) throw new Error(`the api had not read the fleet within 180 s; its log:\n${apiLog.join('\n')}`);
    const loadedS = (performance.now() - t0) / 1000;
    const pid = api.pid!;

    load = startLoad(env, scale.nodes, scale.heartbeatRate);
    await sleep(scale.warmupS * 1000);

    // Phase A: nobody watches.
    let l0 = load.snapshot();
    const idle = await measureCpu(pid, scale.phaseS);
    let l1 = load.snapshot();
    const idleRate = (l1.written - l0.written) / idle.wallS;
    const idleRss = rssMiB(pid);

    // Phase B: five pages open, each showing something else.
    const opened = [];
    for (const view of VIEWS) {
      const page = await openPage(url, view);
      streams.push(page.stream);
      opened.push(page);
    }
    await sleep(scale.warmupS * 1000);
    const from = streams.map((s) => s.received.length);
    l0 = load.snapshot();
    const watched = await measureCpu(pid, scale.phaseS);
    l1 = load.snapshot();
    const watchedRate = (l1.written - l0.written) / watched.wallS;
    const watchedTraffic = traffic(streams, from);
    const watchedRss = rssMiB(pid);
    for (const s of streams.splice(0)) s.close();

    // Phase C: five pages browsing: each opens a new query (a new stream) every browseEveryS seconds.
    let browsing = true;
    const browseSnapshots: number[] = [];
    const browsers = VIEWS.map(async (view, n) => {
      let current = await openPage(url, view);
      let k = n;
      await sleep((n * scale.browseEveryS * 1000) / VIEWS.length);
      while (browsing) {
        const next = await openPage(url, BROWSE[k++ % BROWSE.length]!);
        current.stream.close();
        current = next;
        browseSnapshots.push(next.snapshotMs);
        await sleep(scale.browseEveryS * 1000);
      }
      current.stream.close();
    });
    await sleep(scale.warmupS * 1000);
    const browsed = await measureCpu(pid, scale.phaseS);
    browsing = false;
    await Promise.all(browsers);

    // First paint in a real browser, with the load still on.
    const paints = await firstPaints(url, scale.firstPaintRuns);
    const loadTotals = load.snapshot();
    await load.stop();
    load = null;

    const memory = indexMemory(scale.nodes);
    const snapshotMs = opened.map((p) => p.snapshotMs);
    const perClient = (n: number) => n / watched.wallS / VIEWS.length;
    const nodeFramesPerClientS = perClient(watchedTraffic.node);
    const added = watched.pct - idle.pct;
    const paint = paints ? median(paints) : null;
    return {
      name: 'dashboard',
      scale: { ...scale, store: 'heartbeats: unordered bulkWrite of updateOne by _id every 100 ms; status: updateOne + node.events publish' },
      rows: [
        // The ratio is against an api nobody watches, which is nearly idle: the absolute figure below is the target.
        { figure: 'api CPU, 5 streams open (% of a core)', system: watched.pct, baseline: idle.pct, baselineName: 'no stream', unit: '%' },
        { figure: 'api CPU added by 5 streams', system: added, baseline: null, unit: '%', target: '< 5 %', met: added < 5 },
        { figure: 'api CPU, 5 pages browsing (new query every 5 s)', system: browsed.pct, baseline: idle.pct, baselineName: 'no stream', unit: '%' },
        {
          figure: 'first paint in Chromium (navigation start → first rows), median',
          system: paint,
          baseline: null,
          unit: 'ms',
          target: '< 2000 ms',
          met: paint === null ? null : paint < 2000,
        },
        { figure: 'snapshot over HTTP (stream open → first page), median', system: median(snapshotMs), baseline: null, unit: 'ms' },
        {
          figure: 'node frames per client per second vs heartbeats stored per second',
          system: nodeFramesPerClientS,
          baseline: watchedRate,
          baselineName: 'heartbeats/s',
          unit: '/s',
          target: '<= 0.1x',
        },
        { figure: 'stream bytes per client per second', system: watchedTraffic.bytes / watched.wallS / VIEWS.length, baseline: null, unit: 'B/s' },
        { figure: 'fleet index memory at 20k nodes', system: memory.totalMiB, baseline: null, unit: 'MiB' },
      ],
      notes: [
        `seeded ${scale.nodes} nodes in ${seedS.toFixed(1)} s; the api process was ready and had read the fleet ${loadedS.toFixed(1)} s after it was started${apiLog.some((l) => l.includes('cannot read the fleet')) ? ' (its first full read hit the store deadline and was retried)' : ''}`,
        `heartbeats reached the store at ${idleRate.toFixed(0)}/s (no stream) and ${watchedRate.toFixed(0)}/s (5 streams) of the ${scale.heartbeatRate}/s asked for (mean bulk write ${(loadTotals.writeMs / Math.max(1, loadTotals.written / (scale.heartbeatRate / 10))).toFixed(0)} ms); ${loadTotals.statusChanges} status changes published; ${loadTotals.writeErrors} load write errors`,
        `5 streams over ${watched.wallS.toFixed(0)} s: ${watchedTraffic.node} node frames, ${watchedTraffic.page} page frames, ${watchedTraffic.event} event frames in all (${(watchedTraffic.event / VIEWS.length).toFixed(0)} events each)`,
        `views: ${VIEWS.map((v) => v || '(first page)').join(', ')}; snapshot sizes ${opened.map((p) => `${(p.snapshotBytes / 1024).toFixed(1)} KiB`).join(', ')}; snapshots ${snapshotMs.map((ms) => ms.toFixed(0)).join(', ')} ms`,
        `browsing: ${browseSnapshots.length} new queries, snapshot p50 ${median(browseSnapshots)?.toFixed(0) ?? '-'} ms, p99 ${percentile(browseSnapshots, 99)?.toFixed(0) ?? '-'} ms`,
        paints ? `first paints (ms): ${paints.map((ms) => ms.toFixed(0)).join(', ')}` : `no Chromium at ${CHROMIUM}: first paint not measured`,
        `fleet index: ${memory.bytesPerNode.toFixed(0)} bytes per node (heap, measured in the bench process on the same code); api RSS ${idleRss.toFixed(0)} MiB with no stream, ${watchedRss.toFixed(0)} MiB with 5 (mostly the garbage of the start's full read, collected whenever V8 gets to it)`,
        'api CPU from /proc/<pid>/stat utime+stime of the api process (node --import tsx services/api/main.ts); the load runs in the bench process. The api with no stream is nearly idle, so the ratio says little; the target is on the CPU the streams add',
      ],
      details: { idle, watched, browsed, idleRate, watchedRate, watchedTraffic, snapshotMs, browseSnapshots, paints, memory, loadTotals, seedS, loadedS },
    };
  } finally {
    for (const s of streams) s.close();
    await load?.stop();
    if (api) await stop(api);
    await env.cleanup();
  }
}

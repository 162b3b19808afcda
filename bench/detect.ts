import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { MongoClient, type AnyBulkWriteOperation, type Document } from 'mongodb';
import { systemClock } from '../shared/clock.js';
import { expireNode } from '../shared/domain/expire-node.js';
import { createMetrics } from '../shared/metrics.js';
import type { NodeEvent } from '../shared/messages/index.js';
import { createBullmqScheduler } from '../shared/scheduler/bullmq-scheduler.js';
import type { Scheduler } from '../shared/scheduler/scheduler.js';
import type { NodeStore } from '../shared/store/node-store.js';
import { ROUTING } from '../shared/topology.js';
import { createIngest } from '../services/ingest/ingest.js';
import { createSweeper } from '../services/sweeper/sweeper.js';
import { REDIS_URL } from '../test/support/services.js';
import { nodeIds, openEnv, seedNodes, sleep, waitFor } from './lib/env.js';
import { median, percentile, type BenchResult, type Row } from './lib/report.js';

/** One run of the sweep job, as the scheduler ran it, and what it asked of the store. */
interface SweepRun {
  startedAt: number;
  /** The sweep: from the job's start to the pace keeper's first store call (docs/architecture.md, "Heartbeat pace"), or the job's end. */
  ms: number;
  /** The whole job: the sweep and, after it, the fleet pace keeper (which counts the fleet now and then). */
  jobMs: number;
  /** performance.now() at the job's start. */
  t0: number;
  /** Its countOnline call (the mass-silence guard's count, `upTo` as far as it counts), when it made one. */
  guardCount?: { upTo: number | undefined };
  /** The `limit` of its findWithOutbox call (the outbox drain), when it made one. */
  drainLimit?: number;
  /** Nodes its writes marked OFFLINE (nothing else writes nodes in this benchmark). */
  marked: string[];
  /** Store calls by method: findExpired, countOnline, countExpired, findWithOutbox, write, removeFromOutbox, ... */
  calls: Record<string, number>;
}

/**
 * The raw driver doing a sweep's store work for the same nodes: the same queries (the expired nodes' find, and
 * the outbox drain's and the guard's count when the sweep made them) and the same bulk write statements (the
 * OFFLINE transitions, then the removal of their events from the outboxes).
 */
interface RawRun {
  /** Index of the sweep in `sweeps`. */
  sweep: number;
  nodes: number;
  /** What the raw run repeated: `marked`, or for a sweep that marked none its emptyShape (`empty`, `+find`, `+drain`, `+count`). */
  shape: string;
  findMs: number;
  writeMs: number;
}

interface PhaseResult {
  nodes: number;
  silent: number;
  seedS: number;
  latenciesMs: number[];
  /** Detection latency counted from the arrival of the first canary that covered the node's timeout. */
  afterVouchMs: number[];
  sweeps: SweepRun[];
  raw: RawRun[];
  duplicates: number;
  detected: number;
  noopLatenessMs: number[];
  canaryIntervalMs: number;
}

/** The store as the sweeper sees it, recording each call into the sweep run in progress. */
function instrumented(store: NodeStore, current: () => SweepRun | null): NodeStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const run = current();
        if (run) {
          const name = String(property);
          run.calls[name] = (run.calls[name] ?? 0) + 1;
          if (name === 'write') for (const w of args[0] as Array<{ kind: string; nodeId?: string }>) if (w.kind === 'update' && w.nodeId) run.marked.push(w.nodeId);
          // The pace keeper runs after the sweep, in the same job: the sweep ends at its first call.
          if (name === 'fleetPace' && run.ms === 0) run.ms = performance.now() - run.t0;
          if (name === 'countOnline' && run.ms === 0) run.guardCount = { upTo: args[0] as number | undefined };
          if (name === 'findWithOutbox') run.drainLimit = args[0] as number;
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/**
 * One phase: `nodes` ONLINE nodes of which `silentShare` stop heartbeating at spread instants. The healthy
 * ones are stored with a lastHeartbeat ahead of time (the SQLite-backed test store cannot take thousands of
 * heartbeat writes a second to keep them fresh); the silent ones are stored last and expire 2-7 s after the
 * sweeper starts. Then, with the sweeper stopped, the raw driver repeats each sweep's store work for the same
 * nodes (set back to ONLINE first, not timed): the same find (and the outbox drain's query and the guard's count
 * when the sweep made them), and the same statements in bulk writes of the same size (the conditional OFFLINE
 * updates, then the removal of their events from the outboxes). A sweep is timed up to the fleet pace keeper that
 * runs after it in the same job (its count is reported, not compared).
 */
async function phase(nodes: number, silentShare: number, timeoutS: number, sweepS: number, waitCapS: number): Promise<PhaseResult> {
  const env = await openEnv('detect', { TIMEOUT_MINUTES: String(timeoutS / 60), HEALTH_CHECK_INTERVAL: String(sweepS * 1000) });
  const client = await MongoClient.connect(env.config.mongoUrl);
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const noopQueueName = `noop-${randomUUID().slice(0, 8)}`;
  const noopQueue = new Queue(noopQueueName, { connection: redis, prefix: env.config.redisPrefix });
  let noopWorker: Worker | null = null;
  let stopSweeper: (() => Promise<void>) | null = null;
  try {
    const timeoutMs = env.config.timeoutMs;
    const batchSize = env.config.sweep.batchSize;
    const ids = nodeIds(nodes);
    const step = Math.round(1 / silentShare);
    const silentIds = ids.filter((_, i) => i % step === 0);
    const silentSet = new Set(silentIds);
    const seedStarted = Date.now();
    await seedNodes(
      env.store,
      ids.filter((id) => !silentSet.has(id)),
      () => seedStarted + 10 * 60_000,
    );
    // The silent nodes last, timed from when the sweeper starts (seeding 20k nodes takes a while).
    const start = Date.now() + 2000;
    const lastBeat = new Map<string, number>();
    silentIds.forEach((id, i) => lastBeat.set(id, start - timeoutMs + 2000 + Math.round((5000 * i) / silentIds.length)));
    await seedNodes(env.store, silentIds, (id) => lastBeat.get(id)!);
    const seedS = (Date.now() - seedStarted) / 1000;
    await sleep(Math.max(0, start - Date.now()));

    // Subscriber of node.offline.
    const events: Array<{ event: NodeEvent; at: number }> = [];
    const queue = await env.bus.declareQueue({
      name: `${env.namespace}.offline`,
      durable: false,
      autoDelete: true,
      bindings: [{ exchange: env.names.exchanges.nodeEvents, routingKey: ROUTING.nodeOffline }],
    });
    await env.bus.consume(
      queue,
      (d) => {
        events.push({ event: JSON.parse(d.body.toString()) as NodeEvent, at: Date.now() });
        d.ack();
      },
      { prefetch: 500 },
    );

    // A real ingest on the phase's queue: the sweeper's canaries make the whole trip through it. It notes
    // when each canary arrived, to tell the sweep's own latency from the path's.
    const arrivals: Array<{ sentAt: number; at: number }> = [];
    const ingestStore: NodeStore = {
      ...env.store,
      recordCanaryArrival: async (arrival) => {
        await env.store.recordCanaryArrival(arrival);
        arrivals.push({ sentAt: arrival.sentAt.getTime(), at: Date.now() });
      },
    };
    const ingest = createIngest({ bus: env.bus, store: ingestStore, log: env.log, clock: systemClock, metrics: createMetrics(), config: env.config });
    await ingest.start();

    // Baseline: a no-op BullMQ job on the same Redis, scheduled every sweep interval.
    const noopLateness: number[] = [];
    noopWorker = new Worker(
      noopQueueName,
      async (job) => {
        noopLateness.push(Date.now() - (job.timestamp + (job.opts.delay ?? 0)));
      },
      { connection: redis.duplicate({ maxRetriesPerRequest: null }), prefix: env.config.redisPrefix },
    );
    noopWorker.on('error', () => undefined);
    await noopQueue.upsertJobScheduler('noop', { every: sweepS * 1000 }, { name: 'noop' });

    // The sweeper on the BullMQ scheduler, each run timed and its store calls recorded.
    const sweeps: SweepRun[] = [];
    let running: SweepRun | null = null;
    const real = await createBullmqScheduler({ redisUrl: REDIS_URL, prefix: env.config.redisPrefix, queueName: 'sweeper', log: env.log });
    const timed: Scheduler = {
      every: (name, intervalMs, handler) =>
        real.every(name, intervalMs, async () => {
          const run: SweepRun = { startedAt: Date.now(), ms: 0, jobMs: 0, t0: performance.now(), marked: [], calls: {} };
          running = run;
          try {
            await handler();
          } finally {
            run.jobMs = performance.now() - run.t0;
            if (run.ms === 0) run.ms = run.jobMs;
            running = null;
            sweeps.push(run);
          }
        }),
      isReady: () => real.isReady(),
      close: () => real.close(),
    };
    const store = instrumented(env.store, () => running);
    const sweeper = createSweeper({ bus: env.bus, store, scheduler: timed, log: env.log, clock: systemClock, metrics: createMetrics(), config: env.config });
    await sweeper.start();
    stopSweeper = () => sweeper.stop();

    await waitFor(() => new Set(events.map((e) => e.event.nodeId)).size >= silentIds.length, waitCapS * 1000, 200);
    await sleep(sweepS * 1000); // one more sweep: would it publish anything twice?
    await sweeper.stop();
    stopSweeper = null;
    await ingest.stop();

    const seen = new Map<string, number>();
    const latencies: number[] = [];
    for (const { event, at } of events) {
      seen.set(event.nodeId, (seen.get(event.nodeId) ?? 0) + 1);
      if (seen.get(event.nodeId) === 1 && silentSet.has(event.nodeId)) latencies.push(at - (lastBeat.get(event.nodeId)! + timeoutMs));
    }
    const duplicates = [...seen.values()].reduce((n, c) => n + c - 1, 0);

    // Baseline: the raw driver's queries for the nodes of each sweep (for sweeps that marked none, once per shape),
    // three times each (median), the nodes set back to ONLINE before each time.
    const raw: RawRun[] = [];
    const collection = client.db().collection('nodes');
    const rawOnce = async (sweep: SweepRun) => {
      const { marked } = sweep;
      const beats = marked.map((id) => lastBeat.get(id)!);
      // The cutoff that selects exactly these nodes once they are ONLINE again (none, for a sweep that marked none).
      const cutoff = new Date(beats.length ? Math.max(...beats) + 1 : start - timeoutMs);
      const reset: AnyBulkWriteOperation<Document>[] = marked.map((id) => ({
        updateOne: { filter: { _id: id as never }, update: { $set: { status: 'ONLINE', statusVersion: 1, lastHeartbeat: new Date(lastBeat.get(id)!), outbox: [] } } },
      }));
      for (let j = 0; j < reset.length; j += batchSize) await collection.bulkWrite(reset.slice(j, j + batchSize), { ordered: false });
      const t0 = performance.now();
      const found =
        sweep.calls.findExpired || marked.length
          ? await collection
              .find({ status: 'ONLINE', lastHeartbeat: { $lt: cutoff } })
              .sort({ lastHeartbeat: 1 })
              .batchSize(batchSize)
              .toArray()
          : [];
      if (sweep.drainLimit !== undefined)
        await collection
          .find({ 'outbox.eventId': { $exists: true } })
          .limit(sweep.drainLimit)
          .toArray();
      if (sweep.guardCount) await collection.countDocuments({ status: 'ONLINE' }, sweep.guardCount.upTo === undefined ? {} : { limit: sweep.guardCount.upTo });
      const t1 = performance.now();
      if (found.length !== marked.length) throw new Error(`raw find found ${found.length} nodes, the sweep marked ${marked.length}`);
      const now = Date.now();
      const removals: AnyBulkWriteOperation<Document>[] = [];
      const ops: AnyBulkWriteOperation<Document>[] = found.map((doc) => {
        const { write } = expireNode(
          { nodeId: doc._id as unknown as string, status: doc.status, statusVersion: doc.statusVersion, rev: doc.rev, lastHeartbeat: doc.lastHeartbeat },
          now,
          cutoff.getTime(),
        )!;
        for (const event of write.pushOutbox) removals.push({ updateOne: { filter: { _id: write.nodeId as never }, update: { $pull: { outbox: event } } as Document } });
        return {
          updateOne: {
            filter: { _id: write.nodeId as never, rev: write.expectedRev, status: 'ONLINE', lastHeartbeat: { $lt: write.silentBefore } },
            update: { $set: { ...write.set, rev: write.newRev, prevRev: write.expectedRev }, $push: { outbox: { $each: write.pushOutbox } } } as Document,
          },
        };
      });
      // The sweep publishes the events (pipelined confirms), then removes them from the outboxes: the same statements.
      for (let j = 0; j < ops.length; j += batchSize) {
        await collection.bulkWrite(ops.slice(j, j + batchSize), { ordered: false });
        const pulls = removals.slice(j, j + batchSize);
        if (pulls.length) await collection.bulkWrite(pulls, { ordered: false });
      }
      return { findMs: t1 - t0, writeMs: performance.now() - t1 };
    };
    const measuredShapes = new Set<string>();
    for (const [i, sweep] of sweeps.entries()) {
      if (!sweep.marked.length) {
        if (measuredShapes.has(emptyShape(sweep))) continue;
        measuredShapes.add(emptyShape(sweep));
      }
      const runs = [];
      for (let k = 0; k < 3; k++) runs.push(await rawOnce(sweep));
      const mid = runs.sort((a, b) => a.findMs + a.writeMs - (b.findMs + b.writeMs))[1]!;
      raw.push({ sweep: i, nodes: sweep.marked.length, shape: sweep.marked.length ? 'marked' : emptyShape(sweep), ...mid });
    }
    // When the first canary that covered each node's timeout arrived: from then on the sweeper may mark it.
    const vouched = latencyFromVouch(events, silentSet, lastBeat, timeoutMs, arrivals);
    return {
      nodes,
      silent: silentIds.length,
      seedS,
      latenciesMs: latencies,
      afterVouchMs: vouched,
      sweeps,
      raw,
      duplicates,
      detected: latencies.length,
      noopLatenessMs: noopLateness,
      canaryIntervalMs: env.config.canaryIntervalMs,
    };
  } finally {
    await stopSweeper?.().catch(() => undefined);
    await noopWorker?.close().catch(() => undefined);
    await noopQueue.obliterate({ force: true }).catch(() => undefined);
    await noopQueue.close().catch(() => undefined);
    redis.disconnect();
    await client.close();
    await env.cleanup();
  }
}

/**
 * Per detected node: event arrival minus the arrival of the first canary sent after lastBeat + timeout, i.e. the part of
 * the detection latency that is the sweeper's (waiting for the next sweep, and the sweep itself).
 */
function latencyFromVouch(
  events: Array<{ event: NodeEvent; at: number }>,
  silent: Set<string>,
  lastBeat: Map<string, number>,
  timeoutMs: number,
  arrivals: Array<{ sentAt: number; at: number }>,
): number[] {
  const first = new Set<string>();
  const out: number[] = [];
  for (const { event, at } of events) {
    if (!silent.has(event.nodeId) || first.has(event.nodeId)) continue;
    first.add(event.nodeId);
    const expiry = lastBeat.get(event.nodeId)! + timeoutMs;
    const vouch = arrivals.find((a) => a.sentAt > expiry);
    if (vouch !== undefined) out.push(at - vouch.at);
  }
  return out;
}

/** What the raw run of a sweep that marked none repeats: its find, drain and count, as the sweep made them. */
function emptyShape(sweep: SweepRun): string {
  return ['empty', sweep.calls.findExpired ? '+find' : '', sweep.drainLimit !== undefined ? '+drain' : '', sweep.guardCount ? '+count' : ''].join('');
}

/** The raw driver's time for the nodes of sweep `i` (a sweep that marked none: the raw run of its shape). */
function rawFor(r: PhaseResult, i: number): RawRun | undefined {
  const sweep = r.sweeps[i]!;
  return r.raw.find((x) => x.sweep === i) ?? (sweep.marked.length ? undefined : r.raw.find((x) => x.nodes === 0 && x.shape === emptyShape(sweep)));
}

const rawMs = (x: RawRun | undefined) => (x ? x.findMs + x.writeMs : null);

export async function runDetect(options: { long: boolean }): Promise<BenchResult> {
  const nodes = Number(process.env.BENCH_DETECT_NODES) || (options.long ? 20_000 : 2_000);
  const scale = { nodes, timeoutS: 30, sweepS: 5, waitCapS: options.long ? 300 : 90 };
  const rows: Row[] = [];
  const notes: string[] = [];
  const details: Record<string, unknown> = {};
  for (const share of [0.01, 0.1]) {
    const r = await phase(scale.nodes, share, scale.timeoutS, scale.sweepS, scale.waitCapS);
    const label = `${Math.round(share * 100)}% silent (${r.silent})`;
    const p99 = percentile(r.latenciesMs, 99);
    const noopP99 = percentile(r.noopLatenessMs, 99);
    const longest = r.sweeps.reduce((best, s, i) => (s.ms > (r.sweeps[best]?.ms ?? -1) ? i : best), 0);
    const ratios = r.sweeps.map((s, i) => {
      const base = rawMs(rawFor(r, i));
      return base ? s.ms / base : null;
    });
    const worst = ratios.reduce<number>((w, x, i) => (x !== null && (w < 0 || x > ratios[w]!) ? i : w), -1);
    const targetMs = scale.sweepS * 1000 + 2000;
    rows.push(
      { figure: `${label}: detection latency p50`, system: percentile(r.latenciesMs, 50), baseline: null, unit: 'ms' },
      {
        figure: `${label}: detection latency p99`,
        system: p99,
        baseline: scale.sweepS * 1000 + (noopP99 ?? 0),
        baselineName: 'sweep interval + no-op job lateness p99',
        unit: 'ms',
        target: `<= ${targetMs} ms`,
        met: p99 !== null && r.detected === r.silent && p99 <= targetMs,
      },
      {
        figure: `${label}: detection p99 from the canary covering the timeout`,
        system: percentile(r.afterVouchMs, 99),
        baseline: scale.sweepS * 1000 + (noopP99 ?? 0),
        baselineName: 'sweep interval + no-op job lateness p99',
        unit: 'ms',
        target: `<= ${targetMs} ms`,
        met: percentile(r.afterVouchMs, 99) !== null && percentile(r.afterVouchMs, 99)! <= targetMs,
      },
      { figure: `${label}: detected`, system: r.detected, baseline: r.silent, baselineName: 'went silent', target: '>= 1x' },
      { figure: `${label}: duplicate node.offline events`, system: r.duplicates, baseline: null, target: '<= 0', met: r.duplicates === 0 },
      {
        figure: `${label}: longest sweep (${r.sweeps[longest]?.marked.length ?? 0} marked) vs the raw driver's queries and bulk writes for its nodes`,
        system: r.sweeps[longest]?.ms ?? null,
        baseline: rawMs(rawFor(r, longest)),
        baselineName: 'raw driver',
        unit: 'ms',
        target: '<= 1.5x',
      },
      {
        figure: `${label}: highest sweep / raw ratio of any sweep (${r.sweeps[worst]?.marked.length ?? 0} marked)`,
        system: r.sweeps[worst]?.ms ?? null,
        baseline: rawMs(rawFor(r, worst)),
        baselineName: 'raw driver',
        unit: 'ms',
        target: '<= 1.5x',
      },
    );
    const calls = (c: Record<string, number>) =>
      Object.entries(c)
        .sort()
        .map(([k, v]) => `${k}×${v}`)
        .join(' ');
    notes.push(
      `${label}: ${r.nodes} nodes seeded in ${r.seedS.toFixed(0)} s; canary every ${r.canaryIntervalMs} ms; no-op job lateness p50/p99 ${Math.round(percentile(r.noopLatenessMs, 50) ?? 0)}/${Math.round(noopP99 ?? 0)} ms`,
      ...r.sweeps.map((s, i) => {
        const x = rawFor(r, i);
        return `${label}: sweep ${i + 1}: ${Math.round(s.ms)} ms (job with the pace keeper ${Math.round(s.jobMs)} ms), ${s.marked.length} marked, store calls: ${calls(s.calls)}; raw ${x ? `${Math.round(x.findMs)} ms queries + ${Math.round(x.writeMs)} ms writes (${(s.ms / (x.findMs + x.writeMs)).toFixed(2)}x)` : '-'}`;
      }),
    );
    details[`silent${r.silent}`] = { ...r, rawFindMedianMs: median(r.raw.map((x) => x.findMs)) };
  }
  return { name: 'detect', scale, rows, notes, details };
}

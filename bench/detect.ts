import { randomUUID } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { systemClock } from '../shared/clock.js';
import { createMetrics } from '../shared/metrics.js';
import type { NodeEvent } from '../shared/messages/index.js';
import { createBullmqScheduler } from '../shared/scheduler/bullmq-scheduler.js';
import type { Scheduler } from '../shared/scheduler/scheduler.js';
import { ROUTING } from '../shared/topology.js';
import { createSweeper } from '../services/sweeper/sweeper.js';
import { REDIS_URL } from '../test/support/services.js';
import { nodeIds, openEnv, seedNodes, sleep, waitFor } from './lib/env.js';
import { median, percentile, type BenchResult, type Row } from './lib/report.js';

interface PhaseResult {
  silent: number;
  latenciesMs: number[];
  sweepsMs: number[];
  rawQueryMs: number;
  duplicates: number;
  detected: number;
  noopLatenessMs: number[];
}

/**
 * One phase: `nodes` ONLINE nodes of which `silentShare` stop heartbeating at spread instants. The healthy
 * ones are stored with a lastHeartbeat ahead of time (the SQLite-backed test store cannot take thousands of
 * heartbeat writes a second to keep them fresh); the silent ones expire 2-7 s after the sweeper starts.
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
    const ids = nodeIds(nodes);
    const silentIds = ids.filter((_, i) => i % Math.round(1 / silentShare) === 0);
    const silentSet = new Set(silentIds);
    const start = Date.now();
    const lastBeat = new Map<string, number>();
    silentIds.forEach((id, i) => lastBeat.set(id, start - timeoutMs + 2000 + Math.round((5000 * i) / silentIds.length)));
    await seedNodes(env.store, ids, (id) => lastBeat.get(id) ?? start + 10 * 60_000);

    // Baseline: the raw driver's query for the same stale nodes (all silent ones, as once they all expired).
    const raw = client.db().collection('nodes');
    const cutoff = new Date(start + 10_000 - timeoutMs);
    const rawTimes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      const found = await raw.find({ status: 'ONLINE', lastHeartbeat: { $lt: cutoff } }).sort({ lastHeartbeat: 1 }).limit(env.config.sweep.batchSize).toArray();
      rawTimes.push(performance.now() - t);
      if (found.length !== silentIds.length) throw new Error(`raw query found ${found.length} stale nodes, expected ${silentIds.length}`);
    }

    // Subscriber of node.offline.
    const events: Array<{ event: NodeEvent; at: number }> = [];
    const queue = await env.bus.declareQueue({ name: `${env.namespace}.offline`, durable: false, autoDelete: true, bindings: [{ exchange: env.names.exchanges.nodeEvents, routingKey: ROUTING.nodeOffline }] });
    await env.bus.consume(queue, (d) => {
      events.push({ event: JSON.parse(d.body.toString()) as NodeEvent, at: Date.now() });
      d.ack();
    }, { prefetch: 500 });

    // The ingest's liveness record, as a long-healthy ingest writes it every INGEST_LIVENESS_MS.
    const liveness = async () => env.store.recordIngestLiveness({ instanceId: 'bench-ingest', healthySince: new Date(start - 10 * 60_000), lastSeenAt: new Date(), lagMs: 0 });
    await liveness();
    const livenessTimer = setInterval(() => void liveness().catch(() => undefined), env.config.ingest.livenessIntervalMs);

    // Baseline: a no-op BullMQ job on the same Redis, scheduled every sweep interval.
    const noopLateness: number[] = [];
    noopWorker = new Worker(noopQueueName, async (job) => {
      noopLateness.push(Date.now() - (job.timestamp + (job.opts.delay ?? 0)));
    }, { connection: redis.duplicate({ maxRetriesPerRequest: null }), prefix: env.config.redisPrefix });
    noopWorker.on('error', () => undefined);
    await noopQueue.upsertJobScheduler('noop', { every: sweepS * 1000 }, { name: 'noop' });

    // The sweeper on the BullMQ scheduler, each run timed.
    const sweeps: number[] = [];
    const real = await createBullmqScheduler({ redisUrl: REDIS_URL, prefix: env.config.redisPrefix, queueName: 'sweeper', log: env.log });
    const timed: Scheduler = {
      every: (name, intervalMs, handler) =>
        real.every(name, intervalMs, async () => {
          const t = performance.now();
          try {
            await handler();
          } finally {
            sweeps.push(performance.now() - t);
          }
        }),
      isReady: () => real.isReady(),
      close: () => real.close(),
    };
    const sweeper = createSweeper({ bus: env.bus, store: env.store, scheduler: timed, log: env.log, clock: systemClock, metrics: createMetrics(), config: env.config });
    await sweeper.start();
    stopSweeper = () => sweeper.stop();

    await waitFor(() => new Set(events.map((e) => e.event.nodeId)).size >= silentIds.length, waitCapS * 1000, 200);
    await sleep(sweepS * 1000); // one more sweep: would it publish anything twice?
    clearInterval(livenessTimer);

    const seen = new Map<string, number>();
    const latencies: number[] = [];
    for (const { event, at } of events) {
      seen.set(event.nodeId, (seen.get(event.nodeId) ?? 0) + 1);
      if (seen.get(event.nodeId) === 1 && silentSet.has(event.nodeId)) latencies.push(at - (lastBeat.get(event.nodeId)! + timeoutMs));
    }
    const duplicates = [...seen.values()].reduce((n, c) => n + c - 1, 0);
    return { silent: silentIds.length, latenciesMs: latencies, sweepsMs: sweeps, rawQueryMs: median(rawTimes)!, duplicates, detected: latencies.length, noopLatenessMs: noopLateness };
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

export async function runDetect(options: { long: boolean }): Promise<BenchResult> {
  const scale = options.long ? { nodes: 10_000, timeoutS: 30, sweepS: 5, waitCapS: 600 } : { nodes: 2_000, timeoutS: 30, sweepS: 5, waitCapS: 60 };
  const rows: Row[] = [];
  const notes: string[] = [];
  const details: Record<string, unknown> = {};
  for (const share of [0.01, 0.1]) {
    const r = await phase(scale.nodes, share, scale.timeoutS, scale.sweepS, scale.waitCapS);
    const label = `${Math.round(share * 100)}% silent (${r.silent})`;
    const p99 = percentile(r.latenciesMs, 99);
    const noopP99 = percentile(r.noopLatenessMs, 99);
    const busiest = Math.max(0, ...r.sweepsMs);
    rows.push(
      { figure: `${label}: detection latency p50`, system: percentile(r.latenciesMs, 50), baseline: null, unit: 'ms' },
      {
        figure: `${label}: detection latency p99`,
        system: p99,
        baseline: scale.sweepS * 1000 + (noopP99 ?? 0),
        baselineName: 'sweep interval + no-op job lateness p99',
        unit: 'ms',
        target: `<= ${scale.sweepS * 1000 + 500} ms`,
        met: p99 !== null && r.detected === r.silent && p99 <= scale.sweepS * 1000 + 500,
      },
      { figure: `${label}: detected`, system: r.detected, baseline: r.silent, baselineName: 'went silent', target: '>= 1x' },
      { figure: `${label}: duplicate node.offline events`, system: r.duplicates, baseline: null, target: '<= 0', met: r.duplicates === 0 },
      { figure: `${label}: longest sweep vs raw stale query`, system: busiest, baseline: r.rawQueryMs, baselineName: 'raw find', unit: 'ms', target: '<= 1.5x' },
    );
    notes.push(
      `${label}: ${r.sweepsMs.length} sweeps (ms: ${r.sweepsMs.map((s) => Math.round(s)).join(', ')}); no-op job lateness p50/p99 ${Math.round(percentile(r.noopLatenessMs, 50) ?? 0)}/${Math.round(noopP99 ?? 0)} ms`,
    );
    details[`silent${r.silent}`] = r;
  }
  return { name: 'detect', scale, rows, notes, details };
}

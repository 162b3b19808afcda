import { MongoClient, type AnyBulkWriteOperation } from 'mongodb';
import { planHeartbeatRefresh } from '../shared/domain/heartbeat-refresh.js';
import { historySlotKey } from '../shared/domain/history.js';
import type { NodeWrite } from '../shared/store/node-record.js';
import { heartbeatMessage, nodeIds, openEnv, seedNodes } from './lib/env.js';
import { median, type BenchResult, type Row } from './lib/report.js';

type Refresh = Extract<NodeWrite, { kind: 'refresh' }>;

const RAW_CHUNK = Number(process.env.BENCH_RAW_CHUNK ?? 50);

/** The same operation the adapter sends for a refresh (shared/store/mongo-node-store.ts), written against the raw driver. */
function rawOp(w: Refresh): AnyBulkWriteOperation<{ _id: string }> {
  const max: Record<string, unknown> = { lastHeartbeat: w.lastHeartbeat };
  if (w.stats) {
    const s = w.stats;
    max.stats = { reportedAt: s.reportedAt, cpuUsage: s.cpuUsage, memoryUsage: s.memoryUsage, diskUsage: s.diskUsage, containerCount: s.containerCount };
  }
  if (w.historyPoint) max[`historyRing.${historySlotKey(w.historyPoint.slot)}`] = w.historyPoint.point;
  const filter: Record<string, unknown> = { _id: w.nodeId, status: 'ONLINE' };
  if (w.minClockSkewMs !== undefined) filter.clockSkewMs = { $gte: w.minClockSkewMs };
  const update: Record<string, unknown> = { $set: { refreshId: 'bench' }, $max: max };
  if (w.clockSkewMs !== undefined) update.$min = { clockSkewMs: w.clockSkewMs };
  return { updateOne: { filter: filter as never, update: update as never } };
}

export async function runStore(options: { long: boolean }): Promise<BenchResult> {
  const scale = options.long
    ? { nodeCounts: [5_000, 10_000], upserts: 100_000, budgetS: 1800 }
    : { nodeCounts: [250, 1_000], upserts: 100_000, budgetS: 35 };
  const rows: Row[] = [];
  const notes: string[] = [];
  const details: Record<string, unknown> = {};
  for (const count of scale.nodeCounts) {
    const env = await openEnv('store');
    const client = await MongoClient.connect(env.config.mongoUrl);
    try {
      const batchSize = env.config.ingest.batchSize;
      const ids = nodeIds(count);
      const t0 = Date.now() - 1000;
      await seedNodes(env.store, ids, () => t0);
      const records = await env.store.getMany(ids);
      const raw = client.db().collection<{ _id: string }>('nodes');
      // One batch = the next `batchSize` nodes, each with one heartbeat applied by the domain: a refresh write.
      let cursor = 0;
      const nextBatch = (): Refresh[] => {
        const now = Date.now();
        const batch: Refresh[] = [];
        for (let i = 0; i < batchSize; i++) {
          const id = ids[cursor++ % ids.length]!;
          if (!records.has(id)) throw new Error(`node ${id} was not seeded`);
          const plan = planHeartbeatRefresh(id, [{ message: heartbeatMessage(id, now), deliveredAt: now }], { now, timeoutMs: 180_000, history: { points: 120, resolutionMs: 30_000 } });
          if (!plan) throw new Error(`expected a refresh write for ${id}`);
          batch.push(plan.write);
        }
        return batch;
      };
      const adapter: number[] = [];
      const driver: number[] = [];
      let roundTrips = 0;
      let adapterOps = 0;
      const started = performance.now();
      // Alternate the two so that the machine's noise falls on both alike.
      while ((adapter.length === 0 || performance.now() - started < scale.budgetS * 1000) && adapterOps < scale.upserts) {
        const a = nextBatch();
        let t = performance.now();
        const result = await env.store.write(a);
        adapter.push((a.length / (performance.now() - t)) * 1000);
        roundTrips += result.roundTrips;
        adapterOps += a.length;
        const b = nextBatch().map(rawOp);
        t = performance.now();
        // FerretDB stalls on one raw update command of >= ~100 of these operations (see docs/benchmarks.md),
        // so the baseline sends the same operations as unordered bulkWrites of RAW_CHUNK.
        for (let i = 0; i < b.length; i += RAW_CHUNK) await raw.bulkWrite(b.slice(i, i + RAW_CHUNK), { ordered: false });
        driver.push((b.length / (performance.now() - t)) * 1000);
      }
      const sys = median(adapter);
      const base = median(driver);
      rows.push({ figure: `upserts/s, ${count} nodes, batch ${batchSize}`, system: sys, baseline: base, unit: 'upserts/s', baselineName: 'raw bulkWrite', target: '>= 0.8x' });
      rows.push({ figure: `round trips per upsert, ${count} nodes`, system: roundTrips / adapterOps, baseline: 1 / RAW_CHUNK, baselineName: `raw, ${RAW_CHUNK} per bulkWrite`, target: '<= 1x' });
      notes.push(`${count} nodes: ${adapter.length} batches each (median of per-batch rates); ${(1000 / (base ?? 1)).toFixed(1)} ms per update statement on the raw driver`);
      details[`nodes${count}`] = { adapterRates: adapter, driverRates: driver, roundTrips, adapterOps };
    } finally {
      await client.close();
      await env.cleanup();
    }
  }
  return { name: 'store', scale: { ...scale, batchSize: 500, write: 'refresh (updateOne by _id, $set + $max), built by the domain', rawChunk: RAW_CHUNK }, rows, notes, details };
}

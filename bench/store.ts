import { MongoClient, type AnyBulkWriteOperation, type Db } from 'mongodb';
import { planHeartbeatRefresh } from '../shared/domain/heartbeat-refresh.js';
import { historyStep, type HistorySettings } from '../shared/domain/history.js';
import type { NodeWrite } from '../shared/store/node-record.js';
import { heartbeatMessage, nodeIds, openEnv, seedNodes } from './lib/env.js';
import { median, type BenchResult, type Row } from './lib/report.js';

type Refresh = Extract<NodeWrite, { kind: 'refresh' }>;

/** The same operation the adapter sends for a refresh (shared/store/mongo-node-store.ts), written against the raw driver. */
export function rawOp(w: Refresh): AnyBulkWriteOperation<{ _id: string }> {
  const max: Record<string, unknown> = { lastHeartbeat: w.lastHeartbeat };
  if (w.stats) {
    const s = w.stats;
    max.stats = { reportedAt: s.reportedAt, cpuUsage: s.cpuUsage, memoryUsage: s.memoryUsage, diskUsage: s.diskUsage, containerCount: s.containerCount };
  }
  const filter: Record<string, unknown> = { _id: w.nodeId, status: 'ONLINE' };
  if (w.minClockSkewMs !== undefined) filter.clockSkewMs = { $gte: w.minClockSkewMs };
  const update: Record<string, unknown> = { $set: { refreshId: 'bench' }, $max: max };
  if (w.clockSkewMs !== undefined) update.$min = { clockSkewMs: w.clockSkewMs };
  return { updateOne: { filter: filter as never, update: update as never } };
}

/**
 * The same statements the adapter sends for a batch of refreshes, against the raw driver: one bulkWrite of the
 * refreshes, then the history points of steps not stored yet in one insert, and (the test server expires no
 * documents) one delete of the steps leaving the window.
 */
export function createRawWriter(db: Db, settings: HistorySettings) {
  const nodes = db.collection<{ _id: string }>('nodes');
  const history = db.collection<{ _id: string }>('node_history');
  const stored = new Map<string, number>();
  return async function rawWrite(writes: Refresh[]): Promise<{ matched: number; statements: number; commands: number }> {
    const result = await nodes.bulkWrite(writes.map(rawOp), { ordered: false });
    const fresh = writes.flatMap((w) => {
      const step = w.historyPoint ? historyStep(w.historyPoint.t.getTime(), settings) : -Infinity;
      return w.historyPoint && step > (stored.get(w.nodeId) ?? -Infinity) ? [{ nodeId: w.nodeId, step, point: w.historyPoint }] : [];
    });
    if (fresh.length && settings.points > 0) {
      await history
        .insertMany(
          fresh.map(({ nodeId, step, point }) => ({ _id: `${nodeId}|${step}`, ...point })),
          { ordered: false },
        )
        .catch((error: { code?: number; writeErrors?: unknown }) => {
          if (error.code !== 11000 && !error.writeErrors) throw error;
        });
      await history.deleteMany({ _id: { $in: fresh.map(({ nodeId, step }) => `${nodeId}|${step - settings.points}`) } });
      for (const { nodeId, step } of fresh) stored.set(nodeId, step);
    }
    return { matched: result.matchedCount, statements: writes.length + fresh.length, commands: 1 + (fresh.length && settings.points > 0 ? 2 : 0) };
  };
}

export async function runStore(options: { long: boolean }): Promise<BenchResult> {
  // pairs: batches per side (adapter, driver alternating), bounded by budgetS per size.
  const scale = options.long
    ? { nodeCounts: [1_000, 10_000, 50_000], pairs: 12, budgetS: 90, seedChunk: 1_000 }
    : { nodeCounts: [1_000, 10_000], pairs: 6, budgetS: 30, seedChunk: 1_000 };
  const rows: Row[] = [];
  const notes: string[] = [];
  const details: Record<string, unknown> = {};
  const msPerUpdate = new Map<number, { adapter: number; driver: number }>();
  let batchSize = 0;
  for (const count of scale.nodeCounts) {
    const env = await openEnv('store');
    const client = await MongoClient.connect(env.config.mongoUrl);
    try {
      batchSize = env.config.ingest.batchSize;
      const ids = nodeIds(count);
      const t0 = Date.now() - 1000;
      process.stdout.write(`  store: ${count} nodes: seeding\n`);
      const seedStarted = performance.now();
      await seedNodes(env.store, ids, () => t0, Date.now(), scale.seedChunk);
      const seedS = (performance.now() - seedStarted) / 1000;
      const seeded = await env.store.getMany(ids.slice(0, 1));
      if (!seeded.size) throw new Error('seeding failed');
      const raw = client.db().collection<{ _id: string }>('nodes');
      const rawWrite = createRawWriter(client.db(), { points: env.config.historyPoints, resolutionMs: env.config.historyResolutionMs });
      // One batch = the next `batchSize` nodes (every node at most once per batch, as after the ingest's
      // per-node coalescing), each with one heartbeat planned by the domain: a refresh write.
      let cursor = 0;
      const nextBatch = (): Refresh[] => {
        const now = Date.now();
        const batch: Refresh[] = [];
        for (let i = 0; i < batchSize; i++) {
          const id = ids[cursor++ % ids.length]!;
          const plan = planHeartbeatRefresh(id, [{ message: heartbeatMessage(id, now), deliveredAt: now }], {
            now,
            timeoutMs: 180_000,
            history: { points: 120, resolutionMs: 30_000 },
          });
          if (!plan) throw new Error(`expected a refresh write for ${id}`);
          batch.push(plan.write);
        }
        return batch;
      };
      const failures: string[] = [];
      const adapter: number[] = [];
      const driver: number[] = [];
      let roundTrips = 0;
      let rawCommands = 0;
      let adapterOps = 0;
      let conflicts = 0;
      let driverMatched = 0;
      let driverOps = 0;
      const runAdapter = async () => {
        const a = nextBatch();
        const t = performance.now();
        let result;
        try {
          result = await env.store.write(a);
        } catch (error) {
          // The adapter gives up on a command after its 8 s operation deadline (the server may still finish it).
          if ((error as Error).name !== 'StoreUnavailableError') throw error;
          failures.push(`adapter batch ${adapter.length + 1}: ${(error as Error).message} after ${((performance.now() - t) / 1000).toFixed(1)} s`);
          adapter.push((performance.now() - t) / a.length);
          return;
        }
        adapter.push((performance.now() - t) / a.length);
        roundTrips += result.roundTrips;
        conflicts += result.conflicts.length;
        adapterOps += a.length;
      };
      const runDriver = async () => {
        const b = nextBatch();
        const t = performance.now();
        // The baseline: ONE unordered bulkWrite of the whole batch, one command (and the history's insert and prune).
        const result = await rawWrite(b);
        driver.push((performance.now() - t) / b.length);
        driverMatched += result.matched;
        rawCommands += result.commands;
        driverOps += b.length;
      };
      const started = performance.now();
      // Alternate the two, and which goes first, so that the machine's noise falls on both alike.
      for (let i = 0; i < scale.pairs && (i < 2 || performance.now() - started < scale.budgetS * 1000); i++) {
        if (i % 2 === 0) {
          await runAdapter();
          await runDriver();
        } else {
          await runDriver();
          await runAdapter();
        }
      }
      // The sweep's query for expired nodes (none are): on FerretDB it reads the whole collection; on MongoDB
      // the {status, lastHeartbeat} index answers it. Timed three times, median.
      const sweepQueryMs: number[] = [];
      for (let k = 0; k < 3; k++) {
        const t = performance.now();
        await raw
          .find({ status: 'ONLINE', lastHeartbeat: { $lt: new Date(t0 - 3_600_000) } } as never)
          .sort({ lastHeartbeat: 1 })
          .limit(500)
          .toArray();
        sweepQueryMs.push(performance.now() - t);
      }
      if (failures.length) notes.push(`${count} nodes: ${failures.length} adapter batches hit the deadline (timed up to the failure, a lower bound): ${failures.join('; ')}`);
      process.stdout.write(
        `  store: ${count} nodes: adapter ${median(adapter)!.toFixed(2)} ms/update, raw ${median(driver)!.toFixed(2)} ms/update over ${adapter.length} pairs${failures.length ? `, ${failures.length} adapter failures` : ''}\n`,
      );
      const sysMs = median(adapter)!;
      const baseMs = median(driver)!;
      msPerUpdate.set(count, { adapter: sysMs, driver: baseMs });
      rows.push({
        figure: `updates/s, ${count} nodes, batch ${batchSize}`,
        system: 1000 / sysMs,
        baseline: 1000 / baseMs,
        unit: 'updates/s',
        baselineName: 'raw bulkWrite, 1 per batch',
        target: '>= 0.9x',
      });
      // The nodes' bulk write, and when a batch brings new history steps the history's insert and prune, on both sides.
      rows.push({ figure: `commands per batch, ${count} nodes`, system: roundTrips / adapter.length, baseline: rawCommands / driver.length, baselineName: 'raw', target: '<= 1x' });
      notes.push(
        `${count} nodes: seeded in ${seedS.toFixed(1)} s (inserts in commands of ${scale.seedChunk}, ${((seedS * 1000) / count).toFixed(2)} ms per insert); ` +
          `${adapter.length} batches per side (medians of per-batch cost); ${sysMs.toFixed(2)} ms per update statement through the adapter, ${baseMs.toFixed(2)} ms on the raw driver; ` +
          `adapter conflicts ${conflicts}/${adapterOps}, raw matched ${driverMatched}/${driverOps}`,
      );
      notes.push(
        `${count} nodes: the sweep's expired-nodes query (status ONLINE, lastHeartbeat < cutoff, sorted, first page; none expired) took ${median(sweepQueryMs)!.toFixed(0)} ms (median of 3)`,
      );
      details[`nodes${count}`] = {
        seedS,
        sweepQueryMs,
        failures,
        adapterMsPerUpdate: adapter,
        driverMsPerUpdate: driver,
        roundTrips,
        adapterOps,
        conflicts,
        driverMatched,
        driverOps,
      };
    } finally {
      await client.close();
      await env.cleanup();
    }
  }
  const smallest = Math.min(...scale.nodeCounts);
  const largest = Math.max(...scale.nodeCounts);
  const a = msPerUpdate.get(smallest);
  const b = msPerUpdate.get(largest);
  if (a && b && largest !== smallest) {
    rows.push({
      figure: `ms per update, ${largest} vs ${smallest} nodes (adapter)`,
      system: b.adapter,
      baseline: a.adapter,
      unit: 'ms',
      baselineName: `${smallest} nodes`,
      target: '<= 1.5x',
    });
    rows.push({ figure: `ms per update, ${largest} vs ${smallest} nodes (raw driver)`, system: b.driver, baseline: a.driver, unit: 'ms', baselineName: `${smallest} nodes` });
  }
  return {
    name: 'store',
    scale: {
      ...scale,
      batchSize,
      write: 'refresh (updateOne by _id, $set + $max), planned by planHeartbeatRefresh, sent by the adapter write()',
      baseline: 'one raw bulkWrite per batch',
    },
    rows,
    notes,
    details,
  };
}

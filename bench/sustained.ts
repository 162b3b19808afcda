import { cpus } from 'node:os';
import { systemClock } from '../shared/clock.js';
import { createMetrics } from '../shared/metrics.js';
import type { NodeStore } from '../shared/store/node-store.js';
import { ROUTING } from '../shared/topology.js';
import { createIngest } from '../services/ingest/ingest.js';
import { heartbeatMessage, nodeIds, openEnv, seedNodes, sleep } from './lib/env.js';
import { percentile, type BenchResult } from './lib/report.js';

/**
 * Simulated agents publish heartbeats through the broker at a steady rate, then 5x for a burst; the ingest
 * stores them. Latency is publish → stored: the store write that carries a heartbeat's stats (reportedAt =
 * its publish time) settles it and every older pending heartbeat of that node.
 */
export async function runSustained(options: { long: boolean }): Promise<BenchResult> {
  const scale = options.long
    ? { agents: 5_000, intervalS: 5, steadyS: 60, burstFactor: 5, burstS: 20, drainCapS: 120 }
    : { agents: 250, intervalS: 5, steadyS: 45, burstFactor: 5, burstS: 20, drainCapS: 60 };
  const env = await openEnv('sustained', { TIMEOUT_MINUTES: '30' });
  const metrics = createMetrics();
  const pending = new Map<string, number[]>(); // nodeId -> publish times not yet stored
  const latencies: Array<{ phase: 'steady' | 'burst'; ms: number }> = [];
  let phase: 'steady' | 'burst' = 'steady';
  const phaseOf = new Map<number, 'steady' | 'burst'>();
  let lastStoredAt = 0;

  // The ingest's own store, watched: which heartbeats did each write make durable?
  const watched: NodeStore = Object.create(env.store) as NodeStore;
  watched.write = async (writes) => {
    const result = await env.store.write(writes);
    const now = Date.now();
    const conflicts = new Set(result.conflicts);
    for (const w of writes) {
      if (w.kind === 'insert' || conflicts.has(w.nodeId)) continue;
      const reportedAt = w.kind === 'update' ? w.set.stats?.reportedAt : w.stats?.reportedAt;
      const list = pending.get(w.nodeId);
      if (!reportedAt || !list) continue;
      const upTo = reportedAt.getTime();
      while (list.length && list[0]! <= upTo) {
        const sent = list.shift()!;
        latencies.push({ phase: phaseOf.get(sent) ?? 'steady', ms: now - sent });
        lastStoredAt = now;
      }
    }
    return result;
  };

  try {
    const ids = nodeIds(scale.agents);
    const t0 = Date.now();
    await seedNodes(env.store, ids, () => t0);
    const ingest = createIngest({ bus: env.bus, store: watched, log: env.log, clock: systemClock, metrics, config: env.config });
    await ingest.start();

    let published = 0;
    let publishErrors = 0;
    const publishOne = (nodeId: string) => {
      let at = Date.now();
      // Unique per node so a stored reportedAt names exactly the heartbeats it covers.
      const list = pending.get(nodeId) ?? [];
      if (list.length && list[list.length - 1]! >= at) at = list[list.length - 1]! + 1;
      list.push(at);
      pending.set(nodeId, list);
      phaseOf.set(at, phase);
      published++;
      const m = heartbeatMessage(nodeId, at);
      env.bus.publish(env.names.exchanges.agentInbound, ROUTING.heartbeat(nodeId), m, { messageId: m.id }).catch(() => publishErrors++);
    };

    // Each agent beats every interval/factor; agents are spread evenly over the interval, ticking every 50 ms.
    const depth: Array<{ t: number; depth: number }> = [];
    const started = Date.now();
    const sampler = setInterval(() => {
      env.bus
        .queueDepth(env.names.queues.ingest)
        .then((d) => depth.push({ t: Math.round((Date.now() - started) / 100) / 10, depth: d }))
        .catch(() => undefined);
    }, 1000);
    const tickMs = 50;
    async function drive(seconds: number, factor: number): Promise<void> {
      const periodMs = (scale.intervalS * 1000) / factor;
      const end = Date.now() + seconds * 1000;
      let cursor = 0;
      let due = 0;
      const begin = Date.now();
      while (Date.now() < end) {
        const shouldHave = Math.floor(((Date.now() - begin) / periodMs) * ids.length);
        for (; due < shouldHave; due++) publishOne(ids[cursor++ % ids.length]!);
        await sleep(tickMs);
      }
    }
    await drive(scale.steadyS, 1);
    phase = 'burst';
    await drive(scale.burstS, scale.burstFactor);
    const burstEnded = Date.now();
    const burstDepth = depth.at(-1)?.depth ?? null;
    const isDrained = () => [...pending.values()].every((l) => l.length === 0);
    while (!isDrained() && Date.now() - burstEnded < scale.drainCapS * 1000) await sleep(100);
    const drained = isDrained();
    const drainS = drained ? Math.max(0, lastStoredAt - burstEnded) / 1000 : null;
    clearInterval(sampler);
    await ingest.stop();

    const steady = latencies.filter((l) => l.phase === 'steady').map((l) => l.ms);
    const burst = latencies.filter((l) => l.phase === 'burst').map((l) => l.ms);
    const stillPending = [...pending.values()].reduce((n, l) => n + l.length, 0);
    const maxDepth = Math.max(0, ...depth.map((d) => d.depth));
    const steadyRate = scale.agents / scale.intervalS;
    return {
      name: 'sustained',
      scale: { ...scale, steadyRate: `${steadyRate} msg/s`, burstRate: `${steadyRate * scale.burstFactor} msg/s` },
      rows: [
        { figure: 'steady publish→stored p50', system: percentile(steady, 50), baseline: null, unit: 'ms' },
        { figure: 'steady publish→stored p99', system: percentile(steady, 99), baseline: null, unit: 'ms', target: '< 1000 ms' },
        { figure: 'burst publish→stored p50', system: percentile(burst, 50), baseline: null, unit: 'ms' },
        { figure: 'burst publish→stored p99', system: percentile(burst, 99), baseline: null, unit: 'ms' },
        { figure: 'queue depth at burst end / max', system: burstDepth, baseline: null, unit: `msgs (max ${maxDepth})` },
        { figure: 'drain time after burst', system: drainS, baseline: null, unit: 's', target: '< 30 s', met: drainS === null ? false : drainS < 30 },
      ],
      notes: [
        `no baseline: absolute figures on ${cpus().length} cores shared with other test runs`,
        `published ${published} heartbeats (${publishErrors} publish failures); ${latencies.length} stored${stillPending ? `, ${stillPending} not stored within the drain cap` : ''}`,
        `queue depth (s: msgs): ${depth
          .filter((_, i) => i % 5 === 0)
          .map((d) => `${d.t}: ${d.depth}`)
          .join(', ')}`,
      ],
      details: { depth, steadyCount: steady.length, burstCount: burst.length, drained, drainS, published },
    };
  } finally {
    await env.cleanup();
  }
}

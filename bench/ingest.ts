import amqp, { type ConsumeMessage } from 'amqplib';
import { MongoClient } from 'mongodb';
import { systemClock } from '../shared/clock.js';
import { createMetrics } from '../shared/metrics.js';
import type { HeartbeatMessage } from '../shared/messages/index.js';
import { createIngest } from '../services/ingest/ingest.js';
import { planHeartbeatRefresh } from '../shared/domain/heartbeat-refresh.js';
import { createMemoryNodeStore } from '../shared/store/memory-node-store.js';
import type { NodeStore } from '../shared/store/node-store.js';
import type { Bus } from '../shared/bus/bus.js';
import type { OrchestratorConfig } from '../shared/config.js';
import { brokerNames, topology, type BrokerNames, type Topology } from '../shared/topology.js';
import { RABBITMQ_URL } from '../test/support/services.js';
import { heartbeatMessage, nodeIds, openEnv, publishHeartbeats, seedNodes, sleep, type BenchEnv } from './lib/env.js';
import type { BenchResult } from './lib/report.js';
import { createRawWriter } from './store.js';

interface Options {
  long: boolean;
}

async function counterTotal(counter: { get(): Promise<{ values: Array<{ value: number }> }> }): Promise<number> {
  return (await counter.get()).values.reduce((sum, v) => sum + v.value, 0);
}

/** Heartbeats as a backlog of live agents leaves them: node 0..N-1, then again, `perNode` rounds. */
function backlog(ids: string[], total: number, start: number): HeartbeatMessage[] {
  return Array.from({ length: total }, (_, i) => heartbeatMessage(ids[i % ids.length]!, start + i));
}

/** The ingest queue as it was before it became a quorum queue: a classic durable queue, dead-lettering to the same exchange. */
function withClassicIngestQueue(t: Topology, names: BrokerNames): Topology {
  return { ...t, queues: t.queues.map((q) => (q.name === names.queues.ingest ? { ...q, arguments: { 'x-dead-letter-exchange': names.exchanges.deadLetter } } : q)) };
}

/** Where an ingest side runs: the bench's own broker names (the quorum queue), or a second namespace with the classic queue. */
interface Side {
  names: BrokerNames;
  bus: Bus;
  config: Readonly<OrchestratorConfig>;
}

/** Confirmed publishes as agents send them (500 confirms in flight), in messages per second. */
async function publishRate(side: Side, messages: HeartbeatMessage[]): Promise<number> {
  const started = performance.now();
  await publishHeartbeats(side.bus, side.names, messages);
  return messages.length / ((performance.now() - started) / 1000);
}

/** (a) The broker's ceiling: raw amqplib consume with the same prefetch, acknowledging in groups, no store. */
async function brokerCeiling(env: Pick<Side, 'names'>, total: number, prefetch: number, group: number): Promise<{ rate: number; seconds: number }> {
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();
  await channel.prefetch(prefetch);
  let count = 0;
  let last: ConsumeMessage | null = null;
  const started = performance.now();
  let finished = 0;
  await new Promise<void>((resolve) => {
    void channel.consume(env.names.queues.ingest, (msg) => {
      if (!msg) return;
      count++;
      last = msg;
      if (count % group === 0 || count === total) {
        channel.ack(msg, true);
        last = null;
      }
      if (count === total) {
        finished = performance.now();
        resolve();
      }
    });
  });
  if (last) channel.ack(last, true);
  await channel.close();
  await connection.close();
  const seconds = (finished - started) / 1000;
  return { rate: total / seconds, seconds };
}

/** (b) The naive design: one findOneAndUpdate upsert per message, acknowledged one by one. */
async function naive(env: BenchEnv, total: number, capMs: number, prefetch: number): Promise<{ rate: number; processed: number; seconds: number }> {
  const client = await MongoClient.connect(env.config.mongoUrl);
  const nodes = client.db().collection<{ _id: string }>('nodes');
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();
  await channel.prefetch(prefetch);
  let processed = 0;
  let chain = Promise.resolve();
  let stop = false;
  const started = performance.now();
  let lastDone = started;
  let drained = false;
  const { consumerTag } = await channel.consume(env.names.queues.ingest, (msg) => {
    if (!msg) return;
    chain = chain.then(async () => {
      if (stop) return;
      const m = JSON.parse(msg.content.toString()) as HeartbeatMessage;
      await nodes.findOneAndUpdate(
        { _id: m.nodeId },
        {
          $set: {
            lastHeartbeat: new Date(),
            stats: {
              reportedAt: new Date(m.payload.timestamp),
              cpuUsage: m.payload.cpuUsage,
              memoryUsage: m.payload.memoryUsage,
              diskUsage: m.payload.diskUsage,
              containerCount: m.payload.containerCount,
            },
            status: 'ONLINE',
          },
        },
        { upsert: true },
      );
      channel.ack(msg);
      processed++;
      lastDone = performance.now();
    });
  });
  while (performance.now() - started < capMs && !drained) {
    await sleep(100);
    drained = processed >= total;
  }
  stop = true;
  const stoppedAt = performance.now();
  await channel.cancel(consumerTag);
  await chain;
  await channel.close().catch(() => undefined);
  await connection.close();
  await client.close();
  const seconds = ((drained ? lastDone : stoppedAt) - started) / 1000;
  return { rate: processed / seconds, processed, seconds };
}

/** The project's ingest (createIngest on the RabbitMQ bus and the MongoDB store) draining the backlog. */
async function system(env: BenchEnv, total: number, capMs: number, store: NodeStore = env.store, side: Side = env, pollMs = 200) {
  const metrics = createMetrics();
  const ingest = createIngest({ bus: side.bus, store, log: env.log, clock: systemClock, metrics, config: side.config });
  const started = performance.now();
  await ingest.start();
  let done = 0;
  let lastChange = started;
  while (performance.now() - started < capMs) {
    await sleep(pollMs);
    const now = await counterTotal(metrics.messagesIngested);
    if (now !== done) {
      done = now;
      lastChange = performance.now();
    }
    if (done >= total) break;
  }
  const drained = done >= total;
  const stoppedAt = performance.now();
  await ingest.stop();
  const stored = await counterTotal(metrics.messagesIngested);
  // Drained: up to the last stored message. Cut off by the cap: the whole time it ran.
  const seconds = ((drained ? lastChange : stoppedAt) - started) / 1000;
  const storeWrites = await counterTotal(metrics.storeWrites);
  const nodeWrites = await counterTotal(metrics.nodeWrites);
  const batches = (await metrics.batchSize.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
  return { rate: stored / seconds, stored, seconds, drained, storeWrites, nodeWrites, batches };
}

/**
 * The test store's ceiling for the same work: the raw driver writes the refresh statements the ingest wrote
 * (as many, over the same nodes, planned by planHeartbeatRefresh), in as many bulkWrites, one command each.
 * Its rate is the ingest's stored messages over the time these writes take: no broker, no domain, no read.
 */
async function storeCeiling(
  env: BenchEnv,
  ids: string[],
  stored: number,
  statements: number,
  commands: number,
): Promise<{ rate: number; seconds: number; statements: number; commands: number }> {
  const client = await MongoClient.connect(env.config.mongoUrl);
  const rawWrite = createRawWriter(client.db(), { points: env.config.historyPoints, resolutionMs: env.config.historyResolutionMs });
  const perCommand = Math.ceil(statements / Math.max(1, commands));
  let cursor = 0;
  let seconds = 0;
  let sent = 0;
  let sentCommands = 0;
  try {
    while (sent < statements) {
      const n = Math.min(perCommand, statements - sent);
      const now = Date.now();
      const ops = Array.from({ length: n }, () => {
        const id = ids[cursor++ % ids.length]!;
        const plan = planHeartbeatRefresh(id, [{ message: heartbeatMessage(id, now), deliveredAt: now }], {
          now,
          timeoutMs: env.config.timeoutMs,
          history: { points: env.config.historyPoints, resolutionMs: env.config.historyResolutionMs },
        });
        return plan!.write;
      });
      const t = performance.now();
      await rawWrite(ops);
      seconds += (performance.now() - t) / 1000;
      sent += n;
      sentCommands++;
    }
  } finally {
    await client.close();
  }
  return { rate: stored / seconds, seconds, statements: sent, commands: sentCommands };
}

async function purge(env: Pick<Side, 'names'>): Promise<void> {
  const connection = await amqp.connect(RABBITMQ_URL);
  const channel = await connection.createChannel();
  await channel.purgeQueue(env.names.queues.ingest);
  await connection.close();
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/**
 * The ingest queue's type, side by side on the same broker in the same run: confirmed publishes, the raw broker
 * drain and the ingest's drain on the in-memory store (the store's cost does not depend on the queue), each
 * measured on the quorum queue and on a classic one in a namespace of its own. `rounds` rounds in alternating
 * order (quorum first, then classic first, ...), medians reported: one short sample of each moves with the load
 * of the shared machine.
 */
async function queueTypes(env: BenchEnv, ids: string[], total: number, capMs: number, rounds: number) {
  const classicNames = brokerNames(`${env.namespace}-classic`);
  // The ingest declares topology(names); on this side the bus declares the classic queue in its place.
  const classicBus: Bus = { ...env.bus, declareTopology: (t) => env.bus.declareTopology(withClassicIngestQueue(t, classicNames)) };
  const classic: Side = { names: classicNames, bus: classicBus, config: { ...env.config, brokerNamespace: `${env.namespace}-classic` } };
  await classicBus.declareTopology(topology(classicNames));
  const memoryStore = async () => {
    const memory = createMemoryNodeStore({ historyPoints: env.config.historyPoints, historyResolutionMs: env.config.historyResolutionMs });
    await seedNodes(memory, ids, () => Date.now());
    return memory;
  };
  const prefetch = env.config.ingest.prefetch;
  const batchSize = env.config.ingest.batchSize;
  const sides = { quorum: env as Side, classic };
  type Sample = { publish: number; drain: number; ingest: number };
  const samples: Record<keyof typeof sides, Sample[]> = { quorum: [], classic: [] };
  try {
    for (let round = 0; round < rounds; round++) {
      const order: Array<keyof typeof sides> = round % 2 === 0 ? ['quorum', 'classic'] : ['classic', 'quorum'];
      for (const type of order) {
        const side = sides[type];
        const publish = await publishRate(side, backlog(ids, total, Date.now()));
        const drain = await brokerCeiling(side, total, prefetch, batchSize);
        await publishHeartbeats(side.bus, side.names, backlog(ids, total, Date.now()));
        const ingest = await system(env, total, capMs, await memoryStore(), side, 20);
        await purge(side);
        samples[type].push({ publish, drain: drain.rate, ingest: ingest.stored === total ? ingest.rate : NaN });
      }
    }
  } finally {
    for (const q of Object.values(classicNames.queues)) await env.bus.deleteQueue(q).catch(() => undefined);
    for (const e of Object.values(classicNames.exchanges)) await env.bus.deleteExchange(e).catch(() => undefined);
  }
  const medians = (type: keyof typeof sides) => ({
    publish: median(samples[type].map((x) => x.publish)),
    drain: median(samples[type].map((x) => x.drain)),
    ingest: median(samples[type].map((x) => x.ingest)),
  });
  return { quorum: medians('quorum'), classic: medians('classic'), samples, rounds, messages: total };
}

export async function runIngest(options: Options): Promise<BenchResult> {
  const scale = options.long
    ? { nodes: 10_000, heartbeats: 50_000, systemCapS: 300, naiveCapS: 30, queueTypeMessages: 50_000 }
    : { nodes: 1_000, heartbeats: 10_000, systemCapS: 60, naiveCapS: 20, queueTypeMessages: 20_000 };
  const env = await openEnv('ingest', { TIMEOUT_MINUTES: '30' });
  try {
    const ids = nodeIds(scale.nodes);
    const t0 = Date.now();
    await seedNodes(env.store, ids, () => t0);
    const prefetch = env.config.ingest.prefetch;
    const batchSize = env.config.ingest.batchSize;

    // (a) broker ceiling
    await publishHeartbeats(env.bus, env.names, backlog(ids, scale.heartbeats, Date.now()));
    const ceiling = await brokerCeiling(env, scale.heartbeats, prefetch, batchSize);

    // the pipeline's own ceiling: this system on the in-memory store (same nodes, same backlog)
    const memory = createMemoryNodeStore({ historyPoints: env.config.historyPoints, historyResolutionMs: env.config.historyResolutionMs });
    await seedNodes(memory, ids, () => t0);
    await publishHeartbeats(env.bus, env.names, backlog(ids, scale.heartbeats, Date.now()));
    const mem = await system(env, scale.heartbeats, scale.systemCapS * 1000, memory);
    await purge(env);

    // this system on the test store
    await publishHeartbeats(env.bus, env.names, backlog(ids, scale.heartbeats, Date.now()));
    const sys = await system(env, scale.heartbeats, scale.systemCapS * 1000);
    await purge(env);

    // the test store's ceiling for the same statements (raw driver), right after
    const storeMax = await storeCeiling(env, ids, sys.stored, sys.nodeWrites, sys.storeWrites);

    // (b) naive: only as many messages as it can take in its time cap (it is the slow one)
    const naiveCount = Math.min(scale.heartbeats, Math.max(1000, Math.ceil(sys.rate * scale.naiveCapS)));
    await publishHeartbeats(env.bus, env.names, backlog(ids, naiveCount, Date.now()));
    const slow = await naive(env, naiveCount, scale.naiveCapS * 1000, prefetch);
    await purge(env);

    // Per-node coalescing: in a round-robin backlog a batch holds a node more than once only when the batch
    // is larger than the fleet sending into it. A fleet of 100 nodes x 20 heartbeats shows it.
    const smallFleet = nodeIds(100, 'small');
    await seedNodes(env.store, smallFleet, () => Date.now());
    await publishHeartbeats(env.bus, env.names, backlog(smallFleet, 2000, Date.now()));
    const coalesced = await system(env, 2000, scale.systemCapS * 1000);
    await purge(env);
    const coalescedWrites = coalesced.nodeWrites / Math.max(1, coalesced.stored);

    // The quorum queue's cost: the same work on a classic ingest queue, in this run.
    const types = await queueTypes(env, ids, scale.queueTypeMessages, scale.systemCapS * 1000, 3);

    const writesPerMessage = sys.nodeWrites / Math.max(1, sys.stored);
    const roundTripsPerMessage = sys.storeWrites / Math.max(1, sys.stored);
    return {
      name: 'ingest',
      scale: { ...scale, prefetch, batchSize, order: 'round-robin over node ids (a live fleet backlog)' },
      rows: [
        { figure: 'in-memory store: drain rate vs broker ceiling (a)', system: mem.rate, baseline: ceiling.rate, unit: 'msg/s', baselineName: 'raw amqplib', target: '>= 0.5x' },
        {
          figure: 'test store: drain rate vs raw store ceiling',
          system: sys.rate,
          baseline: storeMax.rate,
          unit: 'msg/s',
          baselineName: 'raw bulkWrite of the same statements',
          target: '>= 0.9x',
        },
        { figure: 'test store: drain rate vs broker ceiling (a)', system: sys.rate, baseline: ceiling.rate, unit: 'msg/s', baselineName: 'raw amqplib' },
        { figure: 'test store: drain rate vs naive (b)', system: sys.rate, baseline: slow.rate, unit: 'msg/s', baselineName: 'findOneAndUpdate each' },
        { figure: 'node writes per message', system: writesPerMessage, baseline: 1, baselineName: 'naive', target: '< 1', met: writesPerMessage < 1 },
        { figure: 'store round trips per message', system: roundTripsPerMessage, baseline: 1, baselineName: 'naive', target: '< 1', met: roundTripsPerMessage < 1 },
        { figure: 'node writes per message, 100-node fleet x 20 beats', system: coalescedWrites, baseline: 1, baselineName: 'naive', target: '< 1', met: coalescedWrites < 1 },
        { figure: 'quorum vs classic queue: confirmed publishes', system: types.quorum.publish, baseline: types.classic.publish, unit: 'msg/s', baselineName: 'classic queue' },
        { figure: 'quorum vs classic queue: raw drain (a)', system: types.quorum.drain, baseline: types.classic.drain, unit: 'msg/s', baselineName: 'classic queue' },
        {
          figure: 'quorum vs classic queue: ingest drain, in-memory store',
          system: types.quorum.ingest,
          baseline: types.classic.ingest,
          unit: 'msg/s',
          baselineName: 'classic queue',
        },
      ],
      notes: [
        `this system stored ${sys.stored} of ${scale.heartbeats} heartbeats in ${sys.seconds.toFixed(1)} s${sys.drained ? '' : ' (time cap reached)'} (${sys.batches} batches, ${sys.storeWrites} bulk writes, ${sys.nodeWrites} node documents written)`,
        `in-memory store: stored ${mem.stored} of ${scale.heartbeats} in ${mem.seconds.toFixed(2)} s (${mem.batches} batches, ${mem.nodeWrites} node documents written)`,
        `raw store ceiling: ${storeMax.statements} refresh statements in ${storeMax.commands} bulkWrites took ${storeMax.seconds.toFixed(1)} s (${((storeMax.seconds * 1000) / Math.max(1, storeMax.statements)).toFixed(2)} ms per statement)`,
        `broker ceiling drained ${scale.heartbeats} in ${ceiling.seconds.toFixed(2)} s; naive stored ${slow.processed} in ${slow.seconds.toFixed(1)} s`,
        `coalescing: 2000 heartbeats of 100 nodes stored with ${coalesced.nodeWrites} node writes in ${coalesced.storeWrites} bulk writes (${coalesced.seconds.toFixed(1)} s)`,
        `queue types: ${types.messages} heartbeats per sample, ${types.rounds} rounds in alternating order, medians; samples (quorum / classic, msg/s): publish ${types.samples.quorum.map((x) => Math.round(x.publish)).join(', ')} / ${types.samples.classic.map((x) => Math.round(x.publish)).join(', ')}; raw drain ${types.samples.quorum.map((x) => Math.round(x.drain)).join(', ')} / ${types.samples.classic.map((x) => Math.round(x.drain)).join(', ')}; ingest ${types.samples.quorum.map((x) => Math.round(x.ingest)).join(', ')} / ${types.samples.classic.map((x) => Math.round(x.ingest)).join(', ')}`,
      ],
      details: { ceiling, memory: mem, system: sys, storeCeiling: storeMax, naive: slow, coalesced, queueTypes: types },
    };
  } finally {
    await env.cleanup();
  }
}

import { randomUUID } from 'node:crypto';
import { deleteRedisKeys } from '../../test/support/redis-keys.js';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import type { Bus } from '../../shared/bus/bus.js';
import { loadOrchestratorConfig, type OrchestratorConfig } from '../../shared/config.js';
import { applyMessage, newDraft } from '../../shared/domain/apply-message.js';
import { draftToWrite } from '../../shared/domain/draft-write.js';
import { createLogger, type Logger } from '../../shared/logger.js';
import type { HeartbeatMessage, RegisterMessage } from '../../shared/messages/index.js';
import { createMongoNodeStore } from '../../shared/store/mongo-node-store.js';
import type { NodeWrite } from '../../shared/store/node-record.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { brokerNames, ROUTING, topology, type BrokerNames } from '../../shared/topology.js';
import { mongoUrlFor, RABBITMQ_URL, REDIS_URL, uniqueName } from '../../test/support/services.js';

export type MongoStore = Awaited<ReturnType<typeof createMongoNodeStore>>;

/** One benchmark's private namespace, database and Redis prefix, and how to remove them afterwards. */
export interface BenchEnv {
  namespace: string;
  database: string;
  config: Readonly<OrchestratorConfig>;
  names: BrokerNames;
  log: Logger;
  store: MongoStore;
  bus: Bus;
  cleanup(): Promise<void>;
}

export async function openEnv(name: string, env: Record<string, string> = {}): Promise<BenchEnv> {
  const namespace = uniqueName(`bench-${name}`);
  const database = namespace.replace(/-/g, '_');
  const config = loadOrchestratorConfig({
    RABBITMQ_URL,
    MONGO_URL: mongoUrlFor(database),
    REDIS_URL,
    BROKER_NAMESPACE: namespace,
    REDIS_PREFIX: `bench:${namespace}`,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    // Agent authentication costs are not what these benchmarks compare (see docs/benchmarks.md).
    AUTH_MODE: 'off',
    ...env,
  });
  const log = createLogger({ level: config.log.level, format: 'text' }).child({ component: `bench-${name}` });
  const store = await createMongoNodeStore({ url: config.mongoUrl, historyPoints: config.historyPoints, historyResolutionMs: config.historyResolutionMs });
  await store.ensureIndexes();
  const bus = await createRabbitBus({ url: config.rabbitmqUrl, log, name: `bench-${namespace}`, initialMaxRetries: 3 });
  const names = brokerNames(namespace);
  await bus.declareTopology(topology(names));
  return {
    namespace,
    database,
    config,
    names,
    log,
    store,
    bus,
    async cleanup() {
      for (const q of Object.values(names.queues)) await bus.deleteQueue(q).catch(() => undefined);
      for (const e of Object.values(names.exchanges)) await bus.deleteExchange(e).catch(() => undefined);
      await deleteRedisPrefix(config.redisPrefix);
      await store.connection.dropDatabase().catch(() => undefined);
      await bus.close();
      await store.close();
    },
  };
}

export function deleteRedisPrefix(prefix: string): Promise<void> {
  return deleteRedisKeys(REDIS_URL, prefix);
}

export function nodeIds(count: number, prefix = 'node'): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(5, '0')}`);
}

export function registerMessage(nodeId: string, at: number): RegisterMessage {
  return {
    id: randomUUID(),
    type: 'agent.register',
    version: 1,
    sentAt: new Date(at).toISOString(),
    nodeId,
    payload: { nodeId, hostname: `${nodeId}.bench`, ipAddress: '10.0.0.7', maxServers: 20 },
  };
}

export function heartbeatMessage(nodeId: string, at: number): HeartbeatMessage {
  const stamp = new Date(at).toISOString();
  return {
    id: randomUUID(),
    type: 'agent.heartbeat',
    version: 1,
    sentAt: stamp,
    nodeId,
    payload: { cpuUsage: 12.5, memoryUsage: 40.25, diskUsage: 55, containerCount: 3, timestamp: stamp },
  };
}

/**
 * Registers nodes the way the ingest would (domain: applyMessage + draftToWrite → insert), with
 * `lastHeartbeat` = `at(nodeId)`; their node.registered events count as already published (empty outbox).
 */
export async function seedNodes(store: NodeStore, ids: string[], at: (nodeId: string) => number, now = Date.now(), chunk = 500): Promise<void> {
  const writes: NodeWrite[] = ids.map((id) => {
    const draft = newDraft(null);
    applyMessage(draft, { message: registerMessage(id, at(id)), deliveredAt: at(id) }, { now, timeoutMs: 180_000, history: { points: 120, resolutionMs: 30_000 } });
    const write = draftToWrite(draft)!;
    return write.kind === 'insert' ? { ...write, record: { ...write.record, outbox: [] } } : write;
  });
  for (let i = 0; i < writes.length; i += chunk) {
    // A chunk that outlasted the adapter's deadline on a busy test server may have been stored anyway:
    // sent again, its inserts come back as conflicts (already there), which is what seeding wants.
    for (let attempt = 1; ; attempt++) {
      try {
        await store.write(writes.slice(i, i + chunk));
        break;
      } catch (error) {
        if (attempt >= 5 || (error as Error).name !== 'StoreUnavailableError') throw error;
      }
    }
  }
}

/** Publishes heartbeats as agents do (confirmed, persistent), `concurrency` confirms in flight. */
export async function publishHeartbeats(bus: Bus, names: BrokerNames, messages: HeartbeatMessage[], concurrency = 500): Promise<void> {
  for (let i = 0; i < messages.length; i += concurrency) {
    await Promise.all(messages.slice(i, i + concurrency).map((m) => bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat(m.nodeId), m, { messageId: m.id })));
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(intervalMs);
  }
  return check();
}

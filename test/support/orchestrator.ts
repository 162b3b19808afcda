import { randomUUID } from 'node:crypto';
import { connectRateLimiter } from '../../shared/backends.js';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import type { Bus, Consumer } from '../../shared/bus/bus.js';
import { systemClock, type Clock } from '../../shared/clock.js';
import { loadOrchestratorConfig, type OrchestratorConfig } from '../../shared/config.js';
import { createLogger, createMemoryLogger, type Logger } from '../../shared/logger.js';
import { createMetrics, type Metrics } from '../../shared/metrics.js';
import type { NodeEvent } from '../../shared/messages/index.js';
import { createBullmqScheduler } from '../../shared/scheduler/bullmq-scheduler.js';
import { createMemoryScheduler } from '../../shared/scheduler/memory-scheduler.js';
import { createMongoNodeStore } from '../../shared/store/mongo-node-store.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { brokerNames, ROUTING, topology, type BrokerNames } from '../../shared/topology.js';
import { startApi, type RunningApi } from '../../services/api/start-api.js';
import type { Ingest } from '../../services/ingest/ingest.js';
import { startIngest as startIngestService } from '../../services/ingest/start-ingest.js';
import { startSweeper as startSweeperService } from '../../services/sweeper/start-sweeper.js';
import { deleteRedisKeys } from './redis-keys.js';
import { MONGO_URL, mongoUrlFor, RABBITMQ_URL, REDIS_URL, uniqueName } from './services.js';

export interface HarnessOptions {
  /** Fast timings by default: timeout 1 s, sweep every 250 ms. */
  env?: Record<string, string>;
  ingests?: number;
  sweepers?: number;
  api?: boolean;
  scheduler?: 'bullmq' | 'memory';
  clock?: Clock;
  afterMark?: (nodeIds: string[]) => Promise<void>;
  afterStore?: () => Promise<void>;
  /** Reuse another harness's namespace, database and prefix (to restart components over the same state). */
  shareWith?: Harness;
  log?: Logger;
  /**
   * Agent authentication and the operator token (docs/security.md). Off by default: the harness sets
   * AUTH_MODE=off and a rate limit no test reaches, unless this or `env` says otherwise.
   */
  auth?: { joinToken: string; operatorToken?: string };
}

export interface Harness {
  namespace: string;
  database: string;
  config: Readonly<OrchestratorConfig>;
  names: BrokerNames;
  store: NodeStore;
  bus: Bus;
  metrics: Metrics;
  log: Logger & { lines?: string[] };
  url: string;
  ingests: Ingest[];
  startIngest(): Promise<Ingest>;
  stopIngests(): Promise<void>;
  startSweeper(options?: { afterMark?: (nodeIds: string[]) => Promise<void> }): Promise<{ stop(): Promise<void> }>;
  stopSweepers(): Promise<void>;
  /** One more api replica (own broker connection and rate limiter, as another process has), stopped with the harness. */
  startApi(): Promise<{ url: string; stop(): Promise<void> }>;
  /** A subscriber's own durable queue bound to node.events with the given keys. */
  subscribe(keys?: string[]): Promise<EventCollector>;
  /** Publishes an agent message as an agent would (AMQP, confirmed). */
  publishAgent(type: 'agent.register' | 'agent.heartbeat' | 'agent.shutdown', nodeId: string, payload: object, overrides?: Record<string, unknown>): Promise<void>;
  stop(options?: { keepData?: boolean }): Promise<void>;
}

export interface EventCollector {
  events: NodeEvent[];
  queue: string;
  ofType(type: string, nodeId?: string): NodeEvent[];
  close(): Promise<void>;
}

export function registerBody(nodeId: string) {
  return { nodeId, hostname: `${nodeId}.example`, ipAddress: '10.0.0.7', maxServers: 20 };
}

export function statsBody(overrides: Partial<{ cpuUsage: number; memoryUsage: number; diskUsage: number; containerCount: number; timestamp: string }> = {}) {
  return { cpuUsage: 12.5, memoryUsage: 40.25, diskUsage: 55, containerCount: 3, timestamp: new Date().toISOString(), ...overrides };
}

/** Starts ingest(s), sweeper(s) and the api in this process, against the real services, in a namespace of their own. */
export async function startOrchestrator(options: HarnessOptions = {}): Promise<Harness> {
  const namespace = options.shareWith?.namespace ?? uniqueName('t');
  const database = options.shareWith?.database ?? namespace.replace(/-/g, '_');
  const config = loadOrchestratorConfig({
    RABBITMQ_URL,
    MONGO_URL: mongoUrlFor(database),
    REDIS_URL,
    TIMEOUT_MINUTES: String(1 / 60),
    HEALTH_CHECK_INTERVAL: '250',
    INGEST_FLUSH_MS: '20',
    BROKER_NAMESPACE: namespace,
    REDIS_PREFIX: `test:${namespace}`,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    MASS_SILENCE_GUARD: 'false',
    AUTH_MODE: options.auth ? 'on' : 'off',
    ...(options.auth ? { AGENT_JOIN_TOKEN: options.auth.joinToken } : {}),
    ...(options.auth?.operatorToken ? { OPERATOR_TOKEN: options.auth.operatorToken } : {}),
    RATE_LIMIT_PER_NODE_PER_MINUTE: '1000000',
    ...options.env,
  });
  const log = options.log ?? (process.env.TEST_LOG_LEVEL ? createLogger({ level: config.log.level, format: 'text' }) : createMemoryLogger('info'));
  const clock = options.clock ?? systemClock;
  const names = brokerNames(namespace);
  const metrics = createMetrics();
  const store = await createMongoNodeStore({
    url: config.mongoUrl,
    historyPoints: config.historyPoints,
    historyResolutionMs: config.historyResolutionMs,
    serverSelectionTimeoutMs: 2000,
  });
  await store.ensureIndexes();
  const bus = await createRabbitBus({ url: config.rabbitmqUrl, log, name: `test-${namespace}`, initialMaxRetries: 3 });
  await bus.declareTopology(topology(names));
  const ingests: Ingest[] = [];
  const sweepers: Array<{ stop(): Promise<void> }> = [];
  const collectors: EventCollector[] = [];
  // The services start through the same functions as their main.ts, so no test passes on wiring production lacks.
  let api: RunningApi | null = null;
  const apis: Array<{ url: string; stop(): Promise<void> }> = [];

  async function startIngest(): Promise<Ingest> {
    const ingest = await startIngestService(config, { bus, store, log: log.child({ component: 'ingest' }), clock, metrics, afterStore: options.afterStore });
    ingests.push(ingest);
    return ingest;
  }

  async function startSweeper(sweeperOptions: { afterMark?: (nodeIds: string[]) => Promise<void> } = {}) {
    const scheduler =
      options.scheduler === 'memory' ? createMemoryScheduler() : await createBullmqScheduler({ redisUrl: config.redisUrl, prefix: config.redisPrefix, queueName: 'sweeper', log });
    // Each sweeper gets its own connection, as separate processes would.
    const sweeperBus = await createRabbitBus({ url: config.rabbitmqUrl, log, name: `test-sweeper-${namespace}`, initialMaxRetries: 3 });
    const sweeper = await startSweeperService(config, {
      bus: sweeperBus,
      store,
      scheduler,
      log: log.child({ component: 'sweeper' }),
      clock,
      metrics,
      afterMark: sweeperOptions.afterMark ?? options.afterMark,
    });
    const handle = {
      async stop() {
        await sweeper.stop();
        await sweeperBus.close();
      },
    };
    sweepers.push(handle);
    return handle;
  }

  /** An api as main.ts starts one: the rate limiter on Redis under the harness's REDIS_PREFIX, removed at stop. */
  async function startApiReplica(apiBus: Bus): Promise<{ running: RunningApi; stop(): Promise<void> }> {
    const apiLog = log.child({ component: 'api' });
    const rateLimiter = connectRateLimiter(config, apiLog);
    const running = await startApi(config, { bus: apiBus, store, clock, log: apiLog, metrics, rateLimiter }, { port: 0, host: '127.0.0.1' }).catch(async (error: unknown) => {
      await rateLimiter.close();
      throw error;
    });
    return {
      running,
      async stop() {
        // A test may leave connections open: the api stops as in production, and what is left is cut.
        const stopping = running.stop();
        running.server.closeAllConnections();
        await stopping;
        await rateLimiter.close();
      },
    };
  }

  for (let i = 0; i < (options.ingests ?? 1); i++) await startIngest();
  for (let i = 0; i < (options.sweepers ?? 1); i++) await startSweeper();
  if (options.api ?? true) {
    const first = await startApiReplica(bus);
    api = first.running;
    apis.push({ url: first.running.url, stop: first.stop });
  }
  const url = api?.url ?? '';

  const harness: Harness = {
    namespace,
    database,
    config,
    names,
    store,
    bus,
    metrics,
    log,
    url,
    ingests,
    startIngest,
    async stopIngests() {
      for (const i of ingests.splice(0)) await i.stop();
    },
    startSweeper,
    async stopSweepers() {
      for (const s of sweepers.splice(0)) await s.stop();
    },
    async startApi() {
      const apiBus = await createRabbitBus({ url: config.rabbitmqUrl, log, name: `test-api-${namespace}`, initialMaxRetries: 3 });
      const replica = await startApiReplica(apiBus).catch(async (error: unknown) => {
        await apiBus.close();
        throw error;
      });
      const handle = {
        url: replica.running.url,
        async stop() {
          await replica.stop();
          await apiBus.close();
        },
      };
      apis.push(handle);
      return handle;
    },
    async subscribe(keys = [ROUTING.nodeRegistered, ROUTING.nodeOnline, ROUTING.nodeOffline]) {
      const queue = `${namespace}.subscriber.${randomUUID().slice(0, 8)}`;
      await bus.declareQueue({ name: queue, durable: true, bindings: keys.map((routingKey) => ({ exchange: names.exchanges.nodeEvents, routingKey })) });
      const events: NodeEvent[] = [];
      const consumer: Consumer = await bus.consume(
        queue,
        (d) => {
          events.push(JSON.parse(d.body.toString()) as NodeEvent);
          d.ack();
        },
        { prefetch: 100 },
      );
      const collector: EventCollector = {
        events,
        queue,
        ofType: (type, nodeId) => events.filter((e) => e.type === type && (!nodeId || e.nodeId === nodeId)),
        async close() {
          await consumer.cancel();
          await bus.deleteQueue(queue).catch(() => undefined);
        },
      };
      collectors.push(collector);
      return collector;
    },
    async publishAgent(type, nodeId, payload, overrides = {}) {
      const id = randomUUID();
      const message = { id, type, version: 1, sentAt: new Date().toISOString(), nodeId, payload, ...overrides };
      const key = type === 'agent.register' ? ROUTING.register(nodeId) : type === 'agent.heartbeat' ? ROUTING.heartbeat(nodeId) : ROUTING.shutdown(nodeId);
      await bus.publish(names.exchanges.agentInbound, key, message, { messageId: id });
    },
    async stop(stopOptions = {}) {
      for (const a of apis.splice(0)) await a.stop();
      for (const s of sweepers.splice(0)) await s.stop().catch(() => undefined);
      for (const i of ingests.splice(0)) await i.stop().catch(() => undefined);
      for (const c of collectors.splice(0)) await c.close().catch(() => undefined);
      if (!stopOptions.keepData) {
        for (const q of Object.values(names.queues)) await bus.deleteQueue(q).catch(() => undefined);
        for (const e of Object.values(names.exchanges)) await bus.deleteExchange(e).catch(() => undefined);
        await deleteRedisKeys(config.redisUrl, config.redisPrefix);
        const db = (store as NodeStore & { connection?: { dropDatabase(): Promise<void> } }).connection;
        await db?.dropDatabase().catch(() => undefined);
      }
      await bus.close();
      await store.close();
    },
  };
  return harness;
}

export { MONGO_URL };

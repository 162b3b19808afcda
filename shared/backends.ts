import { createRabbitBus } from './bus/rabbit-bus.js';
import type { Bus } from './bus/bus.js';
import type { OrchestratorConfig } from './config.js';
import type { Logger } from './logger.js';
import { createOutageLog } from './outage-log.js';
import type { RateLimiter } from './rate-limit/rate-limiter.js';
import { createRedisRateLimiter } from './rate-limit/redis-rate-limiter.js';
import { retry } from './retry.js';
import { createBullmqScheduler } from './scheduler/bullmq-scheduler.js';
import type { Scheduler } from './scheduler/scheduler.js';
import { createMongoNodeStore } from './store/mongo-node-store.js';
import type { NodeStore } from './store/node-store.js';

/** Connects to MongoDB, retrying with back-off (500 ms .. 5 s) until it answers; the wait is logged once, and its end. */
export async function connectStore(config: Pick<OrchestratorConfig, 'mongoUrl' | 'historyPoints' | 'historyResolutionMs'>, log: Logger): Promise<NodeStore> {
  const outage = createOutageLog({ log, what: 'Store not reachable at start, retrying', recoveredLine: () => 'Store reachable' });
  return retry(
    async () => {
      const store = await createMongoNodeStore({ url: config.mongoUrl, historyPoints: config.historyPoints, historyResolutionMs: config.historyResolutionMs });
      try {
        await store.ensureIndexes();
      } catch (error) {
        // The next attempt connects afresh: this client must not stay open behind it.
        await store.close().catch(() => undefined);
        throw error;
      }
      return store;
    },
    { firstDelayMs: 500, maxDelayMs: 5000, outage },
  );
}

export async function connectBus(config: Pick<OrchestratorConfig, 'rabbitmqUrl'>, log: Logger, name: string): Promise<Bus> {
  return createRabbitBus({ url: config.rabbitmqUrl, log, name });
}

export async function connectScheduler(config: Pick<OrchestratorConfig, 'redisUrl' | 'redisPrefix'>, log: Logger): Promise<Scheduler> {
  return createBullmqScheduler({ redisUrl: config.redisUrl, prefix: config.redisPrefix, queueName: 'sweeper', log });
}

/**
 * The api's per-node rate limit on Redis: one budget per node for every api on the same REDIS_URL and REDIS_PREFIX.
 * It does not wait for Redis: until Redis answers, and during an outage, each process limits on its own.
 */
export function connectRateLimiter(config: Pick<OrchestratorConfig, 'redisUrl' | 'redisPrefix' | 'rateLimit'>, log: Logger): RateLimiter {
  return createRedisRateLimiter({ redisUrl: config.redisUrl, prefix: config.redisPrefix, limit: config.rateLimit.perNodePerMinute, windowSeconds: 60, log });
}

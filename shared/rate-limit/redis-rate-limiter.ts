import { RateLimiterRedis } from 'rate-limiter-flexible';
import type { Logger } from '../logger.js';
import { createOutageLog } from '../outage-log.js';
import { createRedisClient } from '../redis.js';
import { consumeOne, rewardOne } from './flexible-decision.js';
import { createMemoryRateLimiter } from './memory-rate-limiter.js';
import { DEFAULT_WINDOW_SECONDS, type RateLimiter, type RateLimitSettings } from './rate-limiter.js';

export interface RedisRateLimiterOptions extends RateLimitSettings {
  redisUrl: string;
  /** REDIS_PREFIX: the counters are the keys `<prefix>:rate-limit:<key>`, each expiring with its window. */
  prefix: string;
  log: Logger;
  /** How long a decision waits for Redis before this process decides alone (default 500 ms). */
  commandTimeoutMs?: number;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 500;

/**
 * The shared adapter: rate-limiter-flexible's RateLimiterRedis (one Lua script per request: create the window's
 * counter if missing, increment it, read its TTL), so every process on the same Redis and prefix spends one
 * budget per key.
 *
 * A Redis outage must not become an api outage (docs/reference.md#rate-limit): while Redis does not answer,
 * each process limits on its own with the in-memory adapter and the same settings, and the outage is logged
 * once when it starts and once when it ends. A decision never waits for a reconnection (no offline queue) and
 * waits at most `commandTimeoutMs` for a Redis that is connected but silent.
 */
export function createRedisRateLimiter(options: RedisRateLimiterOptions): RateLimiter {
  const { log } = options;
  const windowSeconds = options.windowSeconds ?? DEFAULT_WINDOW_SECONDS;
  const commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  const client = createRedisClient(options.redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: commandTimeoutMs });
  const shared = new RateLimiterRedis({
    storeClient: client,
    points: options.limit,
    duration: windowSeconds,
    keyPrefix: `${options.prefix}:rate-limit`,
    rejectIfRedisNotReady: true,
  });
  const local = createMemoryRateLimiter({ limit: options.limit, windowSeconds });
  const outage = createOutageLog({
    log,
    what: 'Rate limit store (Redis) unavailable',
    failedLine: (reason) => `Rate limit store (Redis) unavailable, each api process limits on its own until it is back: ${reason}`,
    recoveredLine: (seconds) => `Rate limit store (Redis) available again after ${seconds} s: the limit is shared again`,
  });
  // ioredis reconnects by itself; its errors are the outage's start, and it must not report them as unhandled.
  client.on('error', (error: Error) => outage.failed(error));
  client.on('ready', () => outage.recovered());
  // The first requests after start wait for the first connection attempt (bounded like a command), so that a
  // starting api does not count them locally, nor log an outage, only because Redis had not answered yet.
  let connecting: Promise<void> | null = new Promise<void>((resolve) => {
    const settle = () => {
      clearTimeout(timer);
      connecting = null;
      resolve();
    };
    const timer = setTimeout(settle, commandTimeoutMs);
    timer.unref();
    client.once('ready', settle);
    client.once('error', settle);
    client.once('end', settle);
  });
  let closing: Promise<void> | null = null;

  return {
    shared: true,
    async take(key) {
      if (connecting) await connecting;
      try {
        const decision = await consumeOne(shared, key);
        outage.recovered();
        return decision;
      } catch (error) {
        outage.failed(error);
        return local.take(key);
      }
    },
    async refund(key) {
      // Where the request was counted: Redis, or this process's own counter while Redis does not answer.
      await rewardOne(shared, key).catch(() => local.refund(key));
    },
    close: () =>
      (closing ??= (async () => {
        // QUIT needs a connection; without one (an outage) there is nothing to say goodbye to.
        await client.quit().then(
          () => undefined,
          () => client.disconnect(),
        );
        await local.close();
      })()),
  };
}

import { Redis, type RedisOptions } from 'ioredis';
import { parseRedisUrl, type RedisTarget } from './redis-url.js';

/**
 * The one place a Redis client is made from `REDIS_URL`, so every Redis user connects the same way: a plain
 * `redis://` / `rediss://` URL as ioredis reads it, or the Sentinel form (shared/redis-url.ts) as ioredis'
 * `{ sentinels, name }`. `options` are the caller's (BullMQ's workers need `maxRetriesPerRequest: null`);
 * `duplicate()` of the client keeps the Sentinel settings, so BullMQ's own connections follow a failover too.
 */
export function createRedisClient(redisUrl: string, options: RedisOptions = {}): Redis {
  const target = parseRedisUrl(redisUrl);
  return target.kind === 'server' ? new Redis(target.url, options) : new Redis({ ...options, ...sentinelOptions(target) });
}

function sentinelOptions(target: Extract<RedisTarget, { kind: 'sentinel' }>): RedisOptions {
  return {
    sentinels: target.sentinels,
    name: target.name,
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(target.db !== undefined ? { db: target.db } : {}),
    ...(target.sentinelUsername !== undefined ? { sentinelUsername: target.sentinelUsername } : {}),
    ...(target.sentinelPassword !== undefined ? { sentinelPassword: target.sentinelPassword } : {}),
    // Subscribes to the Sentinels' +switch-master: a failover closes the connection to the old primary at once
    // (it would otherwise answer READONLY once demoted), and the reconnect asks the Sentinels for the new one.
    failoverDetector: true,
  };
}

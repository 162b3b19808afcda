import { createRedisClient } from '../../shared/redis.js';

/** Deletes every key under `prefix:` (a test's or benchmark's own BullMQ prefix), at any REDIS_URL form. Best effort. */
export async function deleteRedisKeys(url: string, prefix: string): Promise<void> {
  const redis = createRedisClient(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } catch {
    /* best effort: the keys expire with the test Redis anyway */
  } finally {
    redis.disconnect();
  }
}

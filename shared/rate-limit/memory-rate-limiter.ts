import { RateLimiterMemory } from 'rate-limiter-flexible';
import { consumeOne, rewardOne } from './flexible-decision.js';
import { DEFAULT_WINDOW_SECONDS, type RateLimiter, type RateLimitSettings } from './rate-limiter.js';

/**
 * The in-process adapter (the all-in-one without REDIS_URL, unit tests, and the Redis adapter's fallback):
 * rate-limiter-flexible's memory counter, the same fixed window as the Redis one. A key's counter is dropped
 * when its window ends, so memory follows the keys seen in the last window. Time is `Date.now()` and timers,
 * which fake timers drive in tests.
 */
export function createMemoryRateLimiter(settings: RateLimitSettings): RateLimiter {
  const limiter = new RateLimiterMemory({ points: settings.limit, duration: settings.windowSeconds ?? DEFAULT_WINDOW_SECONDS, keyPrefix: 'rate-limit' });
  return {
    shared: false,
    take: (key) => consumeOne(limiter, key),
    refund: (key) => rewardOne(limiter, key),
    close: async () => undefined,
  };
}

import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { RateDecision } from './rate-limiter.js';

/**
 * Spends one point of `key` on a rate-limiter-flexible limiter. The library rejects a refusal with a
 * RateLimiterRes and a store failure with an Error: the first becomes a decision, the second is thrown.
 */
export async function consumeOne(limiter: Pick<RateLimiterAbstract, 'consume'>, key: string): Promise<RateDecision> {
  try {
    await limiter.consume(key, 1);
    return { ok: true };
  } catch (rejection) {
    if (rejection instanceof RateLimiterRes) return { ok: false, retryAfterMs: Math.max(1, rejection.msBeforeNext) };
    throw rejection;
  }
}

/** Gives one point of `key` back on a rate-limiter-flexible limiter (within the key's current window). */
export async function rewardOne(limiter: Pick<RateLimiterAbstract, 'reward'>, key: string): Promise<void> {
  await limiter.reward(key, 1);
}

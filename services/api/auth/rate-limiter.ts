/**
 * Token buckets per key (one per node): `perMinute` tokens a minute, bursts up to `burst`. Memory is bounded:
 * past `maxKeys`, buckets that have refilled completely (the same as no bucket) are dropped, then the oldest.
 */
export function createRateLimiter(options: { perMinute: number; burst?: number; maxKeys?: number; now: () => number }) {
  const capacity = Math.max(1, options.burst ?? options.perMinute);
  const perMs = options.perMinute / 60_000;
  const maxKeys = options.maxKeys ?? 100_000;
  const buckets = new Map<string, { tokens: number; at: number }>();

  function level(bucket: { tokens: number; at: number }, now: number): number {
    return Math.min(capacity, bucket.tokens + Math.max(0, now - bucket.at) * perMs);
  }

  function prune(now: number): void {
    for (const [key, bucket] of buckets) if (level(bucket, now) >= capacity) buckets.delete(key);
    while (buckets.size >= maxKeys) buckets.delete(buckets.keys().next().value!);
  }

  return {
    /** Takes one token: `{ ok: true }`, or how long until the next one is there. */
    take(key: string): { ok: true } | { ok: false; retryAfterMs: number } {
      const now = options.now();
      let bucket = buckets.get(key);
      if (!bucket) {
        if (buckets.size >= maxKeys) prune(now);
        bucket = { tokens: capacity, at: now };
        buckets.set(key, bucket);
      }
      const tokens = level(bucket, now);
      if (tokens < 1) {
        bucket.tokens = tokens;
        bucket.at = now;
        return { ok: false, retryAfterMs: Math.ceil((1 - tokens) / perMs) };
      }
      bucket.tokens = tokens - 1;
      bucket.at = now;
      return { ok: true };
    },
    size: () => buckets.size,
  };
}

export type RateLimiter = ReturnType<typeof createRateLimiter>;

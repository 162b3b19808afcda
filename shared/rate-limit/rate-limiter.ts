/** One request's verdict: allowed, or refused with how long until the key may send again. */
export type RateDecision = { ok: true } | { ok: false; retryAfterMs: number };

/** The settings both adapters share. */
export interface RateLimitSettings {
  /** Requests a key may make per window. */
  limit: number;
  /** Length of a window in whole seconds (default 60): it starts with a key's first request after the last one ended. */
  windowSeconds?: number;
}

/**
 * The rate limit port: at most `limit` requests per key in a fixed window that starts with the key's first request.
 * Adapters: Redis (one budget for every process on the same Redis and prefix) and in-memory (one budget per
 * process), both rate-limiter-flexible's counters; test/contract/rate-limiter.contract.ts runs against both.
 */
export interface RateLimiter {
  /** Spends one request of `key`'s budget; a refusal says how many milliseconds remain of the key's window. */
  take(key: string): Promise<RateDecision>;
  /**
   * Gives back one request taken from `key`'s budget in its current window: a request the orchestrator failed
   * itself (5xx) spends nothing, so agents retrying through an outage are not locked out once it ends.
   */
  refund(key: string): Promise<void>;
  /** True when every process using the same backend shares the budget, false when this process counts alone. */
  readonly shared: boolean;
  close(): Promise<void>;
}

export const DEFAULT_WINDOW_SECONDS = 60;

import { expect } from 'chai';
import type { RateDecision, RateLimiter } from '../../shared/rate-limit/rate-limiter.js';

/** One test's rate-limit backend: every limiter it creates uses the same store, like replicas of one api. */
export interface RateLimiterBackend {
  create(settings: { limit: number; windowSeconds: number }): Promise<RateLimiter>;
  /** Lets `ms` of time pass: real time for Redis (its keys expire on its own clock), fake timers in memory. */
  elapse(ms: number): Promise<void>;
  /** Closes the limiters and removes what the test left behind (Redis keys, fake timers). */
  dispose(): Promise<void>;
}

export interface RateLimiterFactory {
  /** A backend of the test's own (a unique Redis key prefix). */
  backend(): Promise<RateLimiterBackend>;
}

const LIMIT = 3;
/** The shortest window Redis can keep (its expiry is set in whole seconds), so that the Redis run waits little. */
const WINDOW_SECONDS = 1;

function refused(decision: RateDecision): number {
  if (decision.ok) throw new Error('expected a refusal, the request was allowed');
  return decision.retryAfterMs;
}

async function spend(limiter: RateLimiter, key: string, n: number): Promise<RateDecision[]> {
  const decisions: RateDecision[] = [];
  for (let i = 0; i < n; i++) decisions.push(await limiter.take(key));
  return decisions;
}

const allowed = (decisions: RateDecision[]) => decisions.filter((d) => d.ok).length;

/**
 * The rate limit port's contract, the api's per-node limit relies on: `limit` requests per key in a window that
 * starts with the key's first request, a refusal saying how long until the key may send again, keys counted
 * apart, and, for a shared adapter, one budget for every instance on the same store.
 */
export function rateLimiterContract(adapter: string, factory: RateLimiterFactory): void {
  describe(`RateLimiter contract: ${adapter}`, function () {
    let backend: RateLimiterBackend;
    let limiter: RateLimiter;

    beforeEach(async () => {
      backend = await factory.backend();
      limiter = await backend.create({ limit: LIMIT, windowSeconds: WINDOW_SECONDS });
    });
    afterEach(async () => {
      await backend.dispose();
    });

    it('allows the limit of requests of a key, then refuses the next ones with a wait no longer than the window', async () => {
      const decisions = await spend(limiter, 'node-1', LIMIT + 2);

      expect(decisions.slice(0, LIMIT).every((d) => d.ok)).to.equal(true);
      for (const decision of decisions.slice(LIMIT)) expect(refused(decision)).to.be.within(1, WINDOW_SECONDS * 1000);
    });

    it('takes nothing from the budget for a request given back', async () => {
      await spend(limiter, 'node-1', LIMIT);
      await limiter.refund('node-1');
      await limiter.refund('node-1');

      expect(allowed(await spend(limiter, 'node-1', 3))).to.equal(2);
    });

    it('counts each key on its own', async () => {
      await spend(limiter, 'node-1', LIMIT + 1);

      expect(await limiter.take('node-2')).to.deep.equal({ ok: true });
    });

    it('allows a whole budget again once the wait a refusal gave has passed', async () => {
      await spend(limiter, 'node-1', LIMIT);
      const waitMs = refused(await limiter.take('node-1'));

      // A few ms more than the wait: the stores count whole milliseconds and timers may fire within one of their time.
      await backend.elapse(waitMs + 5);

      expect(allowed(await spend(limiter, 'node-1', LIMIT + 1))).to.equal(LIMIT);
    });

    it('allows exactly the limit of requests that arrive at the same moment', async () => {
      const decisions = await Promise.all(Array.from({ length: LIMIT * 3 }, () => limiter.take('node-1')));

      expect(allowed(decisions)).to.equal(LIMIT);
    });

    it('shares one budget between instances on the same store when it says it is shared, else each instance counts alone', async () => {
      const other = await backend.create({ limit: LIMIT, windowSeconds: WINDOW_SECONDS });
      const decisions: RateDecision[] = [];

      for (let i = 0; i < LIMIT * 2; i++) decisions.push(await (i % 2 ? other : limiter).take('node-1'));

      expect(other.shared).to.equal(limiter.shared);
      expect(allowed(decisions)).to.equal(limiter.shared ? LIMIT : LIMIT * 2);
    });
  });
}

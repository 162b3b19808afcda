import { expect } from 'chai';
import sinon from 'sinon';
import { createMemoryRateLimiter } from '../../shared/rate-limit/memory-rate-limiter.js';
import type { RateLimiter } from '../../shared/rate-limit/rate-limiter.js';
import { rateLimiterContract } from './rate-limiter.contract.js';

rateLimiterContract('in-memory', {
  async backend() {
    const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: Date.UTC(2026, 0, 1) });
    return {
      async create(settings) {
        return createMemoryRateLimiter(settings);
      },
      async elapse(ms) {
        await clock.tickAsync(ms);
      },
      async dispose() {
        clock.restore();
      },
    };
  },
});

describe('in-memory rate limiter', () => {
  let clock: sinon.SinonFakeTimers;
  let limiter: RateLimiter;
  beforeEach(() => {
    clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: Date.UTC(2026, 0, 1) });
    limiter = createMemoryRateLimiter({ limit: 120 });
  });
  afterEach(() => {
    clock.restore();
  });

  it('counts RATE_LIMIT_PER_NODE_PER_MINUTE in a minute that starts with the first request', async () => {
    for (let i = 0; i < 120; i++) await limiter.take('node-1');
    await clock.tickAsync(30_000);

    expect(await limiter.take('node-1')).to.deep.equal({ ok: false, retryAfterMs: 30_000 });
    await clock.tickAsync(30_000);
    expect(await limiter.take('node-1')).to.deep.equal({ ok: true });
  });
});

import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createMemoryLogger } from '../../shared/logger.js';
import type { RateDecision, RateLimiter } from '../../shared/rate-limit/rate-limiter.js';
import { createRedisRateLimiter } from '../../shared/rate-limit/redis-rate-limiter.js';
import { freePort, startPrivateRedis, type PrivateRedis } from '../support/private-services.js';
import { deleteRedisKeys } from '../support/redis-keys.js';
import { eventually, REDIS_URL, requireServices, uniqueName } from '../support/services.js';
import { rateLimiterContract } from './rate-limiter.contract.js';

const OUTAGE_LINE = 'Rate limit store (Redis) unavailable, each api process limits on its own until it is back';
const RECOVERED_LINE = /Rate limit store \(Redis\) available again after \d+ s: the limit is shared again/;

describe('Redis rate limiter @int', function () {
  before(requireServices('redis'));

  rateLimiterContract('Redis', {
    async backend() {
      const prefix = `test:${uniqueName('rate')}`;
      const limiters: RateLimiter[] = [];
      return {
        async create(settings) {
          const limiter = createRedisRateLimiter({ redisUrl: REDIS_URL, prefix, ...settings, log: createMemoryLogger('warn') });
          limiters.push(limiter);
          return limiter;
        },
        async elapse(ms) {
          await new Promise((resolve) => setTimeout(resolve, ms));
        },
        async dispose() {
          for (const limiter of limiters) await limiter.close();
          await deleteRedisKeys(REDIS_URL, prefix);
        },
      };
    },
  });

  describe('keys', () => {
    const prefixes = [`test:${uniqueName('rate-a')}`, `test:${uniqueName('rate-b')}`];
    const limiters: RateLimiter[] = [];
    let redis: Redis | undefined;
    after(async () => {
      for (const limiter of limiters) await limiter.close();
      for (const prefix of prefixes) await deleteRedisKeys(REDIS_URL, prefix);
      redis?.disconnect();
    });

    it('keeps each REDIS_PREFIX apart, in one key per node under <prefix>:rate-limit: that expires with its window', async () => {
      const [a, b] = prefixes.map((prefix) => createRedisRateLimiter({ redisUrl: REDIS_URL, prefix, limit: 2, windowSeconds: 60, log: createMemoryLogger('warn') }));
      limiters.push(a!, b!);
      redis = new Redis(REDIS_URL);

      for (let i = 0; i < 3; i++) await a!.take('node-1');

      expect(await b!.take('node-1'), 'the other prefix has its own budget').to.deep.equal({ ok: true });
      expect(await redis.get(`${prefixes[0]}:rate-limit:node-1`)).to.equal('3');
      expect(await redis.pttl(`${prefixes[0]}:rate-limit:node-1`)).to.be.within(1, 60_000);
    });
  });
});

describe('Redis rate limiter: Redis outage @int', function () {
  this.timeout(60_000);
  const LIMIT = 3;
  let redis: PrivateRedis | undefined;
  let limiter: RateLimiter | undefined;
  const prefix = `test:${uniqueName('rate-outage')}`;

  before(requireServices('redis'));
  afterEach(async () => {
    await limiter?.close();
    limiter = undefined;
    await redis?.stop();
    redis = undefined;
  });

  async function spend(key: string, n: number): Promise<RateDecision[]> {
    const decisions: RateDecision[] = [];
    for (let i = 0; i < n; i++) decisions.push(await limiter!.take(key));
    return decisions;
  }
  const allowed = (decisions: RateDecision[]) => decisions.filter((d) => d.ok).length;

  it('keeps deciding while Redis is down, counting in this process, and logs the outage once when it starts and once when it ends', async () => {
    const port = await freePort();
    redis = await startPrivateRedis({ port });
    const log = createMemoryLogger('info');
    limiter = createRedisRateLimiter({ redisUrl: redis.url, prefix, limit: LIMIT, windowSeconds: 60, log });
    expect(await limiter.take('node-1')).to.deep.equal({ ok: true });

    await redis.stop();
    const during = await spend('node-2', LIMIT + 2);

    expect(allowed(during), 'the same limit, counted in this process').to.equal(LIMIT);
    expect(
      log.lines.filter((l) => l.includes(OUTAGE_LINE)),
      'one line for the whole outage',
    ).to.have.length(1);

    redis = await startPrivateRedis({ port });
    await eventually(() => log.lines.some((l) => RECOVERED_LINE.test(l)), 20_000);
    await eventually(async () => (await limiter!.take('node-3')).ok, 5000);

    const direct = new Redis(redis.url);
    try {
      expect(await direct.get(`${prefix}:rate-limit:node-3`), 'counted in Redis again').to.be.a('string');
    } finally {
      direct.disconnect();
    }
    expect(log.lines.filter((l) => l.includes(OUTAGE_LINE))).to.have.length(1);
  });

  it('decides from the count in this process, without waiting for it, when Redis is connected but does not answer', async () => {
    const port = await freePort();
    redis = await startPrivateRedis({ port });
    const log = createMemoryLogger('info');
    const commandTimeoutMs = 200;
    limiter = createRedisRateLimiter({ redisUrl: redis.url, prefix, limit: LIMIT, windowSeconds: 60, log, commandTimeoutMs });
    expect(await limiter.take('node-1')).to.deep.equal({ ok: true });
    const admin = new Redis(redis.url);
    const pauseMs = 2000;
    try {
      // Every client's commands wait until the pause ends (CLIENT UNPAUSE would wait too).
      await admin.client('PAUSE', pauseMs, 'ALL');
      const started = Date.now();

      const decision = await limiter.take('node-1');

      expect(decision).to.deep.equal({ ok: true });
      expect(Date.now() - started, 'answered long before Redis answers again').to.be.below(pauseMs / 2);
      expect(log.lines.filter((l) => l.includes(OUTAGE_LINE))).to.have.length(1);
    } finally {
      admin.disconnect();
    }
  });

  it('starts, decides and stops when Redis is not there at all', async () => {
    const log = createMemoryLogger('info');
    limiter = createRedisRateLimiter({ redisUrl: `redis://127.0.0.1:${await freePort()}`, prefix, limit: LIMIT, windowSeconds: 60, log });

    const decisions = await spend('node-1', LIMIT + 1);

    expect(allowed(decisions)).to.equal(LIMIT);
    expect(decisions[LIMIT]).to.have.property('ok', false);
    expect(log.lines.filter((l) => l.includes(OUTAGE_LINE))).to.have.length(1);
    await limiter.close();
    limiter = undefined;
  });
});

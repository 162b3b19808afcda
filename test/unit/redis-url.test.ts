import { expect } from 'chai';
import { createRedisClient } from '../../shared/redis.js';
import { parseRedisUrl, RedisUrlError } from '../../shared/redis-url.js';
import { lockTimings } from '../../shared/scheduler/bullmq-scheduler.js';

describe('REDIS_URL', () => {
  describe('parseRedisUrl', () => {
    it('takes a redis: or rediss: URL as it is', () => {
      expect(parseRedisUrl('redis://:secret@redis:6380/2')).to.deep.equal({ kind: 'server', url: 'redis://:secret@redis:6380/2' });
      expect(parseRedisUrl('rediss://redis.example')).to.deep.equal({ kind: 'server', url: 'rediss://redis.example' });
    });

    it("reads the Sentinel form as ioredis' sentinels and master name, 26379 where no port is given", () => {
      expect(parseRedisUrl('redis+sentinel://s1:26380,s2,[::1]:26381/orchestrator')).to.deep.equal({
        kind: 'sentinel',
        sentinels: [
          { host: 's1', port: 26380 },
          { host: 's2', port: 26379 },
          { host: '::1', port: 26381 },
        ],
        name: 'orchestrator',
      });
    });

    it("takes the servers' user and password from the URL, the database from the path and the Sentinels' password from a parameter", () => {
      expect(parseRedisUrl('redis+sentinel://app:p%40ss@s1:26379/orchestrator/3?sentinelPassword=s%26nt')).to.deep.equal({
        kind: 'sentinel',
        sentinels: [{ host: 's1', port: 26379 }],
        name: 'orchestrator',
        username: 'app',
        password: 'p@ss',
        db: 3,
        sentinelPassword: 's&nt',
      });
      expect(parseRedisUrl('redis+sentinel://:only-a-password@s1/m')).to.include({ password: 'only-a-password' }).and.not.have.property('username');
    });

    for (const [url, problem] of [
      ['redis+sentinel://s1:26379', /master name/],
      ['redis+sentinel://s1:26379,,s2/m', /empty entry/],
      ['redis+sentinel://s1:port/m', /host or host:port/],
      ['redis+sentinel://s1:70000/m', /no valid port/],
      ['redis+sentinel://s1/m/x', /database must be a number/],
      ['redis+sentinel://s1/m?tls=1', /unknown parameter "tls"/],
      ['http://redis:6379', /redis:, rediss: or redis\+sentinel:/],
      ['not a url', /must be a URL/],
    ] as const) {
      it(`refuses ${url}`, () => {
        expect(() => parseRedisUrl(url))
          .to.throw(RedisUrlError)
          .with.property('message')
          .that.matches(problem);
      });
    }
  });

  describe('createRedisClient', () => {
    it('makes a Sentinel client of the Sentinel form, with the caller’s options', () => {
      const client = createRedisClient('redis+sentinel://:pw@s1:26380,s2/orchestrator/1', { lazyConnect: true, maxRetriesPerRequest: null });
      try {
        expect(client.options).to.deep.include({
          sentinels: [
            { host: 's1', port: 26380 },
            { host: 's2', port: 26379 },
          ],
          name: 'orchestrator',
          password: 'pw',
          db: 1,
          maxRetriesPerRequest: null,
        });
        // BullMQ's workers connect with duplicates: they must find the primary the same way.
        const duplicate = client.duplicate();
        expect(duplicate.options).to.deep.include({ name: 'orchestrator', password: 'pw' });
        duplicate.disconnect();
      } finally {
        client.disconnect();
      }
    });

    it('makes a plain client of a redis: URL', () => {
      const client = createRedisClient('redis://127.0.0.1:6390/4', { lazyConnect: true });
      try {
        expect(client.options).to.deep.include({ host: '127.0.0.1', port: 6390, db: 4 });
        expect(client.options.sentinels).to.equal(null);
      } finally {
        client.disconnect();
      }
    });
  });
});

describe('scheduler lock timings', () => {
  it('free a lost run’s slot within one interval: lock plus stall check, at least 5 s each', () => {
    for (const interval of [10_000, 120_000, 600_000]) {
      const { lockDuration, stalledInterval } = lockTimings(interval);
      expect(lockDuration + stalledInterval).to.be.at.most(interval);
    }
    expect(lockTimings(300)).to.deep.equal({ lockDuration: 5000, stalledInterval: 5000 });
  });
});

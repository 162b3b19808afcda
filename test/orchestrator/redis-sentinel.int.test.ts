import { existsSync } from 'node:fs';
import { expect } from 'chai';
import type { Context } from 'mocha';
import { createMemoryLogger } from '../../shared/logger.js';
import { createBullmqScheduler, lockTimings } from '../../shared/scheduler/bullmq-scheduler.js';
import type { Scheduler } from '../../shared/scheduler/scheduler.js';
import { startPrivateRedisSentinel, type PrivateRedisSentinel } from '../support/private-services.js';
import { eventually, uniqueName } from '../support/services.js';

const INTERVAL_MS = 300;
const RUN_MS = 150;

/**
 * REDIS_URL in the Sentinel form, on a private Redis primary, its replica and one Sentinel (never the shared
 * Redis): two schedulers (two sweepers) connect through the Sentinel, the job runs, the primary is failed over
 * to the replica, and the job runs again, one run at a time except at most the run in flight at the switch
 * (each run's start and end recorded).
 */
describe('BullMQ scheduler through Redis Sentinel @int', function () {
  this.timeout(120_000);
  let sentinel: PrivateRedisSentinel | undefined;
  const schedulers: Scheduler[] = [];

  before(async function (this: Context) {
    this.timeout(60_000);
    if (!existsSync('/usr/bin/redis-server')) {
      const message = 'redis-server is not installed; run `npm run services`';
      if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${message} (REQUIRE_SERVICES=1)`);
      process.stderr.write(`\n  !!! SKIPPING ${this.test?.parent?.fullTitle() ?? 'suite'}: ${message}\n\n`);
      return this.skip();
    }
    sentinel = await startPrivateRedisSentinel();
  });
  after(async () => {
    for (const s of schedulers.splice(0)) await s.close().catch(() => undefined);
    await sentinel?.stop();
  });

  it('runs the scheduled job through the Sentinel URL, again after a failover, one run at a time but for the one in flight at the switch', async () => {
    const runs: Array<{ start: number; end: number | null }> = [];
    const handler = async () => {
      const run = { start: Date.now(), end: null as number | null };
      runs.push(run);
      await new Promise((resolve) => setTimeout(resolve, RUN_MS));
      run.end = Date.now();
    };
    const prefix = `test:${uniqueName('sentinel')}`;
    const log = createMemoryLogger('warn');
    for (let i = 0; i < 2; i++) {
      const scheduler = await createBullmqScheduler({ redisUrl: sentinel!.url, prefix, queueName: 'sweeper', log });
      schedulers.push(scheduler);
      await scheduler.every('sweep', INTERVAL_MS, handler);
    }
    const finished = () => runs.filter((r) => r.end !== null);

    await eventually(() => finished().length >= 3, 15_000, 50);
    const primaryBefore = await sentinel!.primaryPort();
    await sentinel!.failover();
    const failedOverAt = Date.now();
    await eventually(() => runs.some((r) => r.start >= failedOverAt && r.end !== null), 20_000, 50);

    expect(await sentinel!.primaryPort()).to.not.equal(primaryBefore);
    expect(await Promise.all(schedulers.map((s) => s.isReady()))).to.deep.equal([true, true]);
    const firstAfter = runs.find((r) => r.start >= failedOverAt)!;
    // Sentinel's failover time is in failedOverAt already (it resolves once the replica is the primary). A run whose
    // completion went to the old primary in the moment of the switch holds the slot until its lock expires and a
    // stall check frees it: at most an interval for real intervals, the 5 s floors of each for this short one.
    const { lockDuration, stalledInterval } = lockTimings(INTERVAL_MS);
    expect(firstAfter.start - failedOverAt, 'ms from the failover to the next run').to.be.below(lockDuration + stalledInterval + INTERVAL_MS + 1000);
    // Redis replicates asynchronously: the run in flight when the primary switched can be unknown to the new
    // primary, which may then start the next run before it ends (at most that one pair). Every other pair of runs
    // is one at a time. (The sweep stays correct meanwhile: its writes are conditional, docs/architecture.md.)
    const ordered = [...finished()].sort((a, b) => a.start - b.start);
    const overlaps = ordered.slice(1).flatMap((run, i) => (run.start < ordered[i]!.end! ? [{ before: ordered[i]!, run }] : []));
    const acrossTheSwitch = overlaps.filter(({ before }) => before.start <= failedOverAt);
    expect(overlaps.length - acrossTheSwitch.length, `overlapping runs not in flight at the switch: ${JSON.stringify(ordered)}`).to.equal(0);
    expect(acrossTheSwitch.length, `overlapping runs across the switch: ${JSON.stringify(overlaps)}`).to.be.at.most(1);
  });
});

import { expect } from 'chai';
import type { Context } from 'mocha';
import type { Scheduler } from '../../shared/scheduler/scheduler.js';

/** One test's scheduling backend: every scheduler it creates shares the same queue, like replicas of one service. */
export interface SchedulerBackend {
  create(): Promise<Scheduler>;
  /** Lets `ms` of time pass: real time for real backends, fake timers for the in-process one. */
  elapse(ms: number): Promise<void>;
  /** Removes what the test left behind (Redis keys, fake timers). */
  dispose(): Promise<void>;
}

export interface SchedulerFactory {
  /** A backend of the test's own (unique queue / key prefix). */
  backend(): Promise<SchedulerBackend>;
  /**
   * Whether separate instances exclude each other. The in-process scheduler serves one process (the
   * all-in-one mode runs one sweeper), so its cross-instance case is skipped.
   */
  coordinatesInstances: boolean;
}

const INTERVAL = 150;

/** A job handler that records when runs start and how many overlap; each run takes `durationMs`. */
function probe(durationMs = 0) {
  const starts: number[] = [];
  let running = 0;
  let maxConcurrent = 0;
  return {
    starts,
    maxConcurrent: () => maxConcurrent,
    handler: async () => {
      starts.push(Date.now());
      running++;
      maxConcurrent = Math.max(maxConcurrent, running);
      try {
        if (durationMs) await new Promise((resolve) => setTimeout(resolve, durationMs));
      } finally {
        running--;
      }
    },
  };
}

/**
 * The scheduler port's contract: the sweeper relies on a job running about every interval, never twice at
 * once across replicas, and stopping with close().
 */
export function schedulerContract(adapter: string, factory: SchedulerFactory): void {
  describe(`Scheduler contract: ${adapter}`, function () {
    let backend: SchedulerBackend;
    let schedulers: Scheduler[];

    beforeEach(async () => {
      backend = await factory.backend();
      schedulers = [];
    });
    afterEach(async () => {
      for (const s of schedulers) await s.close().catch(() => undefined);
      await backend.dispose();
    });

    async function scheduler(): Promise<Scheduler> {
      const s = await backend.create();
      schedulers.push(s);
      return s;
    }

    it('runs a job repeatedly at about its interval', async () => {
      const s = await scheduler();
      const job = probe();

      await s.every('sweep', INTERVAL, job.handler);
      await backend.elapse(INTERVAL * 8 + 50);

      expect(await s.isReady()).to.equal(true);
      expect(job.starts.length, 'runs in 8 intervals').to.be.within(5, 11);
      const gaps = job.starts.slice(1).map((t, i) => t - job.starts[i]!);
      const median = [...gaps].sort((a, b) => a - b)[Math.floor(gaps.length / 2)]!;
      expect(median, 'typical gap between runs').to.be.within(INTERVAL * 0.6, INTERVAL * 1.6);
    });

    it('never starts a run while the previous one is still going, even when a run outlasts the interval', async () => {
      const s = await scheduler();
      const job = probe(INTERVAL * 2.5);

      await s.every('sweep', INTERVAL, job.handler);
      await backend.elapse(INTERVAL * 10);

      expect(job.starts.length, 'it keeps running').to.be.at.least(2);
      expect(job.maxConcurrent()).to.equal(1);
    });

    it('never runs a job twice at once across two instances on the same queue', async function (this: Context) {
      if (!factory.coordinatesInstances) return this.skip();
      const [a, b] = [await scheduler(), await scheduler()];
      // One handler shared by both instances, so overlapping runs from either are counted together.
      const job = probe(INTERVAL * 2);

      await a.every('sweep', INTERVAL, job.handler);
      await b.every('sweep', INTERVAL, job.handler);
      await backend.elapse(INTERVAL * 12);

      expect(job.starts.length, 'it keeps running').to.be.at.least(3);
      expect(job.maxConcurrent()).to.equal(1);
    });

    it('runs nothing more once closed', async () => {
      const s = await scheduler();
      const job = probe();
      await s.every('sweep', INTERVAL, job.handler);
      await backend.elapse(INTERVAL * 2 + 50);
      expect(job.starts.length, 'before close').to.be.at.least(1);

      await s.close();
      const runs = job.starts.length;
      await backend.elapse(INTERVAL * 4);

      expect(job.starts.length).to.equal(runs);
    });
  });
}

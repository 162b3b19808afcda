import sinon from 'sinon';
import { createMemoryScheduler } from '../../shared/scheduler/memory-scheduler.js';
import { schedulerContract } from './scheduler.contract.js';

schedulerContract('in-process', {
  coordinatesInstances: false,
  async backend() {
    const clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'], now: Date.UTC(2026, 0, 1) });
    return {
      async create() {
        return createMemoryScheduler();
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

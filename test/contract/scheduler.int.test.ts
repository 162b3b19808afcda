import { deleteRedisKeys } from '../support/redis-keys.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createBullmqScheduler } from '../../shared/scheduler/bullmq-scheduler.js';
import { REDIS_URL, requireServices, uniqueName } from '../support/services.js';
import { schedulerContract } from './scheduler.contract.js';

const deleteKeys = (prefix: string) => deleteRedisKeys(REDIS_URL, prefix);

describe('BullMQ scheduler @int', function () {
  before(requireServices('redis'));

  schedulerContract('BullMQ', {
    coordinatesInstances: true,
    async backend() {
      const prefix = `test:${uniqueName('sched')}`;
      return {
        async create() {
          return createBullmqScheduler({ redisUrl: REDIS_URL, prefix, queueName: 'sweeper', log: createMemoryLogger('warn') });
        },
        async elapse(ms) {
          await new Promise((resolve) => setTimeout(resolve, ms));
        },
        async dispose() {
          await deleteKeys(prefix);
        },
      };
    },
  });
});

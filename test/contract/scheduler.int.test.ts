import { Redis } from 'ioredis';
import { createMemoryLogger } from '../../shared/logger.js';
import { createBullmqScheduler } from '../../shared/scheduler/bullmq-scheduler.js';
import { REDIS_URL, requireServices, uniqueName } from '../support/services.js';
import { schedulerContract } from './scheduler.contract.js';

async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

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

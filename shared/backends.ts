import { createRabbitBus } from './bus/rabbit-bus.js';
import type { Bus } from './bus/bus.js';
import type { OrchestratorConfig } from './config.js';
import type { Logger } from './logger.js';
import { createBullmqScheduler } from './scheduler/bullmq-scheduler.js';
import type { Scheduler } from './scheduler/scheduler.js';
import { createMongoNodeStore } from './store/mongo-node-store.js';
import type { NodeStore } from './store/node-store.js';

/** Connects to MongoDB, retrying with back-off until it answers (logged once). */
export async function connectStore(config: Pick<OrchestratorConfig, 'mongoUrl' | 'historyPoints' | 'historyResolutionMs'>, log: Logger): Promise<NodeStore> {
  let reported = false;
  for (let delay = 500; ; delay = Math.min(delay * 2, 5000)) {
    try {
      const store = await createMongoNodeStore({ url: config.mongoUrl, historyPoints: config.historyPoints, historyResolutionMs: config.historyResolutionMs });
      await store.ensureIndexes();
      if (reported) log.info('Store reachable');
      return store;
    } catch (error) {
      if (!reported) log.warn(`Store not reachable at start, retrying: ${(error as Error).message}`);
      reported = true;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

export async function connectBus(config: Pick<OrchestratorConfig, 'rabbitmqUrl'>, log: Logger, name: string): Promise<Bus> {
  return createRabbitBus({ url: config.rabbitmqUrl, log, name });
}

export async function connectScheduler(config: Pick<OrchestratorConfig, 'redisUrl' | 'redisPrefix'>, log: Logger): Promise<Scheduler> {
  return createBullmqScheduler({ redisUrl: config.redisUrl, prefix: config.redisPrefix, queueName: 'sweeper', log });
}

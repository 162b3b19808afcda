import { Queue, Worker } from 'bullmq';
import type { Logger } from '../logger.js';
import { createRedisClient } from '../redis.js';
import type { Scheduler } from './scheduler.js';
import { createOutageLog } from '../outage-log.js';

export interface BullmqSchedulerOptions {
  /** REDIS_URL: a redis: / rediss: URL or the Sentinel form (shared/redis.ts makes the client). */
  redisUrl: string;
  /** Key prefix in Redis: unique per test, 'orchestrator' in production. */
  prefix: string;
  queueName: string;
  log: Logger;
}

/**
 * How long a run's job lock lasts and how often workers look for stalled runs. A run whose worker is gone (a killed
 * sweeper) or whose completion was lost (written to a Redis primary in the moment it was failed over) holds the
 * global-concurrency slot until its lock expires and a stall check frees it: the two together stay within one
 * interval (at least 5 s each), so runs resume within about an interval. A long run keeps its lock: the worker
 * renews it every half lock duration.
 */
export function lockTimings(intervalMs: number): { lockDuration: number; stalledInterval: number } {
  const ms = Math.max(5_000, Math.floor(intervalMs / 2));
  return { lockDuration: ms, stalledInterval: ms };
}

/**
 * BullMQ adapter: one Job Scheduler per job (upsert, so every replica may declare it), a worker with
 * concurrency 1 and the queue's global concurrency 1, so that of all replicas only one runs the job at a time.
 */
export async function createBullmqScheduler(options: BullmqSchedulerOptions): Promise<Scheduler> {
  const { log } = options;
  // BullMQ workers block on Redis: they need maxRetriesPerRequest null (the worker's duplicate() keeps it, and a
  // Sentinel URL's settings). Reconnection, and finding the new primary after a failover, are ioredis's own.
  const connection = createRedisClient(options.redisUrl, { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false });
  const redisOutage = createOutageLog({ log, what: 'Redis unavailable, BullMQ will reconnect', recoveredLine: () => 'Redis connection restored' });
  connection.on('error', (error: Error) => redisOutage.failed(error));
  const queue = new Queue(options.queueName, { connection, prefix: options.prefix });
  queue.on('error', () => undefined);
  const workers: Worker[] = [];
  /** Connections made here and handed to BullMQ, which leaves a connection it was given open: closed by close(). */
  const ownConnections = [connection];
  const handlers = new Map<string, () => Promise<void>>();
  const schedules = new Map<string, number>();
  let readyCount = 0;
  connection.on('ready', () => {
    redisOutage.recovered();
    // A Redis that restarted without its data has lost the job schedulers and the concurrency limit: declare them again.
    if (readyCount++ > 0) void declareSchedules().catch((error: Error) => log.warn(`Job schedulers not declared again yet: ${error.message}`));
  });

  async function declareSchedules(): Promise<void> {
    await queue.setGlobalConcurrency(1);
    for (const [name, intervalMs] of schedules) await upsert(name, intervalMs);
  }

  function upsert(name: string, intervalMs: number) {
    return queue.upsertJobScheduler(name, { every: intervalMs }, { name, opts: { removeOnComplete: 100, removeOnFail: 100, attempts: 1 } });
  }

  await queue.setGlobalConcurrency(1);

  return {
    async every(name, intervalMs, handler) {
      handlers.set(name, handler);
      if (!workers.length) {
        const workerConnection = connection.duplicate({ maxRetriesPerRequest: null });
        workerConnection.on('error', (error: Error) => redisOutage.failed(error));
        ownConnections.push(workerConnection);
        const worker = new Worker(
          options.queueName,
          async (job) => {
            const run = handlers.get(job.name);
            // Startup fails when a job has no handler; a stray job from an old version is dropped.
            if (!run) throw new Error(`no handler for job ${job.name}`);
            await run();
          },
          {
            connection: workerConnection,
            prefix: options.prefix,
            concurrency: 1,
            ...lockTimings(intervalMs),
          },
        );
        // Lock renewal failures matter to the one-job-at-a-time guarantee: logged when they start and when they end.
        const workerErrors = createOutageLog({ log, what: `Scheduler worker of ${options.queueName} failing (lock renewal or Redis)` });
        worker.on('error', (error) => workerErrors.failed(error));
        worker.on('completed', () => workerErrors.recovered());
        worker.on('failed', (job, error) => log.error(`Scheduled job ${job?.name ?? '?'} failed: ${error.message}`));
        workers.push(worker);
      }
      schedules.set(name, intervalMs);
      await upsert(name, intervalMs);
    },
    async isReady() {
      try {
        return (await connection.ping()) === 'PONG';
      } catch {
        return false;
      }
    },
    async close() {
      await Promise.all(workers.map((w) => w.close()));
      await queue.close();
      for (const c of ownConnections) c.disconnect();
    },
  };
}

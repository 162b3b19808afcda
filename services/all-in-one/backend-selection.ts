import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { connectBus, connectRateLimiter, connectScheduler, connectStore } from '../../shared/backends.js';
import type { Bus, Delivery } from '../../shared/bus/bus.js';
import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import type { OrchestratorConfig } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import { createMemoryRateLimiter } from '../../shared/rate-limit/memory-rate-limiter.js';
import type { RateLimiter } from '../../shared/rate-limit/rate-limiter.js';
import { createMemoryScheduler } from '../../shared/scheduler/memory-scheduler.js';
import type { Scheduler } from '../../shared/scheduler/scheduler.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import type { NodeStore } from '../../shared/store/node-store.js';

type Env = Record<string, string | undefined>;

export const DEFAULT_STATE_FILE = '.cache/state/nodes.json';

export interface Backends {
  bus: Bus;
  store: NodeStore;
  scheduler: Scheduler;
  /** The api's per-node rate limit (REDIS_URL set: shared with other api processes on that Redis). */
  rateLimiter: RateLimiter;
  /** Which adapter each port got; embedded ones live and die with this process. */
  kinds: { bus: 'embedded' | 'rabbitmq'; store: 'embedded' | 'mongodb'; scheduler: 'embedded' | 'redis'; rateLimit: 'embedded' | 'redis' };
  /** Absolute path of the embedded store's JSON file, or null (real store, or STATE_FILE=none). */
  stateFile: string | null;
  /** Deliveries of the embedded bus not yet acked or requeued (0 with RabbitMQ, which keeps them itself). */
  unsettled(): number;
  /** One line for the start-up log. */
  describe(): string;
}

const isSet = (env: Env, name: string) => Boolean(env[name]?.trim());

function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]+)@/, '//$1:***@');
}

/**
 * Picks each port's adapter on its own: RABBITMQ_URL / MONGO_URL / REDIS_URL set means the real service,
 * connected exactly as the separate services connect (shared/backends.ts); unset means the in-process adapter.
 * `env` is the raw environment: the config fills in default URLs, so it cannot tell "unset" from "default".
 */
export async function selectBackends(env: Env, config: Readonly<OrchestratorConfig>, log: Logger, cwd: string = process.cwd()): Promise<Backends> {
  const stateSetting = config.stateFile || DEFAULT_STATE_FILE;
  const embeddedStore = !isSet(env, 'MONGO_URL');
  const stateFile = embeddedStore && stateSetting !== 'none' ? resolve(cwd, stateSetting) : null;
  if (stateFile) mkdirSync(dirname(stateFile), { recursive: true });

  const store = embeddedStore
    ? createMemoryNodeStore({ historyPoints: config.historyPoints, historyResolutionMs: config.historyResolutionMs, stateFile: stateFile ?? undefined })
    : await connectStore(config, log);

  let unsettled = 0;
  const bus = isSet(env, 'RABBITMQ_URL') ? await connectBus(config, log, 'all-in-one') : countUnsettled(createMemoryBus(), (delta) => (unsettled += delta));

  const scheduler = isSet(env, 'REDIS_URL')
    ? await connectScheduler(config, log)
    : createMemoryScheduler({ onError: (name, error) => log.error(`Scheduled job ${name} failed: ${(error as Error).message}`) });

  const rateLimiter = isSet(env, 'REDIS_URL') ? connectRateLimiter(config, log.child({ component: 'api' })) : createMemoryRateLimiter({ limit: config.rateLimit.perNodePerMinute });

  const kinds: Backends['kinds'] = {
    bus: isSet(env, 'RABBITMQ_URL') ? 'rabbitmq' : 'embedded',
    store: embeddedStore ? 'embedded' : 'mongodb',
    scheduler: isSet(env, 'REDIS_URL') ? 'redis' : 'embedded',
    rateLimit: isSet(env, 'REDIS_URL') ? 'redis' : 'embedded',
  };
  return {
    bus,
    store,
    scheduler,
    rateLimiter,
    kinds,
    stateFile,
    unsettled: () => unsettled,
    describe: () =>
      [
        kinds.bus === 'embedded' ? 'bus embedded (in-memory)' : `bus RabbitMQ ${redact(config.rabbitmqUrl)}`,
        kinds.store === 'embedded'
          ? `store embedded (in-memory, ${stateFile ? `saved to ${stateFile}` : 'not saved: STATE_FILE=none'})`
          : `store MongoDB ${redact(config.mongoUrl)}`,
        kinds.scheduler === 'embedded' ? 'scheduler embedded (in-process timers)' : `scheduler Redis ${redact(config.redisUrl)}`,
        kinds.rateLimit === 'embedded' ? 'rate limit embedded (in-process counters)' : `rate limit Redis ${redact(config.redisUrl)}`,
      ].join(', '),
  };
}

/**
 * Counts the in-memory bus's deliveries until they are settled: at stop, the all-in-one waits for them,
 * because a message the embedded bus holds is gone once the process exits (RabbitMQ would redeliver it).
 */
function countUnsettled(bus: Bus, add: (delta: number) => void): Bus {
  return {
    ...bus,
    consume(queue, onDelivery, options) {
      return bus.consume(
        queue,
        (delivery) => {
          add(1);
          let settled = false;
          const settle = (fn: () => void) => () => {
            if (!settled) add(-1);
            settled = true;
            fn();
          };
          const tracked: Delivery = { ...delivery, ack: settle(delivery.ack), requeue: settle(delivery.requeue) };
          onDelivery(tracked);
        },
        options,
      );
    },
  };
}

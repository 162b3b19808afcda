import { expect } from 'chai';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createMongoNodeStore } from '../../shared/store/mongo-node-store.js';
import { brokerNames } from '../../shared/topology.js';
import { startAllInOne, type AllInOne } from '../../services/all-in-one/all-in-one.js';
import { eventually, mongoUrlFor, RABBITMQ_URL, REDIS_URL, requireServices, uniqueName } from '../support/services.js';

interface NodeView {
  nodeId: string;
  status: string;
}

/** With RABBITMQ_URL, MONGO_URL and REDIS_URL set, the all-in-one runs on the real services, as the separate services do. */
describe('all-in-one on the real services @int', function () {
  this.timeout(60_000);
  const log = createMemoryLogger('info');
  const namespace = uniqueName('aio');
  const database = namespace.replace(/-/g, '_');
  const env = {
    PORT: '0',
    AUTH_MODE: 'off',
    NODE_ID: `${namespace}-local`,
    RABBITMQ_URL,
    MONGO_URL: mongoUrlFor(database),
    REDIS_URL,
    BROKER_NAMESPACE: namespace,
    REDIS_PREFIX: `test:${namespace}`,
    LOG_LEVEL: 'info',
  };
  let app: AllInOne | undefined;

  before(requireServices('rabbitmq', 'mongodb', 'redis'));

  after(async () => {
    await app?.stop();
    if (!app) return;
    const bus = await createRabbitBus({ url: RABBITMQ_URL, log, name: `cleanup-${namespace}`, initialMaxRetries: 3 });
    const names = brokerNames(namespace);
    for (const q of Object.values(names.queues)) await bus.deleteQueue(q).catch(() => undefined);
    for (const e of Object.values(names.exchanges)) await bus.deleteExchange(e).catch(() => undefined);
    await bus.close();
    const store = await createMongoNodeStore({ url: env.MONGO_URL, historyPoints: 0 });
    await store.connection.dropDatabase().catch(() => undefined);
    await store.close();
    const { Redis } = await import('ioredis');
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    const keys = await redis.keys(`test:${namespace}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  it('uses RabbitMQ, MongoDB and Redis, says so at start, and brings the local node ONLINE', async () => {
    app = await startAllInOne({ env, log });
    expect(app.backends.kinds).to.deep.equal({ bus: 'rabbitmq', store: 'mongodb', scheduler: 'redis', rateLimit: 'redis' });
    expect(app.backends.stateFile).to.equal(null);
    expect(log.lines.join('\n')).to.match(
      /Backends: bus RabbitMQ amqp:\/\/guest:\*\*\*@.*, store MongoDB mongodb:\/\/.*, scheduler Redis redis:\/\/.*, rate limit Redis redis:\/\//,
    );

    await eventually(
      async () => {
        const nodes = (await (await fetch(`${app!.url}/api/nodes`)).json()) as NodeView[];
        return nodes.some((n) => n.nodeId === env.NODE_ID && n.status === 'ONLINE');
      },
      15_000,
      100,
    );
    expect((await app.backends.store.get(env.NODE_ID))?.status).to.equal('ONLINE');
    const ready = await fetch(`${app.url}/readyz`);
    expect(await ready.json()).to.deep.include({ ready: true, checks: { broker: true, store: true, redis: true } });
  });
});

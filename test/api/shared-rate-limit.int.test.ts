import { expect } from 'chai';
import { Redis } from 'ioredis';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';
import { eventually, REDIS_URL, requireServices } from '../support/services.js';

const LIMIT = 10;

interface Answer {
  status: number;
  retryAfter: string | null;
  replica: number;
}

async function sendStats(apiUrl: string, nodeId: string, replica: number): Promise<Answer> {
  const response = await fetch(`${apiUrl}/api/nodes/${nodeId}/stats`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(statsBody()),
  });
  await response.arrayBuffer();
  return { status: response.status, retryAfter: response.headers.get('retry-after'), replica };
}

const accepted = (answers: Answer[]) => answers.filter((a) => a.status >= 200 && a.status < 300);
const limited = (answers: Answer[]) => answers.filter((a) => a.status === 429);

/** Two api replicas started as the api process starts them, behind one Redis, under the test's own REDIS_PREFIX. */
describe('per-node rate limit shared by api replicas @int', function () {
  this.timeout(30_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness;
  let apis: string[];

  before(async () => {
    h = await startOrchestrator({ sweepers: 0, env: { TIMEOUT_MINUTES: '1', RATE_LIMIT_PER_NODE_PER_MINUTE: String(LIMIT) } });
    apis = [h.url, (await h.startApi()).url];
  });
  after(async () => {
    await h?.stop();
  });

  /** Registered over AMQP, so that no HTTP request spends the node's budget before the test's own. */
  async function registered(nodeId: string): Promise<void> {
    await h.publishAgent('agent.register', nodeId, registerBody(nodeId));
    await eventually(async () => (await h.store.get(nodeId)) !== null);
  }

  it('allows RATE_LIMIT_PER_NODE_PER_MINUTE stats requests of a node in total when they alternate between two replicas, and answers the rest 429 with Retry-After', async () => {
    await registered('hammered');

    const answers: Answer[] = [];
    for (let i = 0; i < LIMIT * 3; i++) answers.push(await sendStats(apis[i % 2]!, 'hammered', i % 2));

    expect(accepted(answers), 'accepted: the limit once, not once per replica').to.have.length(LIMIT);
    expect(limited(answers)).to.have.length(LIMIT * 2);
    expect(new Set(accepted(answers).map((a) => a.replica)), 'both replicas accepted some').to.have.property('size', 2);
    expect(new Set(limited(answers).map((a) => a.replica)), 'both replicas refused some').to.have.property('size', 2);
    for (const answer of limited(answers)) {
      expect(answer.retryAfter, 'Retry-After on every 429').to.match(/^\d+$/);
      expect(Number(answer.retryAfter)).to.be.within(1, 60);
    }
  });

  it('allows exactly the limit when requests of a node reach both replicas at the same time, and leaves other nodes their own budget', async () => {
    await registered('burst');
    await registered('bystander');

    const answers = await Promise.all(Array.from({ length: LIMIT * 3 }, (_, i) => sendStats(apis[i % 2]!, 'burst', i % 2)));

    expect(accepted(answers)).to.have.length(LIMIT);
    expect(limited(answers)).to.have.length(LIMIT * 2);
    expect((await sendStats(apis[1]!, 'bystander', 1)).status).to.equal(200);
  });

  it('keeps the counters in Redis under the harness REDIS_PREFIX, one per node, expiring within a minute', async () => {
    const redis = new Redis(REDIS_URL);
    try {
      const keys = (await redis.keys(`${h.config.redisPrefix}:rate-limit:*`)).sort();
      expect(keys).to.deep.equal(['burst', 'bystander', 'hammered'].map((node) => `${h.config.redisPrefix}:rate-limit:${node}`));
      for (const key of keys) expect(await redis.pttl(key)).to.be.within(1, 60_000);
    } finally {
      redis.disconnect();
    }
  });
});

import { expect } from 'chai';
import { createMemoryLogger } from '../../shared/logger.js';
import type { NodeRecord } from '../../shared/store/node-record.js';
import { startAllInOne, type AllInOne } from '../../services/all-in-one/all-in-one.js';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';
import { eventually, requireServices } from '../support/services.js';

/** Issue 5, must show 5: the sparkline history per node stays at HISTORY_POINTS however many heartbeats arrive. */
const LIMIT = 5;
const HEARTBEATS = 4 * LIMIT;
const HISTORY_ENV = { HISTORY_POINTS: String(LIMIT), HISTORY_RESOLUTION_MS: '0' };

interface Orchestrator {
  register(nodeId: string): Promise<void>;
  heartbeat(nodeId: string, body: ReturnType<typeof statsBody>): Promise<void>;
  stored(nodeId: string): Promise<NodeRecord | null>;
}

/** Sends HEARTBEATS beats with cpuUsage 1, 2, ... and waits until the last one is stored. */
async function beatManyTimes(o: Orchestrator, nodeId: string): Promise<NodeRecord> {
  await o.register(nodeId);
  const base = Date.now();
  for (let i = 1; i <= HEARTBEATS; i++) {
    await o.heartbeat(nodeId, statsBody({ cpuUsage: i, memoryUsage: 50 + i, timestamp: new Date(base + i).toISOString() }));
  }
  return eventually(async () => {
    const node = await o.stored(nodeId);
    return node?.stats?.cpuUsage === HEARTBEATS && node;
  }, 15_000, 50);
}

function expectLatestPoints(node: NodeRecord): void {
  expect(node.history).to.have.length(LIMIT);
  expect(node.history.map((p) => p.cpu)).to.deep.equal([16, 17, 18, 19, 20]);
  expect(node.history.map((p) => p.mem)).to.deep.equal([66, 67, 68, 69, 70]);
}

describe('stats history on the embedded store (all-in-one)', function () {
  this.timeout(30_000);
  let app: AllInOne;

  before(async () => {
    app = await startAllInOne({ env: { PORT: '0', STATE_FILE: 'none', AUTH_MODE: 'off', NODE_ID: 'history-local', LOG_LEVEL: 'warn', ...HISTORY_ENV }, log: createMemoryLogger('warn') });
  });

  after(async () => {
    await app?.stop();
  });

  it(`keeps the last ${LIMIT} points per node after ${HEARTBEATS} heartbeats`, async () => {
    const post = async (path: string, body: object) => {
      const response = await fetch(`${app.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      expect(response.status, `POST ${path}: ${await response.clone().text()}`).to.be.within(200, 299);
    };
    const node = await beatManyTimes(
      {
        register: (nodeId) => post('/api/nodes/register', registerBody(nodeId)),
        heartbeat: (nodeId, body) => post(`/api/nodes/${nodeId}/stats`, body),
        stored: (nodeId) => app.backends.store.get(nodeId),
      },
      'history-embedded',
    );
    expectLatestPoints(node);
  });
});

describe('stats history on MongoDB @int', function () {
  this.timeout(60_000);
  let h: Harness;

  before(requireServices('rabbitmq', 'mongodb'));
  before(async () => {
    h = await startOrchestrator({ env: HISTORY_ENV, sweepers: 0, api: false });
  });

  after(async () => {
    await h?.stop();
  });

  it(`keeps the last ${LIMIT} points per node after ${HEARTBEATS} heartbeats`, async () => {
    const node = await beatManyTimes(
      {
        register: (nodeId) => h.publishAgent('agent.register', nodeId, registerBody(nodeId)),
        heartbeat: (nodeId, body) => h.publishAgent('agent.heartbeat', nodeId, body),
        stored: (nodeId) => h.store.get(nodeId),
      },
      'history-mongo',
    );
    expectLatestPoints(node);
  });
});

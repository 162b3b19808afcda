import { expect } from 'chai';
import { createMemoryLogger } from '../../shared/logger.js';
import type { HistoryPoint, NodeRecord } from '../../shared/store/node-record.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { startAllInOne, type AllInOne } from '../../services/all-in-one/all-in-one.js';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';
import { eventually, requireServices } from '../support/services.js';

/**
 * The sparkline history per node stays within HISTORY_POINTS however many heartbeats arrive: a ring of slots of
 * HISTORY_RESOLUTION_MS (docs/architecture.md). The beats are sent at least one slot apart, so every point the
 * history shows must be one of the last LIMIT beats, however the machine's load spaces them.
 */
const LIMIT = 5;
const HEARTBEATS = 4 * LIMIT;
const RESOLUTION_MS = 20;
const HISTORY_ENV = { HISTORY_POINTS: String(LIMIT), HISTORY_RESOLUTION_MS: String(RESOLUTION_MS) };

interface Orchestrator {
  register(nodeId: string): Promise<void>;
  heartbeat(nodeId: string, body: ReturnType<typeof statsBody>): Promise<void>;
  stored(nodeId: string): Promise<NodeRecord | null>;
  /** The history as shown at `until`. */
  history(nodeId: string, until: Date): Promise<HistoryPoint[]>;
}

/** The store's view of a node for this test. */
function storedBy(store: NodeStore): Pick<Orchestrator, 'stored' | 'history'> {
  return { stored: (nodeId) => store.get(nodeId), history: async (nodeId, until) => (await store.histories([nodeId], until)).get(nodeId) ?? [] };
}

/** Sends HEARTBEATS beats with cpuUsage 1, 2, ..., each stored and at least one history slot after the last. */
async function beatManyTimes(o: Orchestrator, nodeId: string): Promise<HistoryPoint[]> {
  await o.register(nodeId);
  let last: NodeRecord | null = null;
  for (let i = 1; i <= HEARTBEATS; i++) {
    await o.heartbeat(nodeId, statsBody({ cpuUsage: i, memoryUsage: 50 + i, timestamp: new Date().toISOString() }));
    // Stored before the next is sent, so the receive times too are at least a slot apart.
    last = await eventually(
      async () => {
        const stored = await o.stored(nodeId);
        return stored?.stats?.cpuUsage === i && stored;
      },
      15_000,
      10,
    );
    await new Promise((resolve) => setTimeout(resolve, RESOLUTION_MS + 5));
  }
  // As shown when the last beat was received: however long the machine took since, the window ends there.
  return o.history(nodeId, last!.lastHeartbeat!);
}

function expectLatestPoints(history: HistoryPoint[]): void {
  const cpus = history.map((p) => p.cpu);
  expect(history.length).to.be.within(1, LIMIT);
  expect(cpus.at(-1), 'the newest beat').to.equal(HEARTBEATS);
  expect(
    cpus.every((cpu) => cpu > HEARTBEATS - LIMIT),
    `only points of the last ${LIMIT} beats: ${cpus.join(',')}`,
  ).to.equal(true);
  expect(
    [...cpus].sort((a, b) => a - b),
    'oldest first',
  ).to.deep.equal(cpus);
  expect(history.map((p) => p.mem)).to.deep.equal(cpus.map((cpu) => 50 + cpu));
}

describe('stats history on the embedded store (all-in-one)', function () {
  this.timeout(30_000);
  let app: AllInOne;

  before(async () => {
    app = await startAllInOne({
      env: { PORT: '0', STATE_FILE: 'none', AUTH_MODE: 'off', NODE_ID: 'history-local', LOG_LEVEL: 'warn', ...HISTORY_ENV },
      log: createMemoryLogger('warn'),
    });
  });

  after(async () => {
    await app?.stop();
  });

  it(`keeps at most ${LIMIT} points per node, the newest, after ${HEARTBEATS} heartbeats`, async () => {
    const post = async (path: string, body: object) => {
      const response = await fetch(`${app.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      expect(response.status, `POST ${path}: ${await response.clone().text()}`).to.be.within(200, 299);
    };
    const history = await beatManyTimes(
      {
        register: (nodeId) => post('/api/nodes/register', registerBody(nodeId)),
        heartbeat: (nodeId, body) => post(`/api/nodes/${nodeId}/stats`, body),
        ...storedBy(app.backends.store),
      },
      'history-embedded',
    );
    expectLatestPoints(history);
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

  it(`keeps at most ${LIMIT} points per node, the newest, after ${HEARTBEATS} heartbeats`, async () => {
    const history = await beatManyTimes(
      {
        register: (nodeId) => h.publishAgent('agent.register', nodeId, registerBody(nodeId)),
        heartbeat: (nodeId, body) => h.publishAgent('agent.heartbeat', nodeId, body),
        ...storedBy(h.store),
      },
      'history-mongo',
    );
    expectLatestPoints(history);
  });
});

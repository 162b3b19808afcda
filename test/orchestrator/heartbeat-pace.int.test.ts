import { expect } from 'chai';
import type { Consumer } from '../../shared/bus/bus.js';
import type { SettingsControlMessage } from '../../shared/messages/index.js';
import { eventually, requireServices } from '../support/services.js';
import { registerBody, startOrchestrator, statsBody, type EventCollector, type Harness } from '../support/orchestrator.js';
import { sleep } from '../support/fleet.js';

/**
 * Simulated agents that declare their interval and follow what they are told (the real agent is tested in
 * test/agent): over HTTP from the register and stats answers, over AMQP from control.settings. Each beats on a
 * fixed schedule (next = previous + interval), so a timer fired late only slows it.
 */
interface SimAgent {
  nodeId: string;
  over: 'http' | 'amqp';
  intervalS: number;
  /** Send times of its heartbeats (ms). */
  beats: number[];
  /** Each interval it was told, with when. */
  told: Array<{ at: number; intervalS: number }>;
  running: boolean;
  loop?: Promise<void>;
}

async function post(url: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('heartbeat pace follows the fleet @int', function () {
  this.timeout(300_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness | undefined;
  let control: Consumer | undefined;
  const agents: SimAgent[] = [];
  afterEach(async () => {
    for (const a of agents) a.running = false;
    await Promise.all(agents.splice(0).map((a) => a.loop ?? Promise.resolve()));
    await control?.cancel().catch(() => undefined);
    control = undefined;
    await h?.stop();
    h = undefined;
  });

  function learn(agent: SimAgent, intervalS: unknown): void {
    if (typeof intervalS !== 'number' || intervalS === agent.intervalS) return;
    agent.intervalS = intervalS;
    agent.told.push({ at: Date.now(), intervalS });
  }

  async function beat(harness: Harness, agent: SimAgent): Promise<void> {
    agent.beats.push(Date.now());
    if (agent.over === 'amqp') {
      await harness.publishAgent('agent.heartbeat', agent.nodeId, statsBody()).catch(() => undefined);
      return;
    }
    const answer = await post(`${harness.url}/api/nodes/${agent.nodeId}/stats`, statsBody()).catch(() => null);
    learn(agent, answer?.body.heartbeatInterval);
  }

  function run(harness: Harness, agent: SimAgent, offsetMs: number): void {
    agent.loop = (async () => {
      let next = Date.now() + offsetMs;
      while (agent.running) {
        await sleep(Math.max(0, next - Date.now()));
        if (!agent.running) break;
        next += agent.intervalS * 1000;
        await beat(harness, agent);
        // Never a burst to catch up after a stall: the next beat is at least an interval away.
        next = Math.max(next, Date.now() + 100);
      }
    })();
  }

  /** Registers `count` agents declaring 1 s, half over HTTP and half over AMQP, and starts their loops. */
  async function startAgents(harness: Harness, count: number): Promise<void> {
    const byId = new Map<string, SimAgent>();
    // One queue for every simulated AMQP agent's control key (a real agent binds its own).
    control = await harness.bus.consume(
      { exclusive: true, autoDelete: true, bindings: [{ exchange: harness.names.exchanges.agentControl, routingKey: 'agent.control.#' }] },
      (delivery) => {
        const message = JSON.parse(delivery.body.toString()) as SettingsControlMessage;
        const agent = byId.get(message.nodeId);
        if (agent && message.type === 'control.settings') learn(agent, message.heartbeatInterval);
        delivery.ack();
      },
      { prefetch: 100 },
    );
    for (let i = 0; i < count; i++) {
      const agent: SimAgent = { nodeId: `paced-${i}`, over: i % 2 ? 'amqp' : 'http', intervalS: 1, beats: [], told: [], running: true };
      agents.push(agent);
      byId.set(agent.nodeId, agent);
      const body = { ...registerBody(agent.nodeId), heartbeatInterval: 1 };
      if (agent.over === 'amqp') await harness.publishAgent('agent.register', agent.nodeId, body);
      else {
        const answer = await post(`${harness.url}/api/nodes/register`, body);
        expect(answer.status).to.equal(201);
        expect(answer.body).to.include({ heartbeatInterval: 1 });
      }
    }
    for (const [i, agent] of agents.entries()) run(harness, agent, (i * 1000) / count);
  }

  const rateOver = (from: number, to: number, of: SimAgent[] = agents) => of.reduce((n, a) => n + a.beats.filter((t) => t >= from && t < to).length, 0) / ((to - from) / 1000);
  const timeouts = (events: EventCollector) => events.ofType('node.offline').filter((e) => e.reason === 'timeout');

  it('slows 40 agents declaring 1 s to the fleet rate, marks none OFFLINE, and speeds them up again when 30 leave', async () => {
    h = await startOrchestrator({
      sweepers: 0,
      env: { HEARTBEAT_MAX_RATE: '5', TIMEOUT_MINUTES: '0.25', HEALTH_CHECK_INTERVAL: '1000', HEARTBEAT_PACE_MIN_CHANGE_MS: '10000' },
    });
    const events = await h.subscribe(['node.offline']);
    await startAgents(h, 40);
    await eventually(async () => (await h!.store.countOnline()) === 40, 20_000);
    // The sweeper counts the fleet at its first sweep: 40 ONLINE at 5 a second is one beat every 8 s each.
    await h.startSweeper();
    const paced = await eventually(async () => {
      const pace = await h!.store.fleetPace();
      return pace?.intervalSeconds === 8 ? Date.now() : null;
    }, 10_000);

    // Within three intervals every agent is told 8 s (over HTTP by a stats answer, over AMQP by control.settings)...
    await eventually(() => agents.every((a) => a.intervalS === 8), 24_000, 200);
    const toldBy = Math.max(...agents.map((a) => a.told.at(-1)!.at));
    expect(toldBy - paced).to.be.below(24_000);
    // ... and, once the beats at the old pace are behind them, the fleet sends no more than the rate.
    const from = toldBy + 8_000;
    await sleep(from + 24_000 - Date.now());
    const rate = rateOver(from, from + 24_000);
    expect(rate, 'fleet heartbeats a second').to.be.at.most(5.5);
    expect(rate).to.be.above(3);
    for (const agent of agents) {
      // From the first beat scheduled after it was told (the one already scheduled keeps the old interval).
      const beats = agent.beats.filter((t) => t >= agent.told.at(-1)!.at + 1_500);
      const gaps = beats.slice(1).map((t, i) => t - beats[i]!);
      const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
      expect(gaps.length, agent.nodeId).to.be.at.least(2);
      expect(mean, `${agent.nodeId} beats every ~8 s`).to.be.within(7_500, 10_000);
    }
    expect(timeouts(events), 'no node OFFLINE').to.deep.equal([]);
    const stored = (await h.store.get('paced-1'))!;
    expect(stored).to.include({ declaredIntervalMs: 1000, intervalMs: 8000, timeoutMs: 24_000 });

    // 30 agents shut down: 10 ONLINE at 5 a second is a beat every 2 s.
    const leaving = agents.slice(0, 30);
    const staying = agents.slice(30);
    for (const agent of leaving) {
      agent.running = false;
      if (agent.over === 'http') expect((await post(`${h.url}/api/nodes/${agent.nodeId}/shutdown`, {})).status).to.equal(200);
      else await h.publishAgent('agent.shutdown', agent.nodeId, {});
    }
    const left = Date.now();
    await eventually(() => staying.every((a) => a.intervalS === 2), 120_000, 200);
    expect(Date.now() - left, 'back down within two minutes').to.be.below(120_000);
    // A few beats at the new pace: the shorter deadline takes effect, and nobody was marked OFFLINE on the way.
    await sleep(8_000);
    await eventually(async () => (await h!.store.get(staying[1]!.nodeId))?.timeoutMs === 15_000, 10_000);
    expect(timeouts(events), 'no false OFFLINE').to.deep.equal([]);
    expect(
      events
        .ofType('node.offline')
        .map((e) => e.nodeId)
        .sort(),
    ).to.deep.equal(leaving.map((a) => a.nodeId).sort());
    for (const agent of staying) expect((await h.store.get(agent.nodeId))!.status).to.equal('ONLINE');
  });

  it('leaves a legacy HTTP agent at the default interval and timeout, and marks it OFFLINE after TIMEOUT_MINUTES of silence', async () => {
    const timeoutMs = 3000;
    h = await startOrchestrator({ env: { HEARTBEAT_MAX_RATE: '5', TIMEOUT_MINUTES: String(timeoutMs / 60_000), HEALTH_CHECK_INTERVAL: '250' } });
    // A fleet pace that would slow any agent that declared its interval.
    await h.store.setFleetPace({ intervalSeconds: 8, fleetSize: 40, changedAt: Date.now(), onlineNodes: 40, countedAt: Date.now() });
    const events = await h.subscribe(['node.offline']);

    const registered = await post(`${h.url}/api/nodes/register`, registerBody('legacy-1'));
    expect(registered).to.deep.equal({ status: 201, body: { nodeId: 'legacy-1', accepted: true, message: 'Node legacy-1 registered' } });
    const declaring = await post(`${h.url}/api/nodes/register`, { ...registerBody('declaring-1'), heartbeatInterval: 1 });
    expect(declaring.body, 'one that declares is told').to.include({ heartbeatInterval: 8, timeout: 24, fleetSize: 40 });
    let lastBeat = 0;
    for (let i = 0; i < 3; i++) {
      await sleep(500);
      lastBeat = Date.now();
      expect(await post(`${h.url}/api/nodes/legacy-1/stats`, statsBody())).to.deep.equal({ status: 200, body: { nodeId: 'legacy-1', accepted: true } });
    }
    await eventually(async () => (await h!.store.get('legacy-1'))?.stats !== null, 5000);
    const stored = (await h.store.get('legacy-1'))!;
    expect(stored.timeoutMs ?? null).to.equal(null);
    expect(stored.intervalMs ?? null).to.equal(null);

    const offline = await eventually(() => events.ofType('node.offline', 'legacy-1')[0], 15_000, 50);
    expect(offline.reason).to.equal('timeout');
    const silentFor = Date.parse(offline.occurredAt) - Date.parse(offline.lastHeartbeat!);
    expect(silentFor, 'after the default timeout').to.be.at.least(timeoutMs);
    expect(Date.parse(offline.lastHeartbeat!)).to.be.at.least(lastBeat - 1000);
  });
});

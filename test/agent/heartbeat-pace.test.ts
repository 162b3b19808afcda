import { expect } from 'chai';
import type sinon from 'sinon';
import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import type { Clock } from '../../shared/clock.js';
import type { RegisterMessage } from '../../shared/messages/index.js';
import { brokerNames, ROUTING, topology } from '../../shared/topology.js';
import { boundedIntervalMs, firstGapMs, LONGEST_INTERVAL_MS, paceSettingsOf, staggeredIntervalMs } from '../../services/agent/heartbeat-pace.js';
import type { Timers } from '../../services/agent/timers.js';
import { TransportError } from '../../services/agent/transport.js';
import { fakeTime, linesMatching, macrotask, testAgent } from './fakes.js';

const OWN = 10_000; // testConfig's HEARTBEAT_INTERVAL
const names = brokerNames('test');
const SET_120 = 'Heartbeat interval set to 120 s by the orchestrator (fleet of 12000 nodes)';
const pace120 = { heartbeatInterval: 120, timeout: 360, fleetSize: 12000 };

describe('heartbeat pace: bounds and stagger', () => {
  it('keeps a told interval within bounds: never faster than the agent’s own, never slower than 10 minutes', () => {
    expect(boundedIntervalMs(5_000, OWN)).to.equal(OWN);
    expect(boundedIntervalMs(120_000, OWN)).to.equal(120_000);
    expect(boundedIntervalMs(3_600_000, OWN)).to.equal(LONGEST_INTERVAL_MS);
    // An agent configured slower than 10 minutes keeps its own interval.
    expect(boundedIntervalMs(60_000, 900_000)).to.equal(900_000);
  });

  it('moves a new interval by up to ±10 % with the injected randomness, within the same bounds', () => {
    expect(staggeredIntervalMs(120_000, OWN, () => 0)).to.equal(108_000);
    expect(staggeredIntervalMs(120_000, OWN, () => 0.5)).to.equal(120_000);
    expect(staggeredIntervalMs(120_000, OWN, () => 0.75)).to.equal(126_000);
    expect(staggeredIntervalMs(10_500, OWN, () => 0)).to.equal(OWN);
    expect(staggeredIntervalMs(LONGEST_INTERVAL_MS, OWN, () => 0.99)).to.equal(LONGEST_INTERVAL_MS);
    // Told its own interval, an agent beats at exactly that: there is nothing to spread.
    expect(staggeredIntervalMs(OWN, OWN, () => 0.9)).to.equal(OWN);
  });

  it('starts a slower interval the old one plus a random part of the new one after the last beat (at most 10 minutes), a faster one after the new one', () => {
    expect(firstGapMs(10_000, 120_000, () => 0)).to.equal(10_000);
    expect(firstGapMs(10_000, 120_000, () => 0.5)).to.equal(70_000);
    expect(firstGapMs(300_000, 600_000, () => 0.9)).to.equal(LONGEST_INTERVAL_MS);
    expect(firstGapMs(120_000, 10_000, () => 0.5)).to.equal(10_000);
  });

  it('reads the pace from an answer only when it carries both the interval and the timeout', () => {
    expect(paceSettingsOf({ nodeId: 'node-1', accepted: true, heartbeatInterval: 120, timeout: 360, fleetSize: 12000 })).to.deep.equal(pace120);
    expect(paceSettingsOf({ heartbeatInterval: 120, timeout: 360 })).to.deep.equal({ heartbeatInterval: 120, timeout: 360 });
    expect(paceSettingsOf({ nodeId: 'node-1', accepted: true, message: 'Node node-1 registered' })).to.equal(undefined);
    expect(paceSettingsOf({ heartbeatInterval: '120', timeout: 360 })).to.equal(undefined);
    expect(paceSettingsOf({ heartbeatInterval: 0, timeout: 360 })).to.equal(undefined);
    expect(paceSettingsOf(null)).to.equal(undefined);
  });
});

describe('heartbeat pace: the agent follows the orchestrator', () => {
  let fake: sinon.SinonFakeTimers;
  let clock: Clock;
  let timers: Timers;

  beforeEach(() => {
    ({ fake, clock, timers } = fakeTime());
  });
  afterEach(() => fake.restore());

  /** An HTTP agent whose answers come from `answer`; beats records when each heartbeat was sent (ms after start). */
  function httpAgent(answer: (message: { type: string }, n: number) => unknown, random?: () => number) {
    const t = testAgent({ clock, timers, random });
    const beats: number[] = [];
    const start = fake.now;
    let n = 0;
    t.http.handler = (message) => {
      if (message.type === 'agent.heartbeat') beats.push(fake.now - start);
      const settings = answer(message, message.type === 'agent.heartbeat' ? ++n : n);
      if (settings instanceof Error) throw settings;
      return settings === undefined ? undefined : paceSettingsOf(settings);
    };
    return { ...t, beats };
  }

  it('declares its own interval in every registration', async () => {
    const { agent, http } = httpAgent(() => undefined);
    await agent.start();
    await fake.tickAsync(1);
    const register = http.sent.find((s) => s.message.type === 'agent.register')!.message as RegisterMessage;
    expect(register.payload).to.deep.include({ nodeId: 'node-1', heartbeatInterval: 10 });
    await agent.stop();
  });

  it('follows the interval of the register answer from its first beat on, and logs it once', async () => {
    const { agent, beats, log } = httpAgent((m) => (m.type === 'agent.register' ? pace120 : undefined));
    await agent.start();
    await fake.tickAsync(3 * 120_000 + 1);
    expect(beats).to.deep.equal([0, 120_000, 240_000, 360_000]);
    expect(linesMatching(log, SET_120)).to.have.length(1);
    expect(agent.status().pace).to.deep.equal({ intervalMs: 120_000, source: 'orchestrator', told: pace120 });
    await agent.stop();
  });

  it('applies a change told in a stats answer from the slot of the beat that carried it, and logs each change once', async () => {
    // Beats 1-2 get no pace; beats 3-5 are told 120 s (the orchestrator repeats it); beat 6 is told 60 s.
    const { agent, beats, log } = httpAgent((m, n) => (m.type !== 'agent.heartbeat' || n < 3 ? undefined : n < 6 ? pace120 : { ...pace120, heartbeatInterval: 60 }));
    await agent.start();
    await fake.tickAsync(390_001);
    // Slowing down, the first gap is the old interval plus a random part of the new one (random 0.5: 10 + 60 s);
    // speeding up, it is the new interval.
    expect(beats).to.deep.equal([0, 10_000, 20_000, 90_000, 210_000, 330_000, 390_000]);
    expect(linesMatching(log, SET_120)).to.have.length(1);
    expect(linesMatching(log, 'Heartbeat interval set to 60 s by the orchestrator (fleet of 12000 nodes)')).to.have.length(1);
    expect(linesMatching(log, 'Heartbeat interval set to')).to.have.length(2);
    await agent.stop();
  });

  it('staggers a change by up to ±10 %, so that agents told together beat apart', async () => {
    const agents = [0, 0.25, 0.5, 0.999].map((r) =>
      httpAgent(
        (m) => (m.type === 'agent.register' ? pace120 : undefined),
        () => r,
      ),
    );
    for (const a of agents) await a.agent.start();
    await fake.tickAsync(150_000);
    expect(agents.map((a) => a.agent.status().pace.intervalMs)).to.deep.equal([108_000, 114_000, 120_000, 131_976]);
    expect(agents.map((a) => a.beats[1])).to.deep.equal([108_000, 114_000, 120_000, 131_976]);
    // The wording names the told value, not each agent's staggered one.
    for (const a of agents) expect(linesMatching(a.log, SET_120)).to.have.length(1);
    for (const a of agents) await a.agent.stop();
  });

  it('spreads a fleet told to slow down over the new interval at once, none sooner than the old interval', async () => {
    // Four agents beating together every 10 s, told 120 s in the answer to their second beat (at 10 s).
    const randoms = [0, 0.25, 0.5, 0.999];
    const agents = randoms.map((r) =>
      httpAgent(
        (m, n) => (m.type === 'agent.heartbeat' && n === 2 ? pace120 : undefined),
        () => r,
      ),
    );
    for (const a of agents) await a.agent.start();
    await fake.tickAsync(300_000);
    expect(agents.map((a) => a.beats.slice(0, 4))).to.deep.equal([
      [0, 10_000, 20_000, 128_000], // every 108 s, first gap 10 s
      [0, 10_000, 48_500, 162_500], // every 114 s, first gap 10 + 0.25 × 114 s
      [0, 10_000, 80_000, 200_000], // every 120 s, first gap 10 + 0.5 × 120 s
      [0, 10_000, 151_844, 283_820], // every 131.976 s, first gap 10 + 0.999 × 131.976 s
    ]);
    for (const a of agents) await a.agent.stop();
  });

  it('never beats faster than its own interval, nor slower than every 10 minutes, whatever it is told', async () => {
    const fast = httpAgent((m) => (m.type === 'agent.register' ? { heartbeatInterval: 2, timeout: 30 } : undefined));
    await fast.agent.start();
    await fake.tickAsync(3 * OWN + 1);
    expect(fast.beats).to.deep.equal([0, 10_000, 20_000, 30_000]);
    expect(linesMatching(fast.log, 'Heartbeat interval set to')).to.have.length(0);
    await fast.agent.stop();

    const slow = httpAgent((m) => (m.type === 'agent.register' ? { heartbeatInterval: 3600, timeout: 10800, fleetSize: 500000 } : undefined));
    await slow.agent.start();
    await fake.tickAsync(2 * LONGEST_INTERVAL_MS + 1);
    expect(slow.beats).to.deep.equal([0, 600_000, 1_200_000]);
    expect(linesMatching(slow.log, 'Heartbeat interval set to 600 s by the orchestrator (fleet of 500000 nodes)')).to.have.length(1);
    expect(linesMatching(slow.log, 'The orchestrator asked for a heartbeat every 3600 s; this agent beats every 10 s to 600 s')).to.have.length(1);
    await slow.agent.stop();
  });

  it('falls back to its own interval when it registers again with an orchestrator that sets no pace', async () => {
    // A new orchestrator answers the first registration; then the node is forgotten (404) and an old one answers.
    let old = false;
    const { agent, beats, log } = httpAgent((m, n) => {
      if (m.type === 'agent.register') return old ? undefined : pace120;
      if (n === 3) {
        old = true;
        return new TransportError('NODE_NOT_REGISTERED', 'HTTP 404');
      }
      return undefined;
    });
    await agent.start();
    await fake.tickAsync(240_000 + 2 * OWN + 1);
    // Beat 3 (240 s) got the 404: registered again at once, beats at once (a 0 ms fake timer set during a tick
    // fires 1 ms later), then every 10 s again.
    expect(beats).to.deep.equal([0, 120_000, 240_000, 240_001, 250_000, 260_000]);
    expect(agent.status().registrations).to.equal(2);
    expect(agent.status().pace).to.deep.equal({ intervalMs: OWN, source: 'own' });
    expect(linesMatching(log, 'Heartbeat interval back to 10 s (HEARTBEAT_INTERVAL): the orchestrator no longer sets it')).to.have.length(1);
    await agent.stop();
  });
});

describe('heartbeat pace over AMQP (control.settings)', () => {
  let fake: sinon.SinonFakeTimers;
  let clock: Clock;
  let timers: Timers;

  beforeEach(() => {
    ({ fake, clock, timers } = fakeTime());
  });
  afterEach(() => fake.restore());

  async function amqpAgent() {
    const bus = createMemoryBus();
    await bus.declareTopology(topology(names));
    const t = testAgent({ clock, timers, bus });
    const beats = () => linesMatching(t.log, 'Heartbeat sent successfully for node-1').length;
    const control = (body: object) =>
      bus.publish(names.exchanges.agentControl, ROUTING.control('node-1'), {
        id: `c-${fake.now}`,
        version: 1,
        sentAt: new Date(fake.now).toISOString(),
        nodeId: 'node-1',
        ...body,
      });
    return { ...t, bus, beats, control };
  }

  /** Turns the event loop (not the fake clock) until `done`: the listener loads its schemas with an import. */
  async function until(done: () => boolean): Promise<void> {
    const deadline = performance.now() + 5000;
    while (!done() && performance.now() < deadline) await macrotask();
    expect(done()).to.equal(true);
  }

  it('declares its interval in the registration it publishes', async () => {
    const { agent, bus } = await amqpAgent();
    const published: RegisterMessage[] = [];
    await bus.consume(
      names.queues.ingest,
      (d) => {
        published.push(JSON.parse(d.body.toString()) as RegisterMessage);
        d.ack();
      },
      { prefetch: 10 },
    );
    await agent.start();
    await fake.tickAsync(1);
    await until(() => published.length >= 1);
    expect(published[0]).to.deep.include({ type: 'agent.register' });
    expect(published[0]!.payload.heartbeatInterval).to.equal(10);
    await agent.stop();
  });

  it('follows a control.settings from the slot of its last beat, and logs the change once', async () => {
    const { agent, log, beats, control } = await amqpAgent();
    await agent.start();
    await fake.tickAsync(1);
    expect(agent.status()).to.include({ registrations: 1, lastTransport: 'amqp' });
    await fake.tickAsync(OWN + 4_000); // beats at 0 and 10 s
    await control({ type: 'control.settings', ...pace120 });
    await until(() => linesMatching(log, SET_120).length === 1);
    // The same interval with another timeout: no new line, nothing rescheduled.
    await control({ type: 'control.settings', ...pace120, timeout: 400 });
    await until(() => agent.status().pace.told?.timeout === 400);
    expect(beats()).to.equal(2);
    // The first gap after slowing down: 10 s + random (0.5) × 120 s after the beat at 10 s; then every 120 s.
    await fake.tickAsync(80_000 - 14_001 - 1);
    expect(beats()).to.equal(2);
    await fake.tickAsync(1);
    expect(beats()).to.equal(3);
    await fake.tickAsync(120_000);
    expect(beats()).to.equal(4);
    await macrotask();
    expect(linesMatching(log, SET_120)).to.have.length(1);
    await agent.stop();
  });

  it('falls back to its own interval when no control.settings follows a re-registration within that interval', async () => {
    const { agent, log, beats, control } = await amqpAgent();
    await agent.start();
    await fake.tickAsync(1);
    await control({ type: 'control.settings', ...pace120 });
    await until(() => agent.status().pace.intervalMs === 120_000);

    await control({ type: 'control.reregister', reason: 'node is not registered' });
    await until(() => agent.status().registrations === 2);
    const before = beats();
    // Registered again (and beat at once) with the told pace kept for now: no control.settings within 10 s ...
    await fake.tickAsync(OWN - 1);
    expect(agent.status().pace.intervalMs).to.equal(120_000);
    await fake.tickAsync(1);
    // ... and it is back to its own interval, beating every 10 s from its last beat.
    expect(agent.status().pace).to.deep.equal({ intervalMs: OWN, source: 'own' });
    expect(linesMatching(log, 'Heartbeat interval back to 10 s (HEARTBEAT_INTERVAL): the orchestrator no longer sets it')).to.have.length(1);
    await fake.tickAsync(2 * OWN);
    expect(beats() - before).to.be.at.least(2);
    await agent.stop();
  });

  it('keeps the pace, without a new log line, when the orchestrator repeats it after a re-registration', async () => {
    const { agent, log, control } = await amqpAgent();
    await agent.start();
    await fake.tickAsync(1);
    await control({ type: 'control.settings', ...pace120 });
    await until(() => agent.status().pace.intervalMs === 120_000);
    await control({ type: 'control.reregister', reason: 'node is not registered' });
    await until(() => agent.status().registrations === 2);
    await control({ type: 'control.settings', ...pace120, timeout: 400 });
    await until(() => agent.status().pace.told?.timeout === 400);
    await fake.tickAsync(3 * OWN);
    expect(agent.status().pace).to.include({ intervalMs: 120_000, source: 'orchestrator' });
    expect(linesMatching(log, 'Heartbeat interval')).to.have.length(1);
    await agent.stop();
  });
});

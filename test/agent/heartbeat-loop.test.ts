import { expect } from 'chai';
import type sinon from 'sinon';
import type { Clock } from '../../shared/clock.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createHeartbeatLoop, type LoopExit } from '../../services/agent/heartbeat-loop.js';
import type { Timers } from '../../services/agent/timers.js';
import { TransportError } from '../../services/agent/transport.js';
import { fakeTime, linesMatching, testAgent } from './fakes.js';

const INTERVAL = 10_000;
const T0 = Date.UTC(2026, 0, 1);

describe('heartbeat loop', () => {
  let fake: sinon.SinonFakeTimers;
  let clock: Clock;
  let timers: Timers;

  beforeEach(() => {
    ({ fake, clock, timers } = fakeTime());
  });
  afterEach(() => fake.restore());

  /** A loop whose beat n (from 1) takes durations(n) ms and fails when outcome(n) throws. */
  function loop(options: { durations?: (n: number) => number; outcome?: (n: number) => void; maxFailures?: number } = {}) {
    const log = createMemoryLogger('debug');
    const starts: number[] = [];
    let running = 0;
    let maxConcurrent = 0;
    const heartbeat = createHeartbeatLoop({
      nodeId: 'node-1',
      intervalMs: INTERVAL,
      maxFailures: options.maxFailures ?? 3,
      clock,
      timers,
      log,
      beat: async () => {
        const n = starts.push(fake.now - T0);
        running++;
        maxConcurrent = Math.max(maxConcurrent, running);
        try {
          await new Promise<void>((resolve) => timers.setTimeout(resolve, options.durations?.(n) ?? 0));
          options.outcome?.(n);
        } finally {
          running--;
        }
      },
    });
    let exit: LoopExit | undefined;
    const run = (startOffsetMs = 0) => heartbeat.run({ startOffsetMs }).then((e) => (exit = e));
    return { heartbeat, log, starts, run, exit: () => exit, maxConcurrent: () => maxConcurrent };
  }

  it('beats at start + k * interval however long each beat takes', async () => {
    const l = loop({ durations: () => 3_700 });
    void l.run();
    await fake.tickAsync(5 * INTERVAL + 1);
    expect(l.starts).to.deep.equal([0, 10_000, 20_000, 30_000, 40_000, 50_000]);
    expect(linesMatching(l.log, 'Heartbeat sent successfully for node-1')).to.have.length(5);
    l.heartbeat.stop();
  });

  it('starts after the given offset and keeps the grid from there', async () => {
    const l = loop({ durations: () => 1_000 });
    void l.run(2_500);
    await fake.tickAsync(3 * INTERVAL);
    expect(l.starts).to.deep.equal([2_500, 12_500, 22_500]);
    l.heartbeat.stop();
  });

  it('never overlaps beats: a beat that overruns makes the loop skip the slots it missed', async () => {
    const l = loop({ durations: (n) => (n === 2 ? 25_000 : 500) });
    void l.run();
    await fake.tickAsync(6 * INTERVAL + 1);
    expect(l.starts).to.deep.equal([0, 10_000, 40_000, 50_000, 60_000]);
    expect(l.maxConcurrent()).to.equal(1);
    expect(linesMatching(l.log, 'skipping 2 slot(s)')).to.have.length(1);
    l.heartbeat.stop();
  });

  it('moves to a new interval from the slot of the last beat, longer or shorter', async () => {
    const l = loop();
    void l.run();
    await fake.tickAsync(15_000); // beats at 0 and 10 s
    l.heartbeat.changeInterval(30_000);
    await fake.tickAsync(60_000);
    expect(l.starts).to.deep.equal([0, 10_000, 40_000, 70_000]);
    l.heartbeat.changeInterval(INTERVAL); // 5 s after the beat at 70 s
    await fake.tickAsync(10_000);
    expect(l.starts).to.deep.equal([0, 10_000, 40_000, 70_000, 80_000]);
    l.heartbeat.stop();
  });

  it('takes the first gap it is given from the last beat, then the new interval', async () => {
    const l = loop();
    void l.run();
    await fake.tickAsync(15_000); // beats at 0 and 10 s
    l.heartbeat.changeInterval(100_000, 40_000);
    await fake.tickAsync(140_000);
    expect(l.starts).to.deep.equal([0, 10_000, 50_000, 150_000]);
    l.heartbeat.stop();
  });

  it('beats at the next slot of a shorter interval when the change comes later than that interval after the last beat', async () => {
    const l = loop();
    l.heartbeat.changeInterval(60_000);
    void l.run();
    await fake.tickAsync(25_000); // beat at 0, next due at 60 s
    l.heartbeat.changeInterval(INTERVAL);
    await fake.tickAsync(5_000);
    expect(l.starts).to.deep.equal([0, 30_000]);
    expect(linesMatching(l.log, 'skipping')).to.have.length(0);
    l.heartbeat.stop();
  });

  it('keeps the first beat of a run where it is when the interval changes before it', async () => {
    const l = loop();
    void l.run(2_500);
    l.heartbeat.changeInterval(30_000);
    await fake.tickAsync(40_000);
    expect(l.starts).to.deep.equal([2_500, 32_500]);
    l.heartbeat.stop();
  });

  it('plans the next beat with an interval changed while a beat is in flight', async () => {
    const l = loop({ durations: () => 1_000 });
    void l.run();
    await fake.tickAsync(500);
    l.heartbeat.changeInterval(30_000);
    await fake.tickAsync(30_000);
    expect(l.starts).to.deep.equal([0, 30_000]);
    l.heartbeat.stop();
  });

  it('asks for re-registration after exactly MAX_HEARTBEAT_FAILURES consecutive failures', async () => {
    const l = loop({
      outcome: () => {
        throw new TransportError('UNAVAILABLE', 'HTTP request failed: connect ECONNREFUSED 127.0.0.1:8080');
      },
    });
    void l.run();
    await fake.tickAsync(INTERVAL + 1);
    expect(l.exit()).to.equal(undefined);
    await fake.tickAsync(INTERVAL);
    expect(l.starts).to.have.length(3);
    expect(l.exit()).to.deep.equal({ kind: 'reregister', reason: 'too-many-failures' });
    expect(linesMatching(l.log, 'Error sending heartbeat to orchestrator: HTTP request failed: connect ECONNREFUSED 127.0.0.1:8080')).to.have.length(3);
    expect(linesMatching(l.log, 'Too many heartbeat failures (3), attempting re-registration...')).to.have.length(1);
    expect(fake.countTimers()).to.equal(0);
  });

  it('resets the failure count on a successful beat', async () => {
    const failing = new Set([1, 2, 4, 5, 7, 8, 9]);
    const l = loop({
      outcome: (n) => {
        if (failing.has(n)) throw new Error('timed out');
      },
    });
    void l.run();
    await fake.tickAsync(20 * INTERVAL);
    expect(l.starts).to.have.length(9);
    expect(l.exit()).to.deep.equal({ kind: 'reregister', reason: 'too-many-failures' });
    expect(linesMatching(l.log, 'Too many heartbeat failures')).to.have.length(1);
  });

  it('asks for re-registration at once, without counting a failure, when the orchestrator answers 404', async () => {
    const l = loop({
      outcome: () => {
        throw new TransportError('NODE_NOT_REGISTERED', 'HTTP 404 (node node-1 is not registered)');
      },
    });
    void l.run();
    await fake.tickAsync(1);
    expect(l.exit()).to.deep.equal({ kind: 'reregister', reason: 'not-registered' });
    expect(l.starts).to.have.length(1);
    expect(linesMatching(l.log, 'Error sending heartbeat')).to.have.length(0);
  });

  it('ends the run after the beat in flight when the orchestrator asks for re-registration', async () => {
    const l = loop({ durations: () => 2_000 });
    void l.run();
    await fake.tickAsync(1_000);
    expect(l.heartbeat.requestReregistration()).to.equal(true);
    expect(l.exit()).to.equal(undefined);
    await fake.tickAsync(1_000);
    expect(l.exit()).to.deep.equal({ kind: 'reregister', reason: 'asked' });
    expect(l.starts).to.have.length(1);
  });
});

describe('agent re-registration', () => {
  let fake: sinon.SinonFakeTimers;
  let clock: Clock;
  let timers: Timers;

  beforeEach(() => {
    ({ fake, clock, timers } = fakeTime());
  });
  afterEach(() => fake.restore());

  it('re-registers after MAX_HEARTBEAT_FAILURES failed beats and resumes beating once the orchestrator is back', async () => {
    const { agent, http, log } = testAgent({ clock, timers });
    let down = false;
    http.handler = (message) => {
      if (down) throw new TransportError('UNAVAILABLE', `HTTP request failed: connect ECONNREFUSED (${message.type})`);
    };
    await agent.start();
    await fake.tickAsync(1);
    expect(agent.status()).to.include({ state: 'heartbeating', registrations: 1 });

    down = true;
    await fake.tickAsync(3 * INTERVAL);
    expect(linesMatching(log, 'Too many heartbeat failures (3), attempting re-registration...')).to.have.length(1);
    expect(agent.status().state).to.equal('registering');

    down = false;
    await fake.tickAsync(5_000 + 1); // the first registration back-off wait
    expect(agent.status()).to.include({ state: 'heartbeating', registrations: 2 });
    const beatsBefore = http.count('agent.heartbeat');
    await fake.tickAsync(INTERVAL);
    expect(http.count('agent.heartbeat')).to.equal(beatsBefore + 1);
    expect(linesMatching(log, 'Successfully registered with orchestrator as node-1')).to.have.length(2);
    await agent.stop();
  });

  it('re-registers at once when its stats get a 404', async () => {
    const { agent, http } = testAgent({ clock, timers });
    let forgotten = false;
    http.handler = (message) => {
      if (forgotten && message.type === 'agent.heartbeat') {
        forgotten = false;
        throw new TransportError('NODE_NOT_REGISTERED', 'HTTP 404');
      }
    };
    await agent.start();
    await fake.tickAsync(1);
    forgotten = true;
    await fake.tickAsync(INTERVAL);
    expect(http.sent.map((s) => s.message.type)).to.deep.equal(['agent.register', 'agent.heartbeat', 'agent.heartbeat', 'agent.register', 'agent.heartbeat']);
    expect(agent.status().registrations).to.equal(2);
    await agent.stop();
  });
});

import { expect } from 'chai';
import type sinon from 'sinon';
import { createMemoryLogger } from '../../shared/logger.js';
import { createRegistration, registrationDelayMs, type RegistrationSchedule } from '../../services/agent/registration.js';
import type { Timers } from '../../services/agent/timers.js';
import { TransportError } from '../../services/agent/transport.js';
import { fakeTime, linesMatching } from './fakes.js';

const schedule: RegistrationSchedule = { firstDelayMs: 5_000, attempts: 5, jitter: 0.1 };

function gaps(times: number[]): number[] {
  return times.slice(1).map((t, i) => t - times[i]!);
}

describe('registration schedule', () => {
  let fake: sinon.SinonFakeTimers;
  let timers: Timers;
  const stops: AbortController[] = [];

  beforeEach(() => {
    ({ fake, timers } = fakeTime());
  });
  afterEach(() => {
    for (const s of stops.splice(0)) s.abort();
    fake.restore();
  });

  function start(options: { failUntil?: number; random?: () => number; error?: () => Error } = {}) {
    const log = createMemoryLogger('debug');
    const attempts: number[] = [];
    const controller = new AbortController();
    stops.push(controller);
    const registration = createRegistration({
      nodeId: 'node-1',
      schedule,
      timers,
      random: options.random ?? Math.random,
      log,
      attempt: async () => {
        attempts.push(fake.now);
        if (attempts.length < (options.failUntil ?? Infinity)) throw options.error?.() ?? new Error('connect ECONNREFUSED 127.0.0.1:8080');
      },
    });
    let outcome: 'pending' | 'registered' | 'aborted' = 'pending';
    const done = registration.register(controller.signal).then(
      () => (outcome = 'registered'),
      () => (outcome = 'aborted'),
    );
    return { attempts, log, controller, done, outcome: () => outcome };
  }

  it('waits 5, 10, 20, 40 and 80 s within the jitter, then keeps trying every 80 s', async () => {
    const run = start();
    await fake.tickAsync(700_000);
    const waits = gaps(run.attempts);
    expect(waits.length).to.be.at.least(9);
    [5_000, 10_000, 20_000, 40_000, 80_000].forEach((base, i) => expect(waits[i]).to.be.within(base * 0.9, base * 1.1));
    for (const wait of waits.slice(5)) expect(wait).to.be.within(72_000, 88_000);
    expect(run.outcome()).to.equal('pending');
  });

  it('moves each wait by at most the jitter, both ways', () => {
    const low = [1, 2, 3, 4, 5, 6, 7].map((n) => registrationDelayMs(schedule, n, () => 0));
    const high = [1, 2, 3, 4, 5, 6, 7].map((n) => registrationDelayMs(schedule, n, () => 1));
    expect(low).to.deep.equal([4_500, 9_000, 18_000, 36_000, 72_000, 72_000, 72_000]);
    expect(high).to.deep.equal([5_500, 11_000, 22_000, 44_000, 88_000, 88_000, 88_000]);
  });

  it('registers on the first attempt without waiting when the orchestrator answers', async () => {
    const run = start({ failUntil: 1 });
    await run.done;
    expect(run.attempts).to.deep.equal([Date.UTC(2026, 0, 1)]);
    expect(linesMatching(run.log, 'Successfully registered with orchestrator as node-1')).to.have.length(1);
  });

  it('stops retrying at the first success and logs the registration verbatim', async () => {
    const run = start({ failUntil: 4, random: () => 0.5 });
    await fake.tickAsync(200_000);
    expect(run.outcome()).to.equal('registered');
    expect(gaps(run.attempts)).to.deep.equal([5_000, 10_000, 20_000]);
    expect(run.log.lines.filter((l) => l.includes('Successfully registered with orchestrator as node-1'))).to.have.length(1);
    expect(fake.countTimers()).to.equal(0);
  });

  it('does not give up after the back-off attempts: it says so once and registers when the orchestrator is back', async () => {
    const run = start({ failUntil: 9, random: () => 0.5 });
    await fake.tickAsync(600_000);
    expect(run.outcome()).to.equal('registered');
    expect(gaps(run.attempts)).to.deep.equal([5_000, 10_000, 20_000, 40_000, 80_000, 80_000, 80_000, 80_000]);
    expect(linesMatching(run.log, 'Registration failed 5 times; retrying every 80 s until it succeeds')).to.have.length(1);
  });

  it('waits longer when a 503 asks for it with Retry-After, but never beyond the longest wait', async () => {
    const run = start({ failUntil: 3, random: () => 0.5, error: () => new TransportError('UNAVAILABLE', 'HTTP 503', { retryAfterMs: 30_000 }) });
    await fake.tickAsync(100_000);
    expect(gaps(run.attempts)).to.deep.equal([30_000, 30_000]);
    expect(registrationDelayMs(schedule, 1, () => 0.5)).to.equal(5_000);
  });

  it('ends without registering when it is stopped during a wait', async () => {
    const run = start();
    await fake.tickAsync(7_000);
    run.controller.abort();
    await run.done;
    expect(run.outcome()).to.equal('aborted');
    expect(run.attempts).to.have.length(2);
    expect(fake.countTimers()).to.equal(0);
  });
});

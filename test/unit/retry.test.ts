import { expect } from 'chai';
import sinon from 'sinon';
import { createMemoryLogger } from '../../shared/logger.js';
import { createOutageLog } from '../../shared/outage-log.js';
import { backoffDelay, retry } from '../../shared/retry.js';

class Unavailable extends Error {}

/** Fails the first `failures` calls with `error`, then returns 'done'; notes when (fake clock) each call came. */
function flaky(failures: number, error: () => unknown = () => new Unavailable('down')) {
  const calls: number[] = [];
  return {
    calls,
    run: async () => {
      calls.push(Date.now());
      if (calls.length <= failures) throw error();
      return 'done';
    },
  };
}

const gaps = (calls: number[]) => calls.slice(1).map((t, i) => t - calls[i]!);

describe('retry', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => {
    clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => clock.restore());

  it('waits first delay, doubling, up to the longest delay between attempts, and returns the first success', async () => {
    const op = flaky(8);
    const result = retry(op.run, { firstDelayMs: 100, maxDelayMs: 5000 });
    await clock.tickAsync(60_000);

    expect(await result).to.equal('done');
    expect(gaps(op.calls)).to.deep.equal([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    expect(gaps(op.calls)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffDelay({ firstDelayMs: 100, maxDelayMs: 5000 }, n)));
  });

  it('logs an outage once when the first attempt fails and once when one succeeds, and reports each failure and the success', async () => {
    const log = createMemoryLogger('debug');
    const outage = createOutageLog({ log, what: 'Store unavailable', recoveredLine: (s) => `Store available again after ${s} s` });
    const seen: string[] = [];
    const op = flaky(5);
    const result = retry(op.run, {
      firstDelayMs: 1000,
      maxDelayMs: 1000,
      outage,
      onFailure: (error) => seen.push(`failed: ${(error as Error).message}`),
      onSuccess: () => seen.push('succeeded'),
    });
    await clock.tickAsync(10_000);

    expect(await result).to.equal('done');
    expect(log.lines).to.have.length(2);
    expect(log.lines[0]).to.include('Store unavailable: down');
    expect(log.lines[1]).to.include('Store available again after 5 s');
    expect(seen).to.deep.equal([...Array<string>(5).fill('failed: down'), 'succeeded']);
  });

  it('rethrows at once, unreported, a failure retryIf does not accept', async () => {
    const seen: unknown[] = [];
    const bug = new TypeError('a bug, not an outage');
    const op = flaky(3, () => bug);
    const result = retry(op.run, { firstDelayMs: 100, maxDelayMs: 100, retryIf: (e) => e instanceof Unavailable, onFailure: (e) => seen.push(e) }).catch((e: unknown) => e);

    expect(await result).to.equal(bug);
    expect(op.calls).to.have.length(1);
    expect(seen).to.deep.equal([]);
  });

  it('retries any error retryIf accepts, a TypeError and a non-Error included, and gives up after `retries` with the original error', async () => {
    const op = flaky(10, () => 'not an Error');
    const result = retry(op.run, { firstDelayMs: 10, maxDelayMs: 10, retries: 3 }).catch((e: unknown) => e);
    await clock.tickAsync(1000);

    expect(await result).to.equal('not an Error');
    expect(op.calls).to.have.length(4);

    const typeErrors = flaky(2, () => new TypeError('fetch failed'));
    const retried = retry(typeErrors.run, { firstDelayMs: 10, maxDelayMs: 10 });
    await clock.tickAsync(1000);
    expect(await retried).to.equal('done');
  });

  it('ends a wait at once when the signal aborts, rejecting with the last failure', async () => {
    const stop = new AbortController();
    const op = flaky(Infinity);
    const result = retry(op.run, { firstDelayMs: 5000, maxDelayMs: 5000, signal: stop.signal }).catch((e: unknown) => e);
    await clock.tickAsync(5000 + 100);
    expect(op.calls).to.have.length(2);

    stop.abort();
    const outcome = await result;

    expect(outcome).to.be.instanceOf(Unavailable);
    expect(Date.now(), 'no further wait').to.equal(5100);
    await clock.tickAsync(60_000);
    expect(op.calls).to.have.length(2);
  });

  it('lets an attempt in progress when the signal aborts finish: its success is returned, its failure not retried', async () => {
    const stop = new AbortController();
    let release: (ok: boolean) => void = () => undefined;
    let attempts = 0;
    const run = () =>
      new Promise<string>((resolve, reject) => {
        attempts++;
        release = (ok) => (ok ? resolve('written') : reject(new Unavailable('down')));
      });

    const succeeding = retry(run, { firstDelayMs: 100, maxDelayMs: 100, signal: stop.signal });
    await clock.tickAsync(0);
    stop.abort();
    release(true);
    expect(await succeeding).to.equal('written');

    const failing = retry(run, { firstDelayMs: 100, maxDelayMs: 100, signal: stop.signal }).catch((e: unknown) => e);
    await clock.tickAsync(0);
    release(false);
    expect(await failing).to.be.instanceOf(Unavailable);
    await clock.tickAsync(1000);
    expect(attempts).to.equal(2);
  });
});

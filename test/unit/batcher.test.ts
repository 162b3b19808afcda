import { expect } from 'chai';
import sinon from 'sinon';
import { createBatcher } from '../../services/ingest/batcher.js';

const MAX_WAIT = 50;

/** A flush whose runs finish only when the test says so, recording what each one got. */
function controlledFlush() {
  const batches: number[][] = [];
  const finishers: Array<() => void> = [];
  let running = 0;
  let maxConcurrent = 0;
  return {
    batches,
    maxConcurrent: () => maxConcurrent,
    finishNext: () => finishers.shift()?.(),
    flush: (items: number[]) => {
      batches.push(items);
      running++;
      maxConcurrent = Math.max(maxConcurrent, running);
      return new Promise<void>((resolve) =>
        finishers.push(() => {
          running--;
          resolve();
        }),
      );
    },
  };
}

describe('batcher', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => {
    clock = sinon.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
  });
  afterEach(() => clock.restore());

  const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

  it('flushes a full batch at once, without waiting', async () => {
    const batches: number[][] = [];
    const batcher = createBatcher<number>({ maxSize: 3, maxWaitMs: MAX_WAIT, flush: async (b) => void batches.push(b), onError: () => undefined });

    for (const i of range(0, 3)) batcher.add(i);
    await clock.tickAsync(0);

    expect(batches).to.deep.equal([[0, 1, 2]]);
  });

  it('flushes a partial batch maxWaitMs after its first item, not before', async () => {
    const batches: number[][] = [];
    const batcher = createBatcher<number>({ maxSize: 10, maxWaitMs: MAX_WAIT, flush: async (b) => void batches.push(b), onError: () => undefined });

    batcher.add(1);
    await clock.tickAsync(MAX_WAIT - 10);
    batcher.add(2);
    await clock.tickAsync(9);
    const beforeDeadline = batches.length;
    await clock.tickAsync(1);

    expect(beforeDeadline).to.equal(0);
    expect(batches).to.deep.equal([[1, 2]]);
    expect(batcher.size()).to.equal(0);
  });

  it('splits a backlog larger than maxSize into batches of at most maxSize, in order', async () => {
    const batches: number[][] = [];
    const batcher = createBatcher<number>({ maxSize: 4, maxWaitMs: MAX_WAIT, flush: async (b) => void batches.push(b), onError: () => undefined });

    for (const i of range(0, 10)) batcher.add(i);
    await clock.tickAsync(MAX_WAIT);

    expect(batches).to.deep.equal([range(0, 4), range(4, 8), range(8, 10)]);
  });

  it('runs one flush at a time; items arriving meanwhile form the next batch', async () => {
    const flush = controlledFlush();
    const batcher = createBatcher<number>({ maxSize: 2, maxWaitMs: MAX_WAIT, flush: flush.flush, onError: () => undefined });

    batcher.add(0);
    batcher.add(1);
    batcher.add(2);
    batcher.add(3);
    batcher.add(4);
    await clock.tickAsync(10 * MAX_WAIT);
    const whileFirstRuns = flush.batches.length;
    flush.finishNext();
    await clock.tickAsync(0);
    flush.finishNext();
    await clock.tickAsync(MAX_WAIT);
    flush.finishNext();
    await clock.tickAsync(0);

    expect(whileFirstRuns).to.equal(1);
    expect(flush.batches).to.deep.equal([[0, 1], [2, 3], [4]]);
    expect(flush.maxConcurrent()).to.equal(1);
  });

  it('takes everything that waited during a flush as the next batch, up to maxBatch (group commit)', async () => {
    const flush = controlledFlush();
    const batcher = createBatcher<number>({ maxSize: 2, maxBatch: 5, maxWaitMs: MAX_WAIT, flush: flush.flush, onError: () => undefined });

    for (const i of range(0, 10)) batcher.add(i);
    await clock.tickAsync(0);
    flush.finishNext();
    await clock.tickAsync(0);
    flush.finishNext();
    await clock.tickAsync(0);
    flush.finishNext();
    await clock.tickAsync(MAX_WAIT);

    expect(flush.batches).to.deep.equal([range(0, 2), range(2, 7), range(7, 10)]);
    expect(flush.maxConcurrent()).to.equal(1);
  });

  it('reports a failed flush and goes on with the next batch', async () => {
    const errors: unknown[] = [];
    const batches: number[][] = [];
    const batcher = createBatcher<number>({
      maxSize: 1,
      maxWaitMs: MAX_WAIT,
      flush: async (b) => {
        batches.push(b);
        if (b[0] === 0) throw new Error('boom');
      },
      onError: (e) => errors.push(e),
    });

    batcher.add(0);
    batcher.add(1);
    await clock.tickAsync(0);

    expect(batches).to.deep.equal([[0], [1]]);
    expect(errors.map((e) => (e as Error).message)).to.deep.equal(['boom']);
  });

  it('on stop, hands back the waiting items and waits for the running flush', async () => {
    const flush = controlledFlush();
    const batcher = createBatcher<number>({ maxSize: 2, maxWaitMs: MAX_WAIT, flush: flush.flush, onError: () => undefined });
    for (const i of range(0, 5)) batcher.add(i);
    await clock.tickAsync(0);

    let stopped: number[] | null = null;
    const stopping = batcher.stop().then((dropped) => (stopped = dropped));
    await clock.tickAsync(0);
    const beforeFlushEnds = stopped;
    flush.finishNext();
    await stopping;

    expect(beforeFlushEnds).to.equal(null);
    expect(stopped).to.deep.equal([2, 3, 4]);
    await clock.tickAsync(10 * MAX_WAIT);
    expect(flush.batches, 'nothing flushed after stop').to.deep.equal([[0, 1]]);
  });

  it('drains everything waiting without waiting for the timer', async () => {
    const batches: number[][] = [];
    const batcher = createBatcher<number>({ maxSize: 2, maxWaitMs: 60_000, flush: async (b) => void batches.push(b), onError: () => undefined });
    for (const i of range(0, 5)) batcher.add(i);

    await batcher.drain();

    expect(batches).to.deep.equal([[0, 1], [2, 3], [4]]);
  });
});

import { expect } from 'chai';
import sinon from 'sinon';
import { createBatcher } from '../../services/ingest/batcher.js';

const MAX_WAIT = 50;

/** A flush whose runs finish only when the test says so (in any order), recording what each one got. */
function controlledFlush<T = number>() {
  const batches: T[][] = [];
  const finishers: Array<(() => void) | null> = [];
  let running = 0;
  let maxConcurrent = 0;
  return {
    batches,
    running: () => running,
    maxConcurrent: () => maxConcurrent,
    finishNext: () => finishers.find((f) => f !== null)?.(),
    /** Finishes the run of batches[index]. */
    finish: (index: number) => finishers[index]?.(),
    flush: (items: T[]) => {
      batches.push(items);
      const index = finishers.length;
      running++;
      maxConcurrent = Math.max(maxConcurrent, running);
      return new Promise<void>((resolve) =>
        finishers.push(() => {
          finishers[index] = null;
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

  describe('several flushes at once', () => {
    it('starts a further full batch while others run, up to `concurrency` flushes', async () => {
      const flush = controlledFlush();
      const batcher = createBatcher<number>({ maxSize: 2, maxWaitMs: MAX_WAIT, concurrency: 3, flush: flush.flush, onError: () => undefined });

      for (const i of range(0, 9)) batcher.add(i);
      await clock.tickAsync(0);
      const atOnce = flush.batches.length;
      flush.finish(1);
      await clock.tickAsync(0);

      expect(atOnce).to.equal(3);
      expect(flush.batches, 'a freed slot takes the next full batch').to.deep.equal([range(0, 2), range(2, 4), range(4, 6), range(6, 8)]);
      expect(flush.maxConcurrent()).to.equal(3);
      expect(batcher.outstanding(), '3 batches of 2 running, 1 waiting').to.equal(7);
    });

    it('starts a partial batch only once nothing runs, so that small batches do not crowd the slots', async () => {
      const flush = controlledFlush();
      const batcher = createBatcher<number>({ maxSize: 3, maxWaitMs: MAX_WAIT, concurrency: 4, flush: flush.flush, onError: () => undefined });

      for (const i of range(0, 4)) batcher.add(i);
      await clock.tickAsync(10 * MAX_WAIT);
      const whileOneRuns = flush.batches.length;
      flush.finishNext();
      await clock.tickAsync(MAX_WAIT - 1);
      const beforeItsWait = flush.batches.length;
      await clock.tickAsync(1);

      expect(whileOneRuns).to.equal(1);
      expect(beforeItsWait).to.equal(1);
      expect(flush.batches).to.deep.equal([range(0, 3), [3]]);
    });

    it('gives each key to one flush at a time: its later items wait, in order, for the next batch, while other keys go on', async () => {
      const flush = controlledFlush<string>();
      const batcher = createBatcher<string>({
        maxSize: 2,
        maxWaitMs: MAX_WAIT,
        concurrency: 2,
        keyOf: (item) => item.split(':')[0]!,
        flush: flush.flush,
        onError: () => undefined,
      });

      batcher.add('a:1');
      batcher.add('b:1');
      batcher.add('a:2');
      batcher.add('a:3');
      batcher.add('c:1');
      await clock.tickAsync(0);
      const besideTheFirst = flush.batches.length;
      batcher.add('d:1');
      await clock.tickAsync(0);
      const afterD = [...flush.batches];
      flush.finish(0);
      await clock.tickAsync(0);
      flush.finish(1);
      await clock.tickAsync(MAX_WAIT);

      expect(besideTheFirst, 'only c:1 could go beside a and b').to.equal(1);
      expect(afterD).to.deep.equal([
        ['a:1', 'b:1'],
        ['c:1', 'd:1'],
      ]);
      expect(flush.batches[2], "a's items together, in their order").to.deep.equal(['a:2', 'a:3']);
      expect(flush.batches).to.have.length(3);
    });

    it('takes up to maxBatch keys, each with all its waiting items (they coalesce)', async () => {
      const flush = controlledFlush<string>();
      const batcher = createBatcher<string>({
        maxSize: 2,
        maxBatch: 2,
        maxWaitMs: MAX_WAIT,
        concurrency: 2,
        keyOf: (item) => item.split(':')[0]!,
        flush: flush.flush,
        onError: () => undefined,
      });
      for (const item of ['a:1', 'b:1', 'c:1', 'd:1']) batcher.add(item);
      // Both slots busy: these wait, a's and c's held.
      for (const item of ['a:2', 'e:1', 'c:2', 'f:1', 'e:2', 'g:1']) batcher.add(item);
      await clock.tickAsync(0);
      flush.finish(0);
      await clock.tickAsync(0);

      expect(flush.batches.slice(0, 2)).to.deep.equal([
        ['a:1', 'b:1'],
        ['c:1', 'd:1'],
      ]);
      expect(flush.batches[2], 'a and e, two keys with all their items').to.deep.equal(['a:2', 'e:1', 'e:2']);
      expect(batcher.size()).to.equal(3);
      expect(batcher.outstanding()).to.equal(3 + 2 + 3);
    });

    it('reports a flush that throws at once and frees its keys', async () => {
      const errors: unknown[] = [];
      const batches: string[][] = [];
      const batcher = createBatcher<string>({
        maxSize: 1,
        maxWaitMs: MAX_WAIT,
        concurrency: 2,
        keyOf: (item) => item.split(':')[0]!,
        flush: (b) => {
          batches.push(b);
          if (b[0] === 'a:1') throw new Error('at once');
          return Promise.resolve();
        },
        onError: (e) => errors.push(e),
      });

      batcher.add('a:1');
      batcher.add('a:2');
      await clock.tickAsync(0);

      expect(errors.map((e) => (e as Error).message)).to.deep.equal(['at once']);
      expect(batches).to.deep.equal([['a:1'], ['a:2']]);
    });

    it('on stop, hands back the waiting items, held ones included, and waits for every running flush', async () => {
      const flush = controlledFlush<string>();
      const batcher = createBatcher<string>({
        maxSize: 1,
        maxWaitMs: MAX_WAIT,
        concurrency: 2,
        keyOf: (item) => item.split(':')[0]!,
        flush: flush.flush,
        onError: () => undefined,
      });
      for (const item of ['a:1', 'b:1', 'a:2', 'c:1']) batcher.add(item);
      await clock.tickAsync(0);

      let stopped: string[] | null = null;
      const stopping = batcher.stop().then((dropped) => (stopped = dropped));
      flush.finish(1);
      await clock.tickAsync(0);
      const withOneRunning = stopped;
      flush.finish(0);
      await stopping;
      await clock.tickAsync(10 * MAX_WAIT);

      expect(withOneRunning).to.equal(null);
      expect(stopped).to.deep.equal(['a:2', 'c:1']);
      expect(flush.batches, 'nothing flushed after stop').to.deep.equal([['a:1'], ['b:1']]);
    });

    it('drains everything, held items after the flush that holds their key, up to `concurrency` at once', async () => {
      const batches: string[][] = [];
      let running = 0;
      let maxRunning = 0;
      const batcher = createBatcher<string>({
        maxSize: 2,
        maxWaitMs: 60_000,
        concurrency: 2,
        keyOf: (item) => item.split(':')[0]!,
        flush: async (b) => {
          batches.push(b);
          maxRunning = Math.max(maxRunning, ++running);
          await Promise.resolve();
          running--;
        },
        onError: () => undefined,
      });
      for (const item of ['a:1', 'b:1', 'a:2', 'c:1', 'd:1', 'e:1']) batcher.add(item);

      await batcher.drain();

      expect(batches.flat().sort()).to.deep.equal(['a:1', 'a:2', 'b:1', 'c:1', 'd:1', 'e:1']);
      expect(batches.findIndex((b) => b.includes('a:2'))).to.be.greaterThan(batches.findIndex((b) => b.includes('a:1')));
      expect(maxRunning).to.equal(2);
      expect(batcher.outstanding()).to.equal(0);
    });
  });
});

/**
 * Gathers items and hands them to `flush` in batches: when `maxSize` items are waiting, or `maxWaitMs`
 * after the first one arrived. One flush runs at a time; items that arrive meanwhile form the next batch.
 * Memory stays bounded because the broker's prefetch bounds the items that can be waiting.
 */
export function createBatcher<T>(options: { maxSize: number; maxWaitMs: number; flush: (items: T[]) => Promise<void>; onError: (error: unknown) => void }) {
  let pending: T[] = [];
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;

  function schedule(): void {
    if (running) return;
    if (pending.length >= options.maxSize) {
      run();
    } else if (pending.length > 0 && !timer) {
      timer = setTimeout(() => {
        timer = null;
        run();
      }, options.maxWaitMs);
    }
  }

  function run(): void {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    if (running || pending.length === 0) return;
    const batch = pending.slice(0, options.maxSize);
    pending = pending.slice(batch.length);
    running = options
      .flush(batch)
      .catch(options.onError)
      .finally(() => {
        running = null;
        schedule();
      });
  }

  return {
    add(item: T): void {
      pending.push(item);
      schedule();
    },
    size: () => pending.length,
    /** Drops waiting items (their deliveries are redelivered by the broker) and waits for a running flush. */
    async stop(): Promise<T[]> {
      if (timer) clearTimeout(timer);
      timer = null;
      const dropped = pending;
      pending = [];
      await running;
      return dropped;
    },
    /** Flushes everything waiting now and resolves when done. */
    async drain(): Promise<void> {
      while (pending.length || running) {
        if (running) await running;
        else run();
      }
    },
  };
}

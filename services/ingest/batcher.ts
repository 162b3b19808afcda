/**
 * Gathers items and hands them to `flush` in batches: when `maxSize` items are waiting, or `maxWaitMs`
 * after the first one arrived. One flush runs at a time; the items that arrived meanwhile form the next batch,
 * up to `maxBatch` of them (group commit): when the store falls behind, batches grow, and since the ingest writes
 * each node once per batch, a node's heartbeats coalesce into one write instead of queueing one write each.
 * Memory stays bounded because the broker's prefetch bounds the items that can be waiting.
 */
export function createBatcher<T>(options: { maxSize: number; maxBatch?: number; maxWaitMs: number; flush: (items: T[]) => Promise<void>; onError: (error: unknown) => void }) {
  const maxBatch = Math.max(options.maxSize, options.maxBatch ?? options.maxSize);
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
    const batch = pending.slice(0, maxBatch);
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

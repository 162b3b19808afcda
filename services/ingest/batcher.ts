export interface BatcherOptions<T> {
  /** A batch starts once this many items wait (and a flush may start), or `maxWaitMs` after the first one. */
  maxSize: number;
  /** The most keys (with all their waiting items) one batch takes; default `maxSize`. */
  maxBatch?: number;
  maxWaitMs: number;
  /** Flushes that may run at once (default 1). */
  concurrency?: number;
  /**
   * Items of one key are flushed in the order they arrived, one flush at a time: while a running flush holds a
   * key, its later items wait for the next batch after it. Without it every item is a key of its own.
   */
  keyOf?: (item: T) => string;
  flush: (items: T[]) => Promise<void>;
  onError: (error: unknown) => void;
}

/**
 * Gathers items and hands them to `flush` in batches: when `maxSize` items are waiting, or `maxWaitMs` after the
 * first one arrived. Up to `concurrency` flushes run at once: a further one starts while others run only once
 * `maxSize` items it can take are waiting (a partial batch waits until nothing runs), so the flush of one batch
 * overlaps the next one's instead of waiting for it. Each batch takes what waits, oldest first, up to `maxBatch`
 * keys with all their waiting items (group commit): when the flushes fall behind, a key's items gather while its
 * flush runs and go out together in the next batch, and since the ingest writes each node once per batch, a node's
 * heartbeats coalesce into one write instead of queueing one write each. A key is in one flush at a time, so its
 * items are flushed in their order and a batch never overtakes an earlier one of the same key.
 * Memory stays bounded because the broker's prefetch bounds the items that can be waiting or in flushes.
 */
export function createBatcher<T>(options: BatcherOptions<T>) {
  const maxBatch = Math.max(options.maxSize, options.maxBatch ?? options.maxSize);
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
  const keyOf = options.keyOf;
  /** Waiting items in arrival order, each with its key (null: a key of its own). */
  let pending: Array<{ item: T; key: string | null }> = [];
  /** Waiting items whose key no running flush holds: what a new batch can take. */
  let available = 0;
  /** Keys held by running flushes (each by one). */
  const held = new Set<string>();
  const running = new Set<Promise<void>>();
  /** Items in running flushes. */
  let flushing = 0;
  let timer: NodeJS.Timeout | null = null;

  const free = (key: string | null) => key === null || !held.has(key);

  function clearTimer(): void {
    if (timer) clearTimeout(timer);
    timer = null;
  }

  function schedule(): void {
    // Full batches, while a flush may start.
    while (running.size < concurrency && available >= options.maxSize) start();
    // A partial batch only when nothing runs: a running flush's end schedules again.
    if (running.size === 0 && pending.length > 0 && !timer) {
      timer = setTimeout(() => {
        timer = null;
        start();
        schedule();
      }, options.maxWaitMs);
    }
  }

  /** Starts a flush of what a batch can take now, up to maxBatch keys; false when no flush could start. */
  function start(): boolean {
    if (running.size >= concurrency || available === 0) return false;
    clearTimer();
    const batch: T[] = [];
    const keys = new Set<string>();
    const rest: typeof pending = [];
    let taken = 0;
    available = 0;
    for (const entry of pending) {
      const { key } = entry;
      if (key !== null && held.has(key)) {
        rest.push(entry);
      } else if (key !== null && keys.has(key)) {
        batch.push(entry.item);
      } else if (taken < maxBatch) {
        taken++;
        if (key !== null) keys.add(key);
        batch.push(entry.item);
      } else {
        rest.push(entry);
        available++;
      }
    }
    for (const key of keys) held.add(key);
    pending = rest;
    flushing += batch.length;
    // A flush that throws at once is reported like one that rejects.
    const run: Promise<void> = new Promise<void>((resolve) => resolve(options.flush(batch))).catch(options.onError).finally(() => {
      running.delete(run);
      flushing -= batch.length;
      // Its keys are free again: their waiting items can be taken.
      for (const key of keys) held.delete(key);
      if (keys.size) available = pending.reduce((n, entry) => n + (free(entry.key) ? 1 : 0), 0);
      schedule();
    });
    running.add(run);
    return true;
  }

  return {
    add(item: T): void {
      const key = keyOf ? keyOf(item) : null;
      pending.push({ item, key });
      if (free(key)) available++;
      schedule();
    },
    /** Items waiting (not in a running flush). */
    size: () => pending.length,
    /** Items waiting or in running flushes (a flush's own batch included, from its start). */
    outstanding: () => pending.length + flushing,
    /** Drops waiting items (their deliveries are redelivered by the broker) and waits for every running flush. */
    async stop(): Promise<T[]> {
      clearTimer();
      const dropped = pending.map((entry) => entry.item);
      pending = [];
      available = 0;
      while (running.size) await Promise.all(running);
      return dropped;
    },
    /** Flushes everything waiting now (up to `concurrency` batches at once) and resolves when done. */
    async drain(): Promise<void> {
      while (pending.length || running.size) {
        if (!start()) await Promise.race(running);
      }
    },
  };
}

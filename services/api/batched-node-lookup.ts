import type { NodeRecord } from '../../shared/store/node-record.js';
import type { NodeStore } from '../../shared/store/node-store.js';

/**
 * A fact about nodes read without one store read per request: found nodes are cached for `ttlMs` (at most
 * `maxEntries`), and lookups that arrive together share one read. Nodes the store does not have are not
 * cached, so a registration is seen at the next lookup. Resolves to `project(node)`, or undefined.
 */
export function createBatchedNodeLookup<T>(options: {
  store: NodeStore;
  ttlMs: number;
  project: (node: NodeRecord) => T;
  now?: () => number;
  maxEntries?: number;
  batchWindowMs?: number;
}) {
  const now = options.now ?? Date.now;
  const maxEntries = options.maxEntries ?? 100_000;
  const cache = new Map<string, { value: T; until: number }>();
  let waiting = new Map<string, Array<{ resolve: (v: T | undefined) => void; reject: (e: unknown) => void }>>();
  let timer: NodeJS.Timeout | null = null;

  function set(nodeId: string, value: T): void {
    if (cache.size >= maxEntries) cache.clear();
    cache.set(nodeId, { value, until: now() + options.ttlMs });
  }

  async function flush(): Promise<void> {
    timer = null;
    const batch = waiting;
    waiting = new Map();
    try {
      const found = await options.store.getMany([...batch.keys()]);
      for (const [nodeId, callers] of batch) {
        const node = found.get(nodeId);
        const value = node ? options.project(node) : undefined;
        if (node) set(nodeId, value as T);
        for (const c of callers) c.resolve(value);
      }
    } catch (error) {
      for (const callers of batch.values()) for (const c of callers) c.reject(error);
    }
  }

  return {
    /** `fresh` skips the cache (a registration checks the stored credential itself). */
    get(nodeId: string, fresh = false): Promise<T | undefined> {
      const hit = cache.get(nodeId);
      if (!fresh && hit && hit.until > now()) return Promise.resolve(hit.value);
      return new Promise((resolve, reject) => {
        const callers = waiting.get(nodeId);
        if (callers) callers.push({ resolve, reject });
        else waiting.set(nodeId, [{ resolve, reject }]);
        // flush settles every waiter itself, also on a store error: nothing is left to await here.
        timer ??= setTimeout(() => void flush(), options.batchWindowMs ?? 2);
      });
    },
    set,
    forget(nodeId: string): void {
      cache.delete(nodeId);
    },
  };
}

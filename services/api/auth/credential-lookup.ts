import type { NodeStore } from '../../../shared/store/node-store.js';

/**
 * The credentialHash of nodes for the HTTP auth check, without one store read per heartbeat: answers are
 * cached for `ttlMs` (bounded), and lookups that arrive together share one read. The ingest checks again
 * against the stored node, so a stale answer can delay a node, never let a wrong credential through to the store.
 * Resolves to the hash, null (node without credential) or undefined (not registered).
 */
export function createCredentialLookup(options: { store: NodeStore; ttlMs: number; now: () => number; maxEntries?: number; batchWindowMs?: number }) {
  const cache = new Map<string, { hash: string | null | undefined; until: number }>();
  const maxEntries = options.maxEntries ?? 100_000;
  let waiting = new Map<string, Array<{ resolve: (v: string | null | undefined) => void; reject: (e: unknown) => void }>>();
  let timer: NodeJS.Timeout | null = null;

  async function flush(): Promise<void> {
    timer = null;
    const batch = waiting;
    waiting = new Map();
    try {
      const found = await options.store.getMany([...batch.keys()]);
      const until = options.now() + options.ttlMs;
      for (const [nodeId, callers] of batch) {
        const hash = found.has(nodeId) ? (found.get(nodeId)!.credentialHash ?? null) : undefined;
        // Unknown nodes are not cached: a registration makes them known at once.
        if (hash !== undefined) {
          if (cache.size >= maxEntries) cache.clear();
          cache.set(nodeId, { hash, until });
        }
        for (const c of callers) c.resolve(hash);
      }
    } catch (error) {
      for (const callers of batch.values()) for (const c of callers) c.reject(error);
    }
  }

  return {
    get(nodeId: string, fresh = false): Promise<string | null | undefined> {
      const hit = cache.get(nodeId);
      if (!fresh && hit && hit.until > options.now()) return Promise.resolve(hit.hash);
      return new Promise((resolve, reject) => {
        const callers = waiting.get(nodeId);
        if (callers) callers.push({ resolve, reject });
        else waiting.set(nodeId, [{ resolve, reject }]);
        timer ??= setTimeout(() => void flush(), options.batchWindowMs ?? 2);
      });
    },
    forget(nodeId: string): void {
      cache.delete(nodeId);
    },
  };
}

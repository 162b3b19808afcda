import type { NodeStore } from '../../shared/store/node-store.js';

/**
 * Answers "is this node registered?" for the stats endpoint without one store read per request:
 * positive answers are cached for `ttlMs`, and lookups that arrive together are batched into one read.
 * Registrations this api accepted count at once, so an agent may post stats right after registering.
 */
export function createKnownNodes(options: { store: NodeStore; ttlMs: number; now?: () => number; batchWindowMs?: number }) {
  const now = options.now ?? Date.now;
  const known = new Map<string, number>();
  let waiting = new Map<string, Array<{ resolve: (v: boolean) => void; reject: (e: unknown) => void }>>();
  let timer: NodeJS.Timeout | null = null;

  async function flush(): Promise<void> {
    timer = null;
    const batch = waiting;
    waiting = new Map();
    try {
      const found = await options.store.getMany([...batch.keys()]);
      for (const [id, callers] of batch) {
        const isKnown = found.has(id);
        if (isKnown) remember(id);
        for (const c of callers) c.resolve(isKnown);
      }
    } catch (error) {
      for (const callers of batch.values()) for (const c of callers) c.reject(error);
    }
  }

  function remember(nodeId: string): void {
    if (known.size > 200_000) known.clear();
    known.set(nodeId, now() + options.ttlMs);
  }

  return {
    remember,
    forget(nodeId: string) {
      known.delete(nodeId);
    },
    isKnown(nodeId: string): Promise<boolean> {
      const until = known.get(nodeId);
      if (until !== undefined && until > now()) return Promise.resolve(true);
      return new Promise((resolve, reject) => {
        const callers = waiting.get(nodeId);
        if (callers) callers.push({ resolve, reject });
        else waiting.set(nodeId, [{ resolve, reject }]);
        timer ??= setTimeout(() => void flush(), options.batchWindowMs ?? 2);
      });
    },
  };
}

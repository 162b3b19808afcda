import type { Logger } from '../../../shared/logger.js';
import type { NodeRecord } from '../../../shared/store/node-record.js';
import type { NodeStore } from '../../../shared/store/node-store.js';

export interface NodeChanges {
  changed: NodeRecord[];
  removed: string[];
}

export interface NodeWatchOptions {
  store: Pick<NodeStore, 'list'>;
  log: Logger;
  pollMs: number;
  onChanges(changes: NodeChanges): void;
}

export interface NodeWatch {
  /**
   * Lists the nodes, reports what changed since the last look through onChanges, then calls `then` with
   * the full list in the same step, so a page added there misses no change. Runs one at a time.
   */
  refresh(then?: (nodes: NodeRecord[]) => void): Promise<void>;
  /** Polls every pollMs while active (at least one page connected); forgets everything when not. */
  setActive(active: boolean): void;
  close(): void;
}

/** What a heartbeat or status change alters; the stats history grows with heartbeats, so it needs no key of its own. */
function changeKey(node: NodeRecord): string {
  const time = (d: Date | null | undefined) => (d ? new Date(d).getTime() : '');
  return `${time(node.lastHeartbeat)}|${node.status}|${time(node.stats?.reportedAt)}`;
}

/**
 * Heartbeats produce no events, so the dashboard learns about them by polling the store, and only while
 * somebody is watching.
 */
export function createNodeWatch(options: NodeWatchOptions): NodeWatch {
  const { store, log, pollMs } = options;
  let seen: Map<string, string> | null = null;
  let timer: NodeJS.Timeout | null = null;
  let queue: Promise<void> = Promise.resolve();
  let pending = 0;
  let failing = false;

  async function look(then?: (nodes: NodeRecord[]) => void): Promise<void> {
    let nodes: NodeRecord[];
    try {
      nodes = await store.list();
      if (failing) log.info('Dashboard reads the node store again');
      failing = false;
    } catch (error) {
      if (!failing) log.warn(`Dashboard cannot read the node store: ${(error as Error).message}`);
      failing = true;
      throw error;
    }
    const next = new Map(nodes.map((n) => [n.nodeId, changeKey(n)]));
    if (seen) {
      const changed = nodes.filter((n) => seen!.get(n.nodeId) !== next.get(n.nodeId));
      const removed = [...seen.keys()].filter((id) => !next.has(id));
      if (changed.length || removed.length) options.onChanges({ changed, removed });
    }
    seen = next;
    then?.(nodes);
  }

  function enqueue(then?: (nodes: NodeRecord[]) => void): Promise<void> {
    pending++;
    const run = queue.then(() => look(then)).finally(() => pending--);
    queue = run.catch(() => undefined);
    return run;
  }

  return {
    refresh: (then) => enqueue(then),
    setActive(active) {
      if (active && !timer) {
        timer = setInterval(() => {
          // A slow store must not pile up polls.
          if (pending === 0) enqueue().catch(() => undefined);
        }, pollMs);
        timer.unref();
      } else if (!active && timer) {
        clearInterval(timer);
        timer = null;
        seen = null;
      }
    },
    close() {
      if (timer) clearInterval(timer);
      timer = null;
      seen = null;
    },
  };
}

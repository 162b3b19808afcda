import type { Clock } from '../../shared/clock.js';
import type { NodeStore } from '../../shared/store/node-store.js';

/**
 * The ingest's own heartbeat (semantics §5.4): a record in the store, refreshed every `intervalMs`, saying
 * since when this instance has been consuming from the broker and writing to the store without a break.
 * The sweeper marks nobody OFFLINE for time not covered by such a record.
 */
export function createLivenessReporter(options: { store: NodeStore; clock: Clock; instanceId: string; intervalMs: number; oldestInFlight?: () => number | null }) {
  const { store, clock, instanceId } = options;
  let consuming = false;
  let storeHealthy = true;
  let healthySince: number | null = null;
  let timer: NodeJS.Timeout | null = null;
  let lagMs = 0;

  function update(): void {
    const healthy = consuming && storeHealthy;
    if (healthy && healthySince === null) healthySince = clock.now();
    if (!healthy) healthySince = null;
  }

  async function report(): Promise<void> {
    update();
    try {
      // Lag: the oldest message this instance holds but has not stored yet, or the oldest it stored since
      // the last report, whichever is older. A slow batch shows up here while it is still running.
      const oldest = options.oldestInFlight?.() ?? null;
      const lag = Math.max(lagMs, oldest === null ? 0 : clock.now() - oldest);
      lagMs = 0;
      await store.recordIngestLiveness({ instanceId, healthySince: healthySince === null ? null : new Date(healthySince), lastSeenAt: new Date(clock.now()), lagMs: lag });
    } catch {
      // The store is down: the record goes stale, which is exactly what the sweeper must see.
      storeHealthy = false;
      update();
    }
  }

  return {
    setConsuming(value: boolean) {
      consuming = value;
      update();
    },
    setStoreHealthy(value: boolean) {
      storeHealthy = value;
      update();
    },
    healthySince: () => healthySince,
    /** Notes how old a stored message was when it was stored; the largest since the last report is reported. */
    noteLag(ms: number) {
      if (ms > lagMs) lagMs = ms;
    },
    isHealthy: () => consuming && storeHealthy,
    start() {
      void report();
      timer = setInterval(() => void report(), options.intervalMs);
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = null;
      consuming = false;
      update();
      // A clean stop says so at once, so the sweeper does not wait for the record to go stale.
      await store.recordIngestLiveness({ instanceId, healthySince: null, lastSeenAt: new Date(clock.now()), lagMs: 0 }).catch(() => undefined);
    },
  };
}

import type { Clock } from '../../shared/clock.js';
import type { NodeStore } from '../../shared/store/node-store.js';

/**
 * The ingest's own heartbeat (semantics §5.4): a record in the store, refreshed every `intervalMs`, saying
 * since when this instance has been consuming from the broker and writing to the store without a break.
 * The sweeper marks nobody OFFLINE for time not covered by such a record.
 */
export function createLivenessReporter(options: { store: NodeStore; clock: Clock; instanceId: string; intervalMs: number }) {
  const { store, clock, instanceId } = options;
  let consuming = false;
  let storeHealthy = true;
  let healthySince: number | null = null;
  let timer: NodeJS.Timeout | null = null;

  function update(): void {
    const healthy = consuming && storeHealthy;
    if (healthy && healthySince === null) healthySince = clock.now();
    if (!healthy) healthySince = null;
  }

  async function report(): Promise<void> {
    update();
    try {
      await store.recordIngestLiveness({ instanceId, healthySince: healthySince === null ? null : new Date(healthySince), lastSeenAt: new Date(clock.now()) });
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
      await store.recordIngestLiveness({ instanceId, healthySince: null, lastSeenAt: new Date(clock.now()) }).catch(() => undefined);
    },
  };
}

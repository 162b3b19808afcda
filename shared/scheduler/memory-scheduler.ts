import type { Scheduler } from './scheduler.js';

/** In-process scheduler: a timer per job that skips a tick while the previous run is still going. */
export function createMemoryScheduler(options: { onError?: (name: string, error: unknown) => void } = {}): Scheduler {
  const timers: NodeJS.Timeout[] = [];
  return {
    async every(name, intervalMs, handler) {
      let running = false;
      const tick = () => {
        if (running) return;
        running = true;
        handler()
          .catch((error) => options.onError?.(name, error))
          .finally(() => {
            running = false;
          });
      };
      timers.push(setInterval(tick, intervalMs));
      tick();
    },
    async isReady() {
      return true;
    },
    async close() {
      for (const t of timers) clearInterval(t);
      timers.length = 0;
    },
  };
}

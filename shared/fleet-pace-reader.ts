import type { Clock } from './clock.js';
import type { FleetPace, PaceSettings } from './domain/heartbeat-pace.js';
import type { NodeStore } from './store/node-store.js';

/** How long the api and the ingest keep the fleet's pace before reading it again (it moves at most once a minute). */
export const FLEET_PACE_CACHE_MS = 5000;

export interface FleetPaceReader {
  /** The fleet's pace, read at most once per FLEET_PACE_CACHE_MS; null before the sweeper set one, or with adaptation off. */
  current(): Promise<FleetPace | null>;
}

/**
 * The fleet's heartbeat pace as the api and the ingest read it (the sweeper computes it): cached, read by one
 * store call at a time, and never failing a request or a batch: when the store does not answer, the last pace
 * read stays in use until it does.
 */
export function createFleetPaceReader(options: { store: NodeStore; clock: Clock; settings: PaceSettings; cacheMs?: number }): FleetPaceReader {
  const { store, clock, settings } = options;
  const cacheMs = options.cacheMs ?? FLEET_PACE_CACHE_MS;
  let cached: FleetPace | null = null;
  let until = -Infinity;
  let reading: Promise<FleetPace | null> | null = null;
  return {
    current() {
      if (settings.maxRate <= 0) return Promise.resolve(null);
      if (clock.now() < until) return Promise.resolve(cached);
      reading ??= store
        .fleetPace()
        .then(
          (pace) => (cached = pace),
          () => cached,
        )
        .finally(() => {
          until = clock.now() + cacheMs;
          reading = null;
        });
      return reading;
    },
  };
}

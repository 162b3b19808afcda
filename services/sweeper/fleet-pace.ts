import type { Clock } from '../../shared/clock.js';
import { expectedRate, nextFleetPace, paceCountDue, type FleetPace, type PaceSettings } from '../../shared/domain/heartbeat-pace.js';
import type { Logger } from '../../shared/logger.js';
import type { Metrics } from '../../shared/metrics.js';
import type { NodeStore } from '../../shared/store/node-store.js';

/**
 * Keeps the fleet's heartbeat pace (docs/architecture.md, "The heartbeat pace"): after a sweep, at most once
 * per HEARTBEAT_PACE_MIN_CHANGE_MS, counts the ONLINE nodes with one count query and stores the pace the rules
 * of shared/domain/heartbeat-pace.ts give, for the api and the ingest to tell agents. One sweep at a time runs
 * cluster-wide, so one process computes it. Otherwise one small read per sweep, for the gauges.
 */
export function createFleetPaceKeeper(deps: { store: NodeStore; clock: Clock; log: Logger; metrics: Metrics; settings: PaceSettings }) {
  const { store, clock, log, metrics, settings } = deps;
  return async function keepPace(): Promise<FleetPace | null> {
    if (settings.maxRate <= 0) return null;
    const now = clock.now();
    const current = await store.fleetPace();
    let pace = current;
    if (paceCountDue(current, now, settings)) {
      const online = await store.countOnline();
      pace = nextFleetPace(current, online, now, settings);
      await store.setFleetPace(pace);
      if (current === null || pace.intervalSeconds !== current.intervalSeconds) {
        log.info(`Heartbeat pace: every ${pace.intervalSeconds} s for a fleet of ${pace.fleetSize} ONLINE nodes (at most ${settings.maxRate} heartbeats/s)`, {
          intervalSeconds: pace.intervalSeconds,
          fleetSize: pace.fleetSize,
        });
      }
    }
    if (pace) {
      metrics.heartbeatInterval.set(pace.intervalSeconds);
      metrics.fleetHeartbeatRate.set(expectedRate(pace));
    }
    return pace;
  };
}

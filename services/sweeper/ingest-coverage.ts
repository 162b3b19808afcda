import type { IngestLiveness } from '../../shared/store/node-record.js';

export interface Coverage {
  /** Some ingest is consuming and storing now. */
  healthy: boolean;
  /** Start of the unbroken period in which some ingest was healthy (semantics §5.4). */
  healthySince: number | null;
  /** Up to when the ingest path vouches for having recorded heartbeats. */
  seenUntil: number | null;
}

/**
 * Reads the ingest liveness records: an instance counts while its record is fresher than `staleMs` and it
 * reports a healthySince. With several healthy instances the earliest healthySince wins (any one of them
 * consumed the shared queue throughout).
 */
export function ingestCoverage(records: IngestLiveness[], now: number, staleMs: number): Coverage {
  let healthySince: number | null = null;
  let seenUntil: number | null = null;
  let lag = 0;
  for (const r of records) {
    const seen = r.lastSeenAt.getTime();
    if (now - seen > staleMs || r.healthySince === null) continue;
    const since = r.healthySince.getTime();
    healthySince = healthySince === null ? since : Math.min(healthySince, since);
    seenUntil = seenUntil === null ? seen : Math.max(seenUntil, seen);
    lag = Math.max(lag, r.lagMs ?? 0);
  }
  // A lagging ingest has recorded heartbeats only up to (report time - lag).
  return { healthy: healthySince !== null, healthySince, seenUntil: seenUntil === null ? null : Math.min(seenUntil, now) - lag };
}

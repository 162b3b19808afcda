import type { ClusterGuardState } from '../store/node-record.js';

/** The mass-silence guard's settings (MASS_SILENCE_* in docs/reference.md). */
export interface MassSilenceSettings {
  enabled: boolean;
  /** Trips when more than this share of the ONLINE nodes are silent at once. */
  share: number;
  /** ... and at least this many nodes are ONLINE. */
  minNodes: number;
  /** How long the silent nodes are held ONLINE once it tripped. */
  holdMs: number;
}

/**
 * How many ONLINE nodes a sweep must count to decide, given `silent` expired nodes: 0 when no count can trip
 * the guard (silent ≤ share × minNodes), otherwise the count at which the answer stops changing (with more ONLINE
 * nodes than silent / share the silent ones are not more than `share` of them), so the store can stop there.
 */
export function onlineCountNeeded(silent: number, settings: MassSilenceSettings): number {
  if (!settings.enabled || silent <= settings.share * settings.minNodes) return 0;
  return Math.floor(silent / settings.share) + 1;
}

export type MassSilenceDecision =
  /** Mark the expired nodes; `release`: the guard was holding and lets go (store the cleared state). */
  | { action: 'proceed'; release: boolean }
  /** Hold them ONLINE; `trip`: the guard trips now (store the state, publish cluster.degraded once). */
  | { action: 'hold'; trip: { heldSince: Date; heldUntil: Date } | null };

/**
 * The mass-silence guard, decided apart from its effects (like Kubernetes' zone state): when more than `share`
 * of at least `minNodes` ONLINE nodes fall silent at once, the fault is more likely the orchestrator's or the
 * network's than every host's, so they are held ONLINE for `holdMs` after the guard tripped (shared by every
 * sweeper replica through `state`), then marked as usual. `online` is the count asked for by
 * onlineCountNeeded (possibly capped there), or 0 when none was needed.
 */
export function decideMassSilence(silent: number, online: number, state: ClusterGuardState, now: number, settings: MassSilenceSettings): MassSilenceDecision {
  const massive = settings.enabled && online >= settings.minNodes && silent / online > settings.share;
  if (!massive) return { action: 'proceed', release: state.heldSince !== null };
  if (!state.heldSince) return { action: 'hold', trip: { heldSince: new Date(now), heldUntil: new Date(now + settings.holdMs) } };
  return now - state.heldSince.getTime() >= settings.holdMs ? { action: 'proceed', release: false } : { action: 'hold', trip: null };
}

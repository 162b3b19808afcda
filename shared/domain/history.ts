import type { HistoryPoint } from '../store/node-record.js';

export interface HistorySettings {
  /** Points kept per node; 0 keeps none. */
  points: number;
  /** Width of one step: at most one point per step is kept. */
  resolutionMs: number;
}

/**
 * The sparkline history is a time series of at most one point per step of `resolutionMs` (by the orchestrator's
 * receive time), of which readers show the last `points` steps. A point is stored without reading the node, and
 * apart from the node's document (NodeStore.histories), which every heartbeat rewrites: docs/architecture.md,
 * "Heartbeat writes".
 */
export function historyStep(t: number, settings: HistorySettings): number {
  return Math.floor(t / Math.max(1, settings.resolutionMs));
}

/** The steps a history shown at `until` covers: the last `points` of them, `until`'s own included. */
export function historyWindow(until: number, settings: HistorySettings): { first: number; last: number } {
  const last = historyStep(until, settings);
  return { first: last - settings.points + 1, last };
}

/** The points of a node's history at `until`, given by step: those of the window, oldest first. */
export function historyView(points: Iterable<HistoryPoint>, until: number, settings: HistorySettings): HistoryPoint[] {
  if (settings.points <= 0) return [];
  const { first, last } = historyWindow(until, settings);
  const byStep = new Map<number, HistoryPoint>();
  for (const p of points) {
    const t = new Date(p.t).getTime();
    const step = historyStep(t, settings);
    if (step < first || step > last) continue;
    const kept = byStep.get(step);
    if (!kept || new Date(kept.t).getTime() > t) byStep.set(step, p);
  }
  return [...byStep.entries()].sort(([a], [b]) => a - b).map(([, p]) => ({ t: new Date(p.t), cpu: p.cpu, mem: p.mem }));
}

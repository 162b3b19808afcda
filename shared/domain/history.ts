import type { HistoryPoint } from '../store/node-record.js';

export interface HistorySettings {
  /** Points kept per node; 0 keeps none. */
  points: number;
  /** Width of one slot: at most one point per slot is kept. */
  resolutionMs: number;
}

/**
 * The sparkline history is a ring of `points` slots, each `resolutionMs` wide, indexed by the orchestrator's
 * receive time. A writer puts its point in the slot of its time without reading the node first (the store
 * keeps the later of two points in one slot), and a reader drops the slots left from an earlier lap of the
 * ring. So the history holds at most one point per step of the last `points × resolutionMs`, and a heartbeat
 * point is stored without reading the node (docs/architecture.md, "Heartbeat writes"). The ring lives apart from
 * the node's document (NodeStore.histories): one small document per slot on MongoDB.
 */
export function historySlot(t: number, settings: HistorySettings): number {
  return historyStep(t, settings) % settings.points;
}

/** The key of a slot in the stored ring (a string key: a document field, never an array index). */
export function historySlotKey(slot: number): string {
  return `s${slot}`;
}

/** The step of a time: its slot in the ring, counted from the epoch instead of modulo the ring. */
export function historyStep(t: number, settings: HistorySettings): number {
  return Math.floor(t / Math.max(1, settings.resolutionMs));
}

/** The points of a stored ring, oldest first, current lap only. */
export function historyView(ring: Record<string, HistoryPoint> | null | undefined, settings: HistorySettings): HistoryPoint[] {
  if (settings.points <= 0) return [];
  const all = Object.values(ring ?? {}).filter((p): p is HistoryPoint => !!p && p.t !== null && p.t !== undefined);
  if (!all.length) return [];
  const time = (p: HistoryPoint) => new Date(p.t).getTime();
  const newestStep = historyStep(Math.max(...all.map(time)), settings);
  const bySlot = new Map<number, HistoryPoint>();
  for (const p of all) {
    const t = time(p);
    const step = historyStep(t, settings);
    if (step <= newestStep - settings.points) continue;
    const kept = bySlot.get(step);
    if (!kept || time(kept) < t) bySlot.set(step, p);
  }
  return [...bySlot.values()].sort((a, b) => time(a) - time(b)).map((p) => ({ t: new Date(p.t), cpu: p.cpu, mem: p.mem }));
}

/** The stored ring of a history given as points (an inserted node, a restored state file). */
export function historyRing(points: HistoryPoint[], settings: HistorySettings): Record<string, HistoryPoint> {
  const ring: Record<string, HistoryPoint> = {};
  if (settings.points <= 0) return ring;
  for (const p of points) {
    const key = historySlotKey(historySlot(new Date(p.t).getTime(), settings));
    const kept = ring[key];
    if (!kept || new Date(kept.t).getTime() < new Date(p.t).getTime()) ring[key] = p;
  }
  return ring;
}

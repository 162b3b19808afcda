import type { NodeRecord } from '../../../shared/store/node-record.js';
import { toNodeView, type NodeView } from '../node-view.js';

/** The sparkline covers this window; older stored points are not sent. */
export const HISTORY_WINDOW_MS = 60 * 60 * 1000;

export interface HistoryPointView {
  t: string;
  cpu: number;
  mem: number;
}

/** A node as the dashboard receives it: the GET /api/nodes view plus its recent stats history. */
export type DashboardNode = NodeView & { history: HistoryPointView[] };

export function toDashboardNode(node: NodeRecord, now: number): DashboardNode {
  const since = now - HISTORY_WINDOW_MS;
  const history = (node.history ?? [])
    .filter((p) => new Date(p.t).getTime() >= since)
    .map((p) => ({ t: new Date(p.t).toISOString(), cpu: p.cpu, mem: p.mem }));
  return { ...toNodeView(node), history };
}

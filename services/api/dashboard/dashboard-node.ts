import { STATS_FIELDS } from '../../../shared/messages/index.js';
import type { NodeRecord } from '../../../shared/store/node-record.js';
import type { ShownNode } from './node-watch.js';
import { toNodeView, type NodeView } from '../node-view.js';

/** The sparkline covers this window; older stored points are not sent. */
export const HISTORY_WINDOW_MS = 60 * 60 * 1000;

export interface HistoryPointView {
  t: string;
  cpu: number;
  mem: number;
}

/**
 * A node as the dashboard receives it: the GET /api/nodes view plus its recent stats history. An update
 * leaves `history` out when the page already has the node's current one.
 */
export type DashboardNode = NodeView & { history?: HistoryPointView[]; deadline?: string | null };

/**
 * A node's deadline: when it goes OFFLINE without another heartbeat, by its own timeout or the default one
 * (`defaultTimeoutMs`, TIMEOUT_MINUTES); absent when the default is not given.
 */
function deadline(node: NodeRecord, defaultTimeoutMs: number | undefined): { deadline?: string | null } {
  if (defaultTimeoutMs === undefined) return {};
  if (!node.lastHeartbeat) return { deadline: null };
  const at = node.expiresAt ?? new Date(new Date(node.lastHeartbeat).getTime() + (node.timeoutMs ?? defaultTimeoutMs));
  return { deadline: new Date(at).toISOString() };
}

export function toDashboardNode(node: ShownNode, now: number, withHistory = true, defaultTimeoutMs?: number): DashboardNode {
  if (!withHistory) return { ...toNodeView(node), ...deadline(node, defaultTimeoutMs) };
  const since = now - HISTORY_WINDOW_MS;
  const history = (node.history ?? []).filter((p) => new Date(p.t).getTime() >= since).map((p) => ({ t: new Date(p.t).toISOString(), cpu: p.cpu, mem: p.mem }));
  return { ...toNodeView(node), ...deadline(node, defaultTimeoutMs), history };
}

const time = (d: Date | null | undefined) => (d ? new Date(d).getTime() : '');

/** What a page shows of a node apart from its history: when it differs from what a page was sent, the page gets the node again. */
export function changeKey(node: NodeRecord): string {
  const s = node.stats;
  return [
    time(node.lastHeartbeat),
    node.status,
    node.statusVersion,
    node.hostname,
    node.ipAddress,
    node.maxServers,
    node.timeoutMs ?? '',
    s ? [time(s.reportedAt), ...STATS_FIELDS.map((field) => s[field])].join('/') : '',
  ].join('|');
}

/** The history grows by one point every HISTORY_RESOLUTION_MS at most: its newest point and length identify it. */
export function historyKey(node: ShownNode): string {
  const history = node.history ?? [];
  return `${history.length}|${time(history.at(-1)?.t)}`;
}

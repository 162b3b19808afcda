import { statsValues } from '../../shared/messages/index.js';
import type { NodeRecord } from '../../shared/store/node-record.js';

/** The node view of the read API (docs/reference.md): times as ISO-8601 strings. */
export function toNodeView(node: NodeRecord) {
  const iso = (d: Date | null | undefined) => (d ? new Date(d).toISOString() : null);
  return {
    nodeId: node.nodeId,
    hostname: node.hostname,
    ipAddress: node.ipAddress,
    maxServers: node.maxServers,
    status: node.status,
    registeredAt: iso(node.registeredAt),
    lastHeartbeat: iso(node.lastHeartbeat),
    statusChangedAt: iso(node.statusChangedAt),
    statusVersion: node.statusVersion,
    stats: node.stats ? { ...statsValues(node.stats), reportedAt: iso(node.stats.reportedAt) } : null,
  };
}

export type NodeView = ReturnType<typeof toNodeView>;

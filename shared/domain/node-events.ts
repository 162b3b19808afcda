import { randomUUID } from 'node:crypto';
import type { EventReason, NodeEvent, NodeEventType, NodeStatus } from '../messages/index.js';
import type { NodeRecord } from '../store/node-record.js';

const TYPE_BY_STATUS: Record<NodeStatus, NodeEventType> = { ONLINE: 'node.online', OFFLINE: 'node.offline' };

/** The event for a status change already applied to `node` (status, statusVersion, lastHeartbeat are the new ones). */
export function nodeEvent(
  node: Pick<NodeRecord, 'nodeId' | 'status' | 'statusVersion' | 'lastHeartbeat'>,
  previousStatus: NodeStatus | null,
  reason: EventReason,
  occurredAt: number,
): NodeEvent {
  return {
    eventId: randomUUID(),
    type: previousStatus === null ? 'node.registered' : TYPE_BY_STATUS[node.status],
    version: 1,
    nodeId: node.nodeId,
    status: node.status,
    previousStatus,
    statusVersion: node.statusVersion,
    lastHeartbeat: node.lastHeartbeat ? node.lastHeartbeat.toISOString() : null,
    occurredAt: new Date(occurredAt).toISOString(),
    reason,
  };
}

export function newRev(): string {
  return randomUUID();
}

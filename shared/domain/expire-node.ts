import type { NodeEvent } from '../messages/index.js';
import type { NodeRecord, NodeWrite } from '../store/node-record.js';
import { newRev, nodeEvent } from './node-events.js';

/** What the timeout transition needs of a node (all a sweep keeps of the expired nodes it reads). */
export type ExpiringNode = Pick<NodeRecord, 'nodeId' | 'status' | 'statusVersion' | 'rev' | 'lastHeartbeat' | 'timeoutMs'>;

export interface Expiry {
  /** Applies only if the node still has the rev it was read with, is still ONLINE and still silent since before the cutoff. */
  write: Extract<NodeWrite, { kind: 'update' }>;
  /** The node.offline event, stored in the node's outbox by the same write. */
  event: NodeEvent;
}

/**
 * The timeout transition: an ONLINE node whose last heartbeat is older than `cutoff` goes OFFLINE with reason
 * `timeout` at `now` (statusVersion + 1, statusChangedAt = now). Null when the node is not ONLINE or not
 * silent since before the cutoff. The write sets only what the transition changes: a heartbeat stored after
 * the read makes it a conflict (silentBefore), and nothing else the node holds is written back.
 */
export function expireNode(node: ExpiringNode, now: number, cutoff: number): Expiry | null {
  if (node.status !== 'ONLINE' || node.lastHeartbeat === null || node.lastHeartbeat.getTime() >= cutoff) return null;
  const statusVersion = node.statusVersion + 1;
  const event = nodeEvent({ nodeId: node.nodeId, status: 'OFFLINE', statusVersion, lastHeartbeat: node.lastHeartbeat }, 'ONLINE', 'timeout', now);
  return {
    write: {
      kind: 'update',
      nodeId: node.nodeId,
      expectedRev: node.rev,
      newRev: newRev(),
      set: { status: 'OFFLINE', statusVersion, statusChangedAt: new Date(now) },
      pushOutbox: [event],
      silentBefore: new Date(cutoff),
    },
    event,
  };
}

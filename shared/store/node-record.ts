import type { NodeEvent, NodeStatus } from '../messages/index.js';

export interface NodeStats {
  cpuUsage: number;
  memoryUsage: number;
  diskUsage: number;
  containerCount: number;
  /** The agent's own timestamp (its clock): shown, never used to judge liveness. */
  reportedAt: Date;
}

export interface HistoryPoint {
  /** Orchestrator receive time. */
  t: Date;
  cpu: number;
  mem: number;
}

/** One node as stored (contract §7: one document per node, `_id` = nodeId). */
export interface NodeRecord {
  nodeId: string;
  hostname: string;
  ipAddress: string;
  maxServers: number;
  status: NodeStatus;
  registeredAt: Date;
  /** Orchestrator receive time of the newest heartbeat (or registration). */
  lastHeartbeat: Date | null;
  statusChangedAt: Date;
  /** Grows by one with each status change; events carry it. */
  statusVersion: number;
  /** Optimistic-concurrency token: every write replaces it, and a write names the token it read. */
  rev: string;
  stats: NodeStats | null;
  /** Bounded stats history for the dashboard's sparkline. */
  history: HistoryPoint[];
  /** Status events stored with the change that caused them, removed once the broker confirmed them. */
  outbox: NodeEvent[];
  /**
   * Orchestrator receive time minus agent send time, the smallest seen since the last registration.
   * A message whose own offset exceeds it by more than the timeout sat in a backlog (semantics §5.3).
   */
  clockSkewMs: number | null;
  /** Last time the orchestrator asked this agent to re-register (rate limit of that request). */
  reregisterRequestedAt: Date | null;
  /** Hash of the node's credential when authentication is on. */
  credentialHash: string | null;
}

/** Fields a write may set (never nodeId or rev, which the store manages). */
export type NodeChanges = Partial<Omit<NodeRecord, 'nodeId' | 'rev' | 'outbox'>>;

export type NodeWrite =
  | { kind: 'insert'; record: NodeRecord }
  | {
      kind: 'update';
      nodeId: string;
      /** The rev this change was computed from; the write applies only if it is still current. */
      expectedRev: string;
      /** The rev the document gets. */
      newRev: string;
      set: NodeChanges;
      pushOutbox: NodeEvent[];
    };

export interface IngestLiveness {
  instanceId: string;
  /** Start of the instance's current unbroken period of consuming and storing; null while it cannot. */
  healthySince: Date | null;
  lastSeenAt: Date;
}

export interface ClusterGuardState {
  /** When the current mass silence was first held back, or null. */
  heldSince: Date | null;
  eventId: string | null;
}

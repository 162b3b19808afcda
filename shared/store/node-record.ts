import type { NodeEvent, NodeStatus, StatsValues } from '../messages/index.js';

/** A heartbeat's stats (shared/messages: STATS_FIELDS) and the agent's own timestamp (its clock): shown, never used to judge liveness. */
export type NodeStats = StatsValues & { reportedAt: Date };

export interface HistoryPoint {
  /** Orchestrator receive time. */
  t: Date;
  cpu: number;
  mem: number;
}

/**
 * One node as stored: one document per node in `nodes`, `_id` = nodeId (docs/reference.md, storage). Its
 * sparkline history is kept apart (`NodeStore.histories`), so that a heartbeat rewrites a small document.
 */
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
  /** The rev before the last guarded write (see NodeStore.write). */
  prevRev?: string | null;
  stats: NodeStats | null;
  /** Status events stored with the change that caused them, removed once the broker confirmed them. */
  outbox: NodeEvent[];
  /**
   * Orchestrator receive time minus agent send time, the smallest seen since the last registration.
   * A message whose own offset exceeds it by more than the timeout sat in a backlog (docs/architecture.md, late messages).
   */
  clockSkewMs: number | null;
  /** Last time the orchestrator asked this agent to re-register (rate limit of that request). */
  reregisterRequestedAt: Date | null;
  /** Hash of the node's credential when authentication is on. */
  credentialHash: string | null;
  /**
   * The heartbeat pace (shared/domain/heartbeat-pace.ts), all absent or null for an agent that declared no
   * interval (then the node is judged by TIMEOUT_MINUTES): the interval the agent declared and the one it was
   * last told, its own timeout and a shorter one waiting for the first heartbeat at the new pace (ms).
   */
  declaredIntervalMs?: number | null;
  intervalMs?: number | null;
  timeoutMs?: number | null;
  pendingTimeoutMs?: number | null;
  /**
   * lastHeartbeat + timeoutMs: the node's own deadline, null for a node judged by TIMEOUT_MINUTES. Indexed for
   * the sweeper; it only moves forward, like lastHeartbeat, except that a node going back to the default clears it.
   */
  expiresAt?: Date | null;
}

/** Fields a write may set (never nodeId or rev, which the store manages). The history grows by a write's `historyPoint`. */
export type NodeChanges = Partial<Omit<NodeRecord, 'nodeId' | 'rev' | 'outbox'>>;

/**
 * The four kinds of write. In all of them `lastHeartbeat` and `stats` only ever move forward (MongoDB's
 * $max: stats compare by reportedAt first), so a write computed from an older read never turns them back.
 * A write's history point is stored only when the write applied; the first point stored in a step stays.
 */
export type NodeWrite =
  | { kind: 'insert'; record: NodeRecord }
  /**
   * A status change or any change that must not race: applies only if the node still has `expectedRev`
   * (and, for the sweeper, is still ONLINE and silent since before `silentBefore`). Gets `newRev`.
   */
  | {
      kind: 'update';
      nodeId: string;
      expectedRev: string;
      newRev: string;
      set: NodeChanges;
      pushOutbox: NodeEvent[];
      silentBefore?: Date;
      historyPoint?: HistoryPoint;
    }
  /**
   * Heartbeats of a node that stays ONLINE, written without reading the node first. Applies only while the
   * node is ONLINE and meets the conditions below; otherwise it is reported as a conflict and the caller
   * reads the node and decides (an OFFLINE node comes back, an unknown one is refused, a late message is
   * judged against the stored baseline). Leaves `rev` as it is: the sweeper's silentBefore guard is what a
   * concurrent transition checks against.
   */
  | {
      kind: 'refresh';
      nodeId: string;
      lastHeartbeat: Date;
      stats: NodeStats | null;
      historyPoint?: HistoryPoint;
      /** The lowest clock offset (receive time − agent send time) of the batch's broker messages: the baseline moves down to it. */
      clockSkewMs?: number;
      /** Applies only while the stored baseline is at least this (else one of the messages sat in a backlog). */
      minClockSkewMs?: number;
      /** Applies only while the node holds this credential (authentication on). */
      credentialHash?: string;
      /**
       * The pace this process last saw stored for the node (absent: none, a node judged by TIMEOUT_MINUTES).
       * Applies only while the node's told interval and own timeout are these and no shorter timeout is pending;
       * with a timeout it moves `expiresAt` forward to lastHeartbeat + timeoutMs.
       */
      pace?: { intervalMs: number | null; timeoutMs: number | null };
    }
  /**
   * Late heartbeats of an ONLINE node (they sat in a backlog: docs/architecture.md), written without a read
   * while the ingest is behind: their newest stats, and nothing about liveness (no lastHeartbeat, deadline,
   * baseline, pace or history). Applies only while the node is ONLINE and the broker messages are late against
   * the stored baseline; otherwise it is reported as a conflict and the caller reads the node and decides.
   */
  | {
      kind: 'late';
      nodeId: string;
      stats: NodeStats;
      /** Applies only while the stored baseline is below this (set when broker messages are among them). */
      clockSkewBelowMs?: number;
      /** Applies only while the node holds this credential (authentication on). */
      credentialHash?: string;
    };

/** A canary sender saying it runs (written by the sender itself, straight to the store). */
export interface CanarySenderReport {
  senderId: string;
  kind: 'sweeper' | 'api';
  intervalMs: number;
  aliveAt: Date;
}

/** A canary that made the whole trip, as an ingest stores it (shared/domain/path-coverage.ts). */
export interface CanaryArrival {
  senderId: string;
  kind: 'sweeper' | 'api';
  intervalMs: number;
  sentAt: Date;
  pathSince: Date | null;
}

/** What an expiry query looks for (NodeStore.findExpired): the nodes whose deadline passed within proven time. */
export interface ExpiryQuery {
  /** Heartbeats are proven recorded up to this time (the canaries' coverage): a deadline before it has passed. */
  coveredUntil: Date;
  /** The timeout of nodes without their own (TIMEOUT_MINUTES); their deadline is lastHeartbeat + this. */
  defaultTimeoutMs: number;
  /** After a break of the heartbeat path: only nodes whose own timeout is at most this (each gets a full one from the break). */
  maxTimeoutMs?: number;
}

export interface ClusterGuardState {
  /** When the current mass silence was first held back, or null. */
  heldSince: Date | null;
  eventId: string | null;
}

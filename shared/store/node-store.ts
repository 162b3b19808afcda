import type { NodeEvent, NodeStatus } from '../messages/index.js';
import type { CanaryRecord } from '../domain/path-coverage.js';
import type { FleetPace } from '../domain/heartbeat-pace.js';
import type { CanaryArrival, CanarySenderReport, ClusterGuardState, ExpiryQuery, HistoryPoint, NodeRecord, NodeWrite } from './node-record.js';

export interface WriteResult {
  /** Node ids whose write did not apply because another writer changed the node first. */
  conflicts: string[];
  /** Store round trips this call used (for metrics and benchmarks). */
  roundTrips: number;
}

/** Published events to take out of one node's outbox. */
export interface OutboxRemoval {
  nodeId: string;
  events: NodeEvent[];
}

/** Thrown (with the original as `cause`) when the store cannot be reached or refuses a write. */
export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/**
 * The node store port. Adapters: MongoDB (mongoose) and in-memory; test/contract/node-store.contract.ts
 * runs the same suite against both.
 */
export interface NodeStore {
  get(nodeId: string): Promise<NodeRecord | null>;
  getMany(nodeIds: string[]): Promise<Map<string, NodeRecord>>;
  list(filter?: { status?: NodeStatus }): Promise<NodeRecord[]>;
  /**
   * The sparkline points of these nodes at `until`: those of the last HISTORY_POINTS steps of
   * HISTORY_RESOLUTION_MS up to it, oldest first (an empty list for a node without any), read by `_id`. Kept
   * apart from the node documents, which a heartbeat rewrites.
   */
  histories(nodeIds: string[], until: Date): Promise<Map<string, HistoryPoint[]>>;
  /** Applies every write in one bulk operation; a write whose expectedRev is stale (or an insert over an existing node) is a conflict. */
  write(writes: NodeWrite[]): Promise<WriteResult>;
  /**
   * ONLINE nodes whose deadline is before `coveredUntil` (their own `expiresAt`, or lastHeartbeat + the default
   * timeout for nodes without one), oldest heartbeat first, read by one query (indexed on MongoDB) in pages of
   * at most `pageSize`: a page is fetched when the loop asks for it, and leaving the loop early closes the query.
   */
  findExpired(query: ExpiryQuery, pageSize: number): AsyncIterable<NodeRecord[]>;
  /**
   * Every node, in pages of at most `pageSize`, in no particular order: one query whose pages each stay inside
   * the operation deadline however large the fleet (a whole-fleet `list()` may not, on a slow store).
   */
  scan(pageSize: number): AsyncIterable<NodeRecord[]>;
  /** How many nodes findExpired would return (one count query). */
  countExpired(query: ExpiryQuery): Promise<number>;
  /** Nodes by status, in one query. */
  countByStatus(): Promise<Record<NodeStatus, number>>;
  /**
   * ONLINE nodes, in one count query. With `upTo`, counting stops there: the answer is min(count, upTo), so a
   * caller that only needs to know whether there are at least `upTo` does not pay for counting the whole fleet.
   */
  countOnline(upTo?: number): Promise<number>;
  /** Nodes with unpublished events (indexed on MongoDB), at most `limit`. */
  findWithOutbox(limit: number): Promise<NodeRecord[]>;
  /**
   * Removes published events from the outboxes of many nodes in one bulk write, each event exactly as stored
   * (the SQLite-backed test server's $pull matches whole values only). Never changes a rev; events or nodes
   * that are not there are ignored.
   */
  removeFromOutbox(entries: OutboxRemoval[]): Promise<void>;
  delete(nodeId: string): Promise<boolean>;
  /** Operator reset / tests. */
  deleteAll(): Promise<void>;

  /** The canary senders and their arrivals, apart from the nodes (docs/architecture.md, "The heartbeat path and its canary"). */
  canaries(): Promise<CanaryRecord[]>;
  /** Creates or refreshes a sender's record; `firstAliveAt` is set by the first report. */
  recordCanarySender(report: CanarySenderReport): Promise<void>;
  /** Stores a canary's arrival: `sentAt` only moves forward; a sender not yet recorded is created by it. */
  recordCanaryArrival(arrival: CanaryArrival): Promise<void>;
  removeCanarySender(senderId: string): Promise<void>;
  /** Cluster-wide mass-silence guard state, shared by every sweeper replica. */
  guardState(): Promise<ClusterGuardState>;
  setGuardState(state: ClusterGuardState): Promise<void>;
  /** The fleet's heartbeat pace (shared/domain/heartbeat-pace.ts), computed by the sweeper, read by the api and the ingest; null before the first. */
  fleetPace(): Promise<FleetPace | null>;
  setFleetPace(pace: FleetPace): Promise<void>;

  /**
   * The sweep lease: one sweep at a time across all sweepers, fenced by the store itself (the scheduler's Redis lock
   * alone can let two overlap across a Redis failover). Taken (or renewed by its holder) when free, expired, or
   * already the caller's, until `until`; true when the caller holds it. A write the store acknowledges durably.
   */
  takeSweepLease(holder: string, now: Date, until: Date): Promise<boolean>;
  /** Frees the lease if `holder` still holds it; nothing otherwise. */
  releaseSweepLease(holder: string): Promise<void>;

  ping(): Promise<void>;
  close(): Promise<void>;
}

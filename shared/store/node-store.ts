import type { NodeEvent, NodeStatus } from '../messages/index.js';
import type { ClusterGuardState, IngestLiveness, NodeRecord, NodeWrite } from './node-record.js';

export interface WriteResult {
  /** Node ids whose write did not apply because another writer changed the node first. */
  conflicts: string[];
  /** Store round trips this call used (for metrics and benchmarks). */
  roundTrips: number;
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
  /** Applies every write in one bulk operation; a write whose expectedRev is stale (or an insert over an existing node) is a conflict. */
  write(writes: NodeWrite[]): Promise<WriteResult>;
  /** ONLINE nodes whose lastHeartbeat is older than `cutoff`, oldest first, at most `limit`. */
  findExpired(cutoff: Date, limit: number): Promise<NodeRecord[]>;
  countExpired(cutoff: Date): Promise<number>;
  countByStatus(): Promise<Record<NodeStatus, number>>;
  /** Nodes with unpublished events. */
  findWithOutbox(limit: number): Promise<NodeRecord[]>;
  /** Removes published events from a node's outbox (exactly as stored: the SQLite-backed test server's $pull matches whole values only). */
  removeFromOutbox(nodeId: string, events: NodeEvent[]): Promise<void>;
  delete(nodeId: string): Promise<boolean>;
  /** Operator reset / tests. */
  deleteAll(): Promise<void>;

  recordIngestLiveness(entry: IngestLiveness): Promise<void>;
  ingestLiveness(): Promise<IngestLiveness[]>;
  removeIngestLiveness(instanceId: string): Promise<void>;
  /** Cluster-wide mass-silence guard state, shared by every sweeper replica. */
  guardState(): Promise<ClusterGuardState>;
  setGuardState(state: ClusterGuardState): Promise<void>;

  ping(): Promise<void>;
  close(): Promise<void>;
}

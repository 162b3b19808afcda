import type { NodeStore } from '../../../shared/store/node-store.js';
import { createBatchedNodeLookup } from '../batched-node-lookup.js';

/**
 * The credentialHash of nodes for the HTTP auth check, without one store read per heartbeat (see
 * batched-node-lookup.ts). The ingest checks again against the stored node, so a stale answer can delay a
 * node, never let a wrong credential through to the store.
 * Resolves to the hash, null (node without credential) or undefined (not registered).
 */
export function createCredentialLookup(options: { store: NodeStore; ttlMs: number; now: () => number; maxEntries?: number; batchWindowMs?: number }) {
  const lookup = createBatchedNodeLookup<string | null>({ ...options, project: (node) => node.credentialHash ?? null });
  return { get: lookup.get, forget: lookup.forget };
}

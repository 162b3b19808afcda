import type { NodeStore } from '../../shared/store/node-store.js';
import { createBatchedNodeLookup } from './batched-node-lookup.js';

/**
 * Answers "is this node registered?" for the stats endpoint without one store read per request (see
 * batched-node-lookup.ts). Registrations this api accepted count at once, so an agent may post stats right
 * after registering.
 */
export function createKnownNodes(options: { store: NodeStore; ttlMs: number; now?: () => number; batchWindowMs?: number }) {
  const lookup = createBatchedNodeLookup({ ...options, project: () => true as const, maxEntries: 200_000 });
  return {
    remember: (nodeId: string) => lookup.set(nodeId, true),
    forget: (nodeId: string) => lookup.forget(nodeId),
    isKnown: async (nodeId: string) => (await lookup.get(nodeId)) === true,
  };
}

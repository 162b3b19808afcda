import type { NodeStore } from '../../shared/store/node-store.js';
import { createBatchedNodeLookup } from './batched-node-lookup.js';

/** What the api needs to know of a registered node: the interval its agent declared (ms), null for none. */
export interface KnownNode {
  declaredIntervalMs: number | null;
}

/**
 * Answers "is this node registered, and did its agent declare its interval?" for the stats endpoint without one
 * store read per request (see batched-node-lookup.ts). Registrations this api accepted count at once, so an
 * agent may post stats right after registering.
 */
export function createKnownNodes(options: { store: NodeStore; ttlMs: number; now?: () => number; batchWindowMs?: number }) {
  const lookup = createBatchedNodeLookup<KnownNode>({ ...options, project: (node) => ({ declaredIntervalMs: node.declaredIntervalMs ?? null }), maxEntries: 200_000 });
  return {
    remember: (nodeId: string, declaredIntervalMs: number | null = null) => lookup.set(nodeId, { declaredIntervalMs }),
    forget: (nodeId: string) => lookup.forget(nodeId),
    isKnown: async (nodeId: string) => (await lookup.get(nodeId)) !== undefined,
    /** The node as known, or undefined when it is not registered. */
    lookup: (nodeId: string) => lookup.get(nodeId),
  };
}

import { z } from 'zod';
import { nodeIdSchema } from './node-id.js';

export const NODE_STATUSES = ['ONLINE', 'OFFLINE'] as const;
export type NodeStatus = (typeof NODE_STATUSES)[number];

export const NODE_EVENT_TYPES = ['node.registered', 'node.online', 'node.offline'] as const;
export type NodeEventType = (typeof NODE_EVENT_TYPES)[number];

export const EVENT_REASONS = ['registered', 'heartbeat', 'timeout', 'shutdown'] as const;
export type EventReason = (typeof EVENT_REASONS)[number];

/** The body of every message on the node.events exchange (docs/reference.md, events). */
export const nodeEventSchema = z.strictObject({
  eventId: z.string().min(1),
  type: z.enum(NODE_EVENT_TYPES),
  version: z.literal(1),
  nodeId: nodeIdSchema,
  status: z.enum(NODE_STATUSES),
  previousStatus: z.enum(NODE_STATUSES).nullable(),
  statusVersion: z.number().int().min(1),
  lastHeartbeat: z.string().nullable(),
  occurredAt: z.string(),
  reason: z.enum(EVENT_REASONS),
});
export type NodeEvent = z.infer<typeof nodeEventSchema>;

/** Published once when the sweeper holds back a mass transition (see docs/architecture.md). */
export const clusterEventSchema = z.strictObject({
  eventId: z.string().min(1),
  type: z.literal('cluster.degraded'),
  version: z.literal(1),
  occurredAt: z.string(),
  silentNodes: z.number().int().min(0),
  onlineNodes: z.number().int().min(0),
  heldUntil: z.string(),
  reason: z.string(),
});
export type ClusterEvent = z.infer<typeof clusterEventSchema>;

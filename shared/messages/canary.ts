import { z } from 'zod';
import { nodeIdSchema } from './node-id.js';

/**
 * A canary heartbeat: sent by the orchestrator itself (each sweeper and each api) along the path an agent's
 * heartbeat takes — agent exchange, ingest queue, an ingest, the store — so the sweeper knows up to which
 * time heartbeats could be recorded (docs/architecture.md, "The heartbeat path and its canary").
 */
export const canaryMessageSchema = z.strictObject({
  id: z.string().min(1).max(64),
  type: z.literal('orchestrator.canary'),
  version: z.literal(1, { error: 'unsupported message version' }),
  /** The sender's clock (an orchestrator process). */
  sentAt: z
    .string()
    .max(40)
    .refine((s) => !Number.isNaN(Date.parse(s)), { error: 'sentAt must be an ISO-8601 time' }),
  senderId: nodeIdSchema,
  kind: z.enum(['sweeper', 'api']),
  /** How often the sender sends one. */
  intervalMs: z.number().int().positive().max(3_600_000),
  /** Set when the sender's canaries since this time (its clock) failed to get onto the path: the path broke then. */
  failedSince: z
    .string()
    .max(40)
    .refine((s) => !Number.isNaN(Date.parse(s)), { error: 'failedSince must be an ISO-8601 time' })
    .optional(),
});
export type CanaryMessage = z.infer<typeof canaryMessageSchema>;

import { z } from 'zod';
import type { NodeView } from '../../services/api/node-view.js';
import type { DryRunAnswer } from '../../services/api/registration-dry-run.js';
import { NODE_STATUSES, nodeIdSchema } from '../../shared/messages/index.js';

/*
 * The api's answers as zod schemas. The api builds them without validating (its requests are what it validates,
 * with shared/messages), so test/docs/api-descriptions.test.ts checks real answers against these: an answer that
 * grows a field fails there until it is described here.
 */

const isoTimeOrNull = z.string().nullable();

export const nodeViewSchema = z.strictObject({
  nodeId: nodeIdSchema,
  hostname: z.string(),
  ipAddress: z.string(),
  maxServers: z.number().int().min(0),
  status: z.enum(NODE_STATUSES),
  registeredAt: isoTimeOrNull,
  lastHeartbeat: isoTimeOrNull.meta({ description: "When the orchestrator received the node's newest heartbeat or registration (its own clock)" }),
  statusChangedAt: isoTimeOrNull,
  statusVersion: z.number().int().min(1).meta({ description: "The node's status changes so far: 1 at registration, +1 with each change" }),
  stats: z
    .strictObject({
      cpuUsage: z.number().min(0).max(100),
      memoryUsage: z.number().min(0).max(100),
      diskUsage: z.number().min(0).max(100),
      containerCount: z.number().int().min(0),
      reportedAt: isoTimeOrNull.meta({ description: "The agent's own timestamp of these stats; never used to judge liveness" }),
    })
    .nullable()
    .meta({ description: 'The newest stats; null until the first heartbeat' }),
}) satisfies z.ZodType<NodeView>;

/**
 * The pace an agent that declared its interval must follow (docs/reference.md): in the register answer, and in a
 * stats answer whenever it changed since that node's last answer from this api process.
 */
const toldPace = {
  heartbeatInterval: z.number().positive().optional().meta({ description: 'Seconds between heartbeats the agent must keep (only to an agent that declared heartbeatInterval)' }),
  timeout: z.number().positive().optional().meta({ description: 'Seconds of silence after which the node is OFFLINE' }),
  fleetSize: z.number().int().min(0).optional().meta({ description: 'ONLINE nodes the pace was computed from' }),
};

export const acceptedSchema = z.strictObject({
  nodeId: nodeIdSchema,
  accepted: z.literal(true),
  ...toldPace,
});

export const registeredSchema = z.strictObject({
  nodeId: nodeIdSchema,
  accepted: z.literal(true),
  message: z.string().meta({ description: 'Node <nodeId> registered' }),
  ...toldPace,
});

export const dryRunAnswerSchema = z.strictObject({
  nodeId: nodeIdSchema,
  dryRun: z.literal(true),
  accepted: z.literal(true).meta({ description: 'A real registration would be accepted (nothing was sent or stored)' }),
  auth: z.enum(['on', 'off']).meta({ description: 'Whether the credentials were checked (AUTH_MODE)' }),
  node: z.enum(['free', 'this-host', 'taken']).meta({
    description: 'Who holds the node id: nobody, the caller (its credential, or without one the same hostname), or another host',
  }),
  timeoutSeconds: z.number().positive().optional().meta({ description: 'TIMEOUT_MINUTES in seconds, when the api knows it' }),
}) satisfies z.ZodType<DryRunAnswer>;

export const readinessSchema = z.strictObject({
  ready: z.boolean().meta({ description: 'Every entry of checks is true' }),
  unavailable: z.array(z.string()).meta({ description: 'The names of the failing checks' }),
  checks: z.record(z.string(), z.boolean()).meta({
    description: 'broker (connected and not blocked) and store; in the all-in-one also scheduler (embedded) or redis',
  }),
  brokerBlocked: z.boolean(),
  brokerBlockedReason: z.string().optional().meta({ description: 'Only while the broker blocks publishes' }),
  brokerBlockedSince: z.string().optional().meta({ description: 'Only while the broker blocks publishes' }),
  clusterDegraded: z.boolean().meta({ description: 'The mass-silence guard holds silent nodes ONLINE' }),
  degradedSince: z.string().optional().meta({ description: 'Only while the mass-silence guard holds' }),
  heartbeatPath: z
    .union([
      z.strictObject({
        state: z.enum(['up', 'down']),
        reason: z.string().optional().meta({ description: 'Why the path is down' }),
        coveredUntil: isoTimeOrNull.meta({ description: 'Heartbeats sent up to this time are proven recorded' }),
        senders: z.number().int().min(0).meta({ description: 'Canary senders whose canaries arrive' }),
      }),
      z.strictObject({ state: z.literal('unknown') }).meta({ description: 'The store cannot be read' }),
    ])
    .meta({ description: 'Whether heartbeats are proven recorded end to end; does not affect ready' }),
});

/** Every error answer: `{"error": "<CODE>", "message": "…", …details}`; `codes` are the ones this status can carry. */
export function errorBodySchema(codes: readonly [string, ...string[]], details: z.ZodRawShape = {}) {
  return z.strictObject({
    error: z.enum(codes),
    message: z.string().meta({ description: 'What is wrong, in words' }),
    ...details,
  });
}

export const invalidDetails = {
  invalid: z.array(z.string()).optional().meta({ description: 'Every bad field (dotted path), (body) for the body as a whole' }),
};

export const brokerBlockedDetails = {
  reason: z.string().optional().meta({ description: 'BROKER_BLOCKED only: why the broker blocks publishes' }),
  blockedSince: z.string().optional().meta({ description: 'BROKER_BLOCKED only: since when' }),
};

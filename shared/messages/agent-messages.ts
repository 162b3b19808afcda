import { z } from 'zod';
import { nodeIdSchema } from './node-id.js';

const usage = (name: string) =>
  z
    .number({ error: `${name} must be a number` })
    .finite()
    .min(0, { error: `${name} must be 0-100` })
    .max(100, { error: `${name} must be 0-100` });
const count = (name: string) =>
  z
    .number({ error: `${name} must be a number` })
    .int({ error: `${name} must be an integer` })
    .min(0, { error: `${name} must be >= 0` })
    .max(1_000_000, { error: `${name} is out of range` });
const isoTime = (name: string) =>
  z
    .string({ error: `${name} must be an ISO-8601 time` })
    .max(40)
    .refine((s) => !Number.isNaN(Date.parse(s)), { error: `${name} must be an ISO-8601 time` })
    // The refinement has no JSON Schema form: docs/openapi.yaml and docs/asyncapi.yaml carry this description instead.
    .meta({ description: 'ISO-8601 date and time, e.g. 2025-01-01T12:00:00.000Z' });

/** The original registration body: POST /api/nodes/register. */
export const registerBodySchema = z.strictObject({
  nodeId: nodeIdSchema,
  hostname: z.string({ error: 'hostname must be a string' }).min(1).max(255),
  ipAddress: z.string({ error: 'ipAddress must be a string' }).min(1).max(64),
  maxServers: count('maxServers'),
  /** The agent's own HEARTBEAT_INTERVAL, seconds: an agent that declares it is told the pace to follow. */
  heartbeatInterval: z
    .number({ error: 'heartbeatInterval must be a number of seconds' })
    .finite()
    .positive({ error: 'heartbeatInterval must be > 0' })
    .max(86_400, { error: 'heartbeatInterval must be at most 86400' })
    .optional(),
});
export type RegisterBody = z.infer<typeof registerBodySchema>;

/** The original stats body: POST /api/nodes/{nodeId}/stats. */
export const heartbeatBodySchema = z.strictObject({
  cpuUsage: usage('cpuUsage'),
  memoryUsage: usage('memoryUsage'),
  diskUsage: usage('diskUsage'),
  containerCount: count('containerCount'),
  timestamp: isoTime('timestamp'),
});
export type HeartbeatBody = z.infer<typeof heartbeatBodySchema>;

/**
 * The stats a heartbeat carries, in the order they are stored (after `reportedAt`, the agent's timestamp): the
 * one list every layer takes them from (node record, store schemas and their `$max` order, read view, dashboard).
 * Derived from the schema: a field added there is stored and shown everywhere.
 */
export const STATS_FIELDS = Object.keys(heartbeatBodySchema.shape).filter((k): k is StatsField => k !== 'timestamp');
export type StatsField = Exclude<keyof HeartbeatBody, 'timestamp'>;
export type StatsValues = Pick<HeartbeatBody, StatsField>;

/** The stats of a heartbeat payload, and nothing else. */
export function statsValues(payload: StatsValues): StatsValues {
  return Object.fromEntries(STATS_FIELDS.map((field) => [field, payload[field]])) as StatsValues;
}

export const shutdownBodySchema = z.strictObject({
  reason: z.string().max(200).optional(),
});
export type ShutdownBody = z.infer<typeof shutdownBodySchema>;

export const AGENT_MESSAGE_TYPES = ['agent.register', 'agent.heartbeat', 'agent.shutdown'] as const;
export type AgentMessageType = (typeof AGENT_MESSAGE_TYPES)[number];

const envelopeBase = {
  /** Unique message id (uuid); redeliveries keep it. */
  id: z.string().min(1).max(64),
  /** Schema version of the payload. */
  version: z.literal(1, { error: 'unsupported message version' }),
  /** Sender's clock: never used to judge liveness. */
  sentAt: isoTime('sentAt'),
  nodeId: nodeIdSchema,
  /** Set by the api gateway (orchestrator clock) when the message came in over HTTP. */
  receivedAt: isoTime('receivedAt').optional(),
  /** Per-node credential or signature (see docs/security.md). */
  auth: z.string().max(512).optional(),
};

/**
 * Set by the api on a registration or heartbeat whose HTTP answer told the agent its pace (seconds): the ingest
 * stores exactly this deadline with the message, so the node has it before its agent can slow down.
 */
const toldPaceSchema = z.strictObject({
  heartbeatInterval: z.number().finite().positive().max(86_400),
  timeout: z
    .number()
    .finite()
    .positive()
    .max(3 * 86_400),
});

export const registerMessageSchema = z.strictObject({ ...envelopeBase, type: z.literal('agent.register'), payload: registerBodySchema, told: toldPaceSchema.optional() });
export const heartbeatMessageSchema = z.strictObject({ ...envelopeBase, type: z.literal('agent.heartbeat'), payload: heartbeatBodySchema, told: toldPaceSchema.optional() });
export const shutdownMessageSchema = z.strictObject({ ...envelopeBase, type: z.literal('agent.shutdown'), payload: shutdownBodySchema });

export const agentMessageSchema = z
  .discriminatedUnion('type', [registerMessageSchema, heartbeatMessageSchema, shutdownMessageSchema], {
    error: 'type must be one of agent.register, agent.heartbeat, agent.shutdown',
  })
  .refine((m) => m.type !== 'agent.register' || m.payload.nodeId === m.nodeId, {
    error: 'payload.nodeId must equal the envelope nodeId',
  });

export type RegisterMessage = z.infer<typeof registerMessageSchema>;
export type HeartbeatMessage = z.infer<typeof heartbeatMessageSchema>;
export type ShutdownMessage = z.infer<typeof shutdownMessageSchema>;
export type AgentMessage = RegisterMessage | HeartbeatMessage | ShutdownMessage;

/** Control messages the orchestrator sends to one agent (agent.control exchange). */
const controlBase = {
  id: z.string().min(1).max(64),
  version: z.literal(1),
  sentAt: isoTime('sentAt'),
  nodeId: nodeIdSchema,
};
const seconds = (name: string) =>
  z
    .number({ error: `${name} must be a number of seconds` })
    .finite()
    .positive({ error: `${name} must be > 0` });
export const reregisterControlSchema = z.strictObject({ ...controlBase, type: z.literal('control.reregister'), reason: z.string().max(200) });
/** The pace an agent that declared its interval must follow: its heartbeat interval and its timeout, seconds. */
export const settingsControlSchema = z.strictObject({
  ...controlBase,
  type: z.literal('control.settings'),
  heartbeatInterval: seconds('heartbeatInterval'),
  timeout: seconds('timeout'),
  fleetSize: count('fleetSize'),
});
export const controlMessageSchema = z.discriminatedUnion('type', [reregisterControlSchema, settingsControlSchema], {
  error: 'type must be one of control.reregister, control.settings',
});
export type ControlMessage = z.infer<typeof controlMessageSchema>;
export type ReregisterControlMessage = z.infer<typeof reregisterControlSchema>;
export type SettingsControlMessage = z.infer<typeof settingsControlSchema>;

import type { Delivery } from '../../shared/bus/bus.js';
import { agentMessageSchema, canaryMessageSchema, describeIssues, type AgentMessage, type CanaryMessage } from '../../shared/messages/index.js';
import { ROUTING } from '../../shared/topology.js';

export type ParsedDelivery = { ok: true; message: AgentMessage } | { ok: true; canary: CanaryMessage } | { ok: false; reason: string };

const ROUTE_OF: Record<AgentMessage['type'], (nodeId: string) => string> = {
  'agent.register': ROUTING.register,
  'agent.heartbeat': ROUTING.heartbeat,
  'agent.shutdown': ROUTING.shutdown,
};

/** Validates one delivery at the edge: JSON, the shared schema, and a routing key that names the same node and type. */
export function parseDelivery(delivery: Delivery, maxBytes = 16 * 1024): ParsedDelivery {
  if (delivery.body.length > maxBytes) return { ok: false, reason: `message too large (${delivery.body.length} bytes, limit ${maxBytes})` };
  let json: unknown;
  try {
    json = JSON.parse(delivery.body.toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed JSON' };
  }
  // The orchestrator's own canary heartbeats take the agents' path (docs/architecture.md).
  if (delivery.routingKey.startsWith(ROUTING.canary(''))) {
    const canary = canaryMessageSchema.safeParse(json);
    if (!canary.success) return { ok: false, reason: `invalid canary: ${describeIssues(canary.error)}` };
    if (delivery.routingKey !== ROUTING.canary(canary.data.senderId))
      return { ok: false, reason: `routing key ${delivery.routingKey} does not match the canary of ${canary.data.senderId}` };
    return { ok: true, canary: canary.data };
  }
  const result = agentMessageSchema.safeParse(json);
  if (!result.success) return { ok: false, reason: `invalid message: ${describeIssues(result.error)}` };
  const message = result.data as AgentMessage;
  // Broker permissions restrict an agent to its own routing keys; the body must agree with the key.
  if (delivery.routingKey !== ROUTE_OF[message.type](message.nodeId)) {
    return { ok: false, reason: `routing key ${delivery.routingKey} does not match ${message.type} for node ${message.nodeId}` };
  }
  return { ok: true, message };
}

const NODE_ROUTES = Object.values(ROUTE_OF).map((route) => route(''));

/**
 * What orders a delivery against the others (the batcher flushes one key at a time, in arrival order): a node's
 * messages share one whatever their type (`agent.<type>.<nodeId>`; parseDelivery refuses a message whose body
 * names another node), a canary sender's share one, anything else keys by its routing key.
 */
export function deliveryKey(delivery: Delivery): string {
  const key = delivery.routingKey;
  for (const prefix of NODE_ROUTES) if (key.startsWith(prefix)) return `node:${key.slice(prefix.length)}`;
  return key;
}

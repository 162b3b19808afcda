import { randomUUID } from 'node:crypto';
import type { Bus } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import type { NodePace } from '../../shared/domain/heartbeat-pace.js';
import type { AgentMessage, CanaryMessage, HeartbeatBody, RegisterBody, ShutdownBody } from '../../shared/messages/index.js';
import { ROUTING, type BrokerNames } from '../../shared/topology.js';

/**
 * Turns the original HTTP calls into the broker messages agents publish themselves, stamped with the
 * api's receive time, and answers only after the broker confirmed them: a 2xx means the message is durable
 * and will reach the store (docs/reference.md, HTTP API and guarantees).
 */
export function createAgentGateway(options: { bus: Bus; names: BrokerNames; clock: Clock }) {
  const { bus, names, clock } = options;

  /** Resolves once the broker confirmed; a BusUnavailableError (or BrokerBlockedError) goes to the error middleware. */
  async function send(message: AgentMessage | CanaryMessage, routingKey: string): Promise<void> {
    await bus.publish(names.exchanges.agentInbound, routingKey, message, { messageId: message.id });
  }

  function envelope(nodeId: string, auth: string | undefined) {
    const now = new Date(clock.now()).toISOString();
    return { id: randomUUID(), version: 1 as const, sentAt: now, receivedAt: now, nodeId, ...(auth ? { auth } : {}) };
  }

  /** The pace the answer tells the agent, in the message too: the ingest stores exactly that deadline with it. */
  const toldField = (told: NodePace | null | undefined) => (told ? { told: { heartbeatInterval: told.heartbeatInterval, timeout: told.timeout } } : {});

  return {
    register(body: RegisterBody, auth?: string, told?: NodePace | null) {
      return send({ ...envelope(body.nodeId, auth), type: 'agent.register', payload: body, ...toldField(told) }, ROUTING.register(body.nodeId));
    },
    heartbeat(nodeId: string, body: HeartbeatBody, auth?: string, told?: NodePace | null) {
      return send({ ...envelope(nodeId, auth), type: 'agent.heartbeat', payload: body, ...toldField(told) }, ROUTING.heartbeat(nodeId));
    },
    shutdown(nodeId: string, body: ShutdownBody, auth?: string) {
      return send({ ...envelope(nodeId, auth), type: 'agent.shutdown', payload: body }, ROUTING.shutdown(nodeId));
    },
    /** The api's canary heartbeat takes the same hop as an agent's HTTP heartbeat (docs/architecture.md). */
    canary(message: CanaryMessage) {
      return send(message, ROUTING.canary(message.senderId));
    },
  };
}

export type AgentGateway = ReturnType<typeof createAgentGateway>;

import { randomUUID } from 'node:crypto';
import type { Clock } from '../../shared/clock.js';
import type { AgentMessageType, HeartbeatBody, HeartbeatMessage, RegisterBody, RegisterMessage, ShutdownMessage } from '../../shared/messages/index.js';
import type { RequestAuth } from './request-auth.js';

export interface MessageFactory {
  register(body: RegisterBody): RegisterMessage;
  heartbeat(body: HeartbeatBody): HeartbeatMessage;
  shutdown(): ShutdownMessage;
}

/** Builds the envelopes (id, version, sentAt on the agent's wall clock, auth) in one place. */
export function createMessageFactory(deps: { nodeId: string; wallClock: Clock; auth: RequestAuth; newId?: () => string }): MessageFactory {
  const newId = deps.newId ?? randomUUID;
  const envelope = (type: AgentMessageType) => {
    const auth = deps.auth.envelopeAuth(type);
    return {
      id: newId(),
      version: 1 as const,
      sentAt: new Date(deps.wallClock.now()).toISOString(),
      nodeId: deps.nodeId,
      ...(auth === undefined ? {} : { auth }),
    };
  };
  return {
    register: (body) => ({ ...envelope('agent.register'), type: 'agent.register', payload: body }),
    heartbeat: (body) => ({ ...envelope('agent.heartbeat'), type: 'agent.heartbeat', payload: body }),
    shutdown: () => ({ ...envelope('agent.shutdown'), type: 'agent.shutdown', payload: {} }),
  };
}

import { formatJoinAuth, formatNodeAuth } from '../../shared/auth/credentials.js';
import type { AgentMessageType } from '../../shared/messages/index.js';

/**
 * The one place where request credentials are built: HTTP headers and the envelope's `auth` field
 * (docs/security.md). Both carry the same string: the node's credential, plus the join token proof on
 * registrations.
 */
export interface RequestAuth {
  httpHeaders(type?: AgentMessageType): Record<string, string>;
  envelopeAuth(type?: AgentMessageType): string | undefined;
}

export const noAuth: RequestAuth = {
  httpHeaders: () => ({}),
  envelopeAuth: () => undefined,
};

/** Credentials of an agent that has AGENT_JOIN_TOKEN: the join token itself is never sent, only an HMAC proof of it. */
export function credentialAuth(options: { nodeId: string; joinToken: string; credential: string }): RequestAuth {
  const registration = formatJoinAuth(options.joinToken, options.nodeId, options.credential);
  const node = formatNodeAuth(options.credential);
  const envelopeAuth = (type?: AgentMessageType) => (type === 'agent.register' ? registration : node);
  return {
    envelopeAuth,
    httpHeaders: (type) => ({ authorization: `Bearer ${envelopeAuth(type)}` }),
  };
}

import { decideAgentAuth, type AgentAction } from '../../../shared/auth/agent-auth.js';
import { hashCredential, parseAuth } from '../../../shared/auth/credentials.js';
import type { NodeDraft } from '../../../shared/domain/apply-message.js';
import type { AgentMessage, RegisterMessage } from '../../../shared/messages/index.js';
import type { Authenticator } from '../authenticator.js';

const ACTION: Record<AgentMessage['type'], AgentAction> = {
  'agent.register': 'register',
  'agent.heartbeat': 'heartbeat',
  'agent.shutdown': 'shutdown',
};

/**
 * AUTH_MODE=on for the ingest: every agent message must carry the credential of its node (registrations:
 * also the join token proof). Checked against the node's working copy, so a registration earlier in the
 * same batch counts, and a takeover race between ingests ends in a rev conflict and a re-check.
 */
export function createCredentialAuthenticator(options: { joinToken: string }): Authenticator {
  return {
    check(draft: NodeDraft, message: AgentMessage): string | null {
      const decision = decideAgentAuth({
        joinToken: options.joinToken,
        action: ACTION[message.type],
        nodeId: message.nodeId,
        auth: message.auth,
        storedHash: draft.node ? draft.node.credentialHash : undefined,
      });
      if (decision.ok) return null;
      // A node registered while auth was off has no credential: ask its agent to register again (with one).
      if (decision.code === 'NO_CREDENTIAL_ON_RECORD') draft.askReregister = true;
      return decision.reason;
    },
    credentialCondition(message: AgentMessage): string | null {
      const parsed = parseAuth(message.auth);
      return parsed?.kind === 'node' ? hashCredential(parsed.credential) : null;
    },
    onRegistered(draft: NodeDraft, message: RegisterMessage): void {
      const decision = decideAgentAuth({ joinToken: options.joinToken, action: 'register', nodeId: message.nodeId, auth: message.auth, storedHash: undefined });
      if (decision.ok && draft.node) draft.node.credentialHash = decision.credentialHash;
    },
  };
}

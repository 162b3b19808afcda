import { decideAgentAuth, type AgentAction } from '../../../shared/auth/agent-auth.js';
import { hashCredential, parseAuth } from '../../../shared/auth/credentials.js';
import type { NodeDraft } from '../../../shared/domain/apply-message.js';
import type { AgentMessage } from '../../../shared/messages/index.js';
import type { AuthDecision, Authenticator } from '../authenticator.js';

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
    check(draft: NodeDraft, message: AgentMessage): AuthDecision {
      const decision = decideAgentAuth({
        joinToken: options.joinToken,
        action: ACTION[message.type],
        nodeId: message.nodeId,
        auth: message.auth,
        storedHash: draft.node ? draft.node.credentialHash : undefined,
      });
      // A registration (new node or takeover) binds the node to the credential it proved.
      if (decision.ok) return message.type === 'agent.register' ? { ok: true, bindCredentialHash: decision.credentialHash } : { ok: true };
      // A node registered while auth was off has no credential: ask its agent to register again (with one).
      if (decision.code === 'NO_CREDENTIAL_ON_RECORD') draft.askReregister = true;
      return { ok: false, reason: decision.reason };
    },
    credentialCondition(message: AgentMessage): string | null {
      const parsed = parseAuth(message.auth);
      return parsed?.kind === 'node' ? hashCredential(parsed.credential) : null;
    },
  };
}

import type { NodeDraft } from '../../shared/domain/apply-message.js';
import type { AgentMessage } from '../../shared/messages/index.js';

/**
 * One decision about one message: refused with a reason, or allowed; an allowed registration names the
 * credential hash the node is bound to once the registration applies.
 */
export type AuthDecision = { ok: true; bindCredentialHash?: string } | { ok: false; reason: string };

/** Checks that a message may act on a node (see docs/security.md). */
export interface Authenticator {
  check(draft: NodeDraft, message: AgentMessage): AuthDecision;
  /**
   * For a heartbeat written without a read: the credential hash the node must hold for the message to be its
   * own, or null when the message carries no usable node credential (a read then says why it is refused).
   */
  credentialCondition(message: AgentMessage): string | null;
}

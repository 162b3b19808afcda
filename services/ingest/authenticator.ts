import type { NodeDraft } from '../../shared/domain/apply-message.js';
import type { AgentMessage, RegisterMessage } from '../../shared/messages/index.js';

/** Checks that a message may act on a node (see docs/security.md). Returns a refusal reason, or null. */
export interface Authenticator {
  check(draft: NodeDraft, message: AgentMessage): string | null;
  /**
   * For a heartbeat written without a read: the credential hash the node must hold for the message to be its
   * own, or null when the message carries no usable node credential (a read then says why it is refused).
   */
  credentialCondition(message: AgentMessage): string | null;
  /** Binds the node to the credential of the registration that created or took it over. */
  onRegistered(draft: NodeDraft, message: RegisterMessage): void;
}

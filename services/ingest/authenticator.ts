import type { NodeDraft } from '../../shared/domain/apply-message.js';
import type { AgentMessage, RegisterMessage } from '../../shared/messages/index.js';

/** Checks that a message may act on a node (see docs/security.md). Returns a refusal reason, or null. */
export interface Authenticator {
  check(draft: NodeDraft, message: AgentMessage): string | null;
  /** Binds the node to the credential of the registration that created or took it over. */
  onRegistered(draft: NodeDraft, message: RegisterMessage): void;
}

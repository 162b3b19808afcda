import { credentialMatches, hashCredential, joinProofMatches, parseAuth } from './credentials.js';

export type AgentAction = 'register' | 'heartbeat' | 'shutdown';

export type AgentAuthDecision =
  | { ok: true; credentialHash: string }
  /** `reason` is what the dead-letter header and the HTTP message say; it never contains a secret. */
  | { ok: false; status: 401 | 403; code: string; reason: string };

/**
 * The one authentication rule, applied by the api (HTTP, answers 401/403) and the ingest (AMQP, dead-letters):
 * - a registration carries a credential and a proof of the join token; over an existing node it must carry
 *   that node's credential (or the node was reset by an operator, or registered before auth was on);
 * - a heartbeat or shutdown carries the credential of the node it names.
 * `storedHash`: the node's credentialHash, null when it has none, undefined when the node is not registered.
 */
export function decideAgentAuth(input: { joinToken: string; action: AgentAction; nodeId: string; auth: unknown; storedHash: string | null | undefined }): AgentAuthDecision {
  const { action, nodeId, storedHash } = input;
  const parsed = parseAuth(input.auth);
  if (!parsed) return refuse(401, 'UNAUTHENTICATED', 'unauthenticated: missing or malformed credential');
  if (action === 'register') {
    if (parsed.kind !== 'join') return refuse(401, 'JOIN_TOKEN_REQUIRED', 'unauthenticated: a registration needs the cluster join token');
    if (!joinProofMatches(input.joinToken, nodeId, parsed.credential, parsed.proof)) return refuse(401, 'INVALID_JOIN_TOKEN', 'unauthenticated: invalid join token');
    if (storedHash && !credentialMatches(parsed.credential, storedHash)) {
      return refuse(403, 'NODE_ID_TAKEN', `forbidden: node ${nodeId} is registered with another credential (an operator must reset it first)`);
    }
    return { ok: true, credentialHash: hashCredential(parsed.credential) };
  }
  if (parsed.kind !== 'node') return refuse(401, 'UNAUTHENTICATED', 'unauthenticated: expected the node credential');
  if (storedHash === null) return refuse(403, 'NO_CREDENTIAL_ON_RECORD', `forbidden: node ${nodeId} has no credential on record; register it again with the join token`);
  if (storedHash !== undefined && !credentialMatches(parsed.credential, storedHash)) {
    return refuse(403, 'WRONG_CREDENTIAL', `forbidden: the credential is not the one of node ${nodeId}`);
  }
  return { ok: true, credentialHash: hashCredential(parsed.credential) };
}

function refuse(status: 401 | 403, code: string, reason: string): AgentAuthDecision {
  return { ok: false, status, code, reason };
}

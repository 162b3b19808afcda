import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Per-node credentials (docs/security.md). An agent generates its credential once (32 random bytes,
 * base64url) and keeps it; the orchestrator stores only its SHA-256. Registrations also prove knowledge of
 * the cluster join token with an HMAC, so the token itself never travels or sits in a queue.
 */

const CREDENTIAL = /^[A-Za-z0-9_-]{32,128}$/;
const PROOF = /^[A-Za-z0-9_-]{43}$/;
const HASH_PREFIX = 'sha256:';

export function generateCredential(): string {
  return randomBytes(32).toString('base64url');
}

export function isCredential(value: unknown): value is string {
  return typeof value === 'string' && CREDENTIAL.test(value);
}

/** What the store keeps: `sha256:<hex>`. A 256-bit random secret needs no slow hash. */
export function hashCredential(credential: string): string {
  return HASH_PREFIX + createHash('sha256').update(credential, 'utf8').digest('hex');
}

/** Compares two secrets in constant time whatever their lengths (equal-length digests go to timingSafeEqual). */
export function secretEquals(a: string, b: string): boolean {
  const da = createHash('sha256').update(a, 'utf8').digest();
  const db = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(da, db);
}

export function credentialMatches(credential: string, storedHash: string): boolean {
  return secretEquals(hashCredential(credential), storedHash);
}

/** HMAC-SHA256(joinToken, "agent.register\n<nodeId>\n<credential>"), base64url: binds the registration to the token. */
export function joinProof(joinToken: string, nodeId: string, credential: string): string {
  return createHmac('sha256', joinToken).update(`agent.register\n${nodeId}\n${credential}`, 'utf8').digest('base64url');
}

export function joinProofMatches(joinToken: string, nodeId: string, credential: string, proof: string): boolean {
  return secretEquals(joinProof(joinToken, nodeId, credential), proof);
}

/**
 * The auth string, the same in the envelope's `auth` field and after `Authorization: Bearer`:
 * `<credential>` on heartbeats and shutdowns, `<credential>.<joinProof>` on registrations
 * (base64url has no '.', so the split is unambiguous).
 */
export type ParsedAuth = { kind: 'node'; credential: string } | { kind: 'join'; credential: string; proof: string };

export function formatNodeAuth(credential: string): string {
  return credential;
}

export function formatJoinAuth(joinToken: string, nodeId: string, credential: string): string {
  return `${credential}.${joinProof(joinToken, nodeId, credential)}`;
}

export function parseAuth(value: unknown): ParsedAuth | null {
  if (typeof value !== 'string' || value.length > 512) return null;
  const parts = value.split('.');
  if (parts.length === 1 && isCredential(parts[0])) return { kind: 'node', credential: parts[0] };
  if (parts.length === 2 && isCredential(parts[0]) && PROOF.test(parts[1]!)) return { kind: 'join', credential: parts[0], proof: parts[1]! };
  return null;
}

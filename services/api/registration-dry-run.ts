import type { RegisterBody } from '../../shared/messages/index.js';
import type { NodeRecord } from '../../shared/store/node-record.js';

/** Who holds a node id, as a dry-run registration answers it (docs/reference.md, HTTP API). */
export type NodeIdHolder = 'free' | 'this-host' | 'taken';

/** The answer to `POST /api/nodes/register?dryRun=true`: what a real registration would meet; nothing is sent or stored. */
export interface DryRunAnswer {
  nodeId: string;
  dryRun: true;
  accepted: true;
  auth: 'on' | 'off';
  node: NodeIdHolder;
  /** TIMEOUT_MINUTES in seconds: a node silent this long is OFFLINE. Absent when the api was not told it. */
  timeoutSeconds?: number;
}

/** `?dryRun=true` (or `1`): the agent's preflight (`--check`) asks whether a registration would be accepted. */
export function isDryRun(query: unknown): boolean {
  const value = (query as Record<string, unknown> | undefined)?.dryRun;
  return value === 'true' || value === '1';
}

/**
 * Who holds the node id. With authentication the guard has already refused a registration over another
 * credential (403 NODE_ID_TAKEN), so a stored credential here is the caller's own. Without one (auth off, or a
 * node registered before auth was on) the host name reported at registration decides.
 */
export function nodeIdHolder(stored: Pick<NodeRecord, 'hostname' | 'credentialHash'> | null, body: Pick<RegisterBody, 'hostname'>, credentialVerified: boolean): NodeIdHolder {
  if (!stored) return 'free';
  if (credentialVerified && stored.credentialHash) return 'this-host';
  return stored.hostname === body.hostname ? 'this-host' : 'taken';
}

export function dryRunAnswer(options: {
  body: RegisterBody;
  stored: Pick<NodeRecord, 'hostname' | 'credentialHash'> | null;
  auth: string | undefined;
  timeoutMs?: number;
}): DryRunAnswer {
  const { body, stored, auth } = options;
  return {
    nodeId: body.nodeId,
    dryRun: true,
    accepted: true,
    auth: auth === undefined ? 'off' : 'on',
    node: nodeIdHolder(stored, body, auth !== undefined),
    ...(options.timeoutMs !== undefined ? { timeoutSeconds: options.timeoutMs / 1000 } : {}),
  };
}

import { z } from 'zod';

/** The node id rule, the same on every transport: 1-64 characters of A-Z a-z 0-9 . _ - (safe in routing keys, URLs and `_id`). */
export const NODE_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export const nodeIdSchema = z.string({ error: 'nodeId must be a string' }).regex(NODE_ID_PATTERN, { error: 'nodeId must be 1-64 characters of A-Z a-z 0-9 . _ -' });

export function isValidNodeId(value: unknown): value is string {
  return typeof value === 'string' && NODE_ID_PATTERN.test(value);
}

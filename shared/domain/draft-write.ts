import type { NodeRecord, NodeWrite } from '../store/node-record.js';
import type { NodeDraft } from './apply-message.js';
import { newRev } from './node-events.js';

/**
 * The single store write that makes a draft durable, or null when nothing changed: an insert for a new node,
 * otherwise an update guarded by the rev the draft was read at. (Heartbeats of ONLINE nodes are written
 * without a read, as refreshes: shared/domain/heartbeat-refresh.ts.)
 */
export function draftToWrite(draft: NodeDraft, extra: Partial<NodeRecord> = {}): NodeWrite | null {
  const node = draft.node;
  if (!node) return null;
  if (!draft.original) {
    return { kind: 'insert', record: { ...node, ...extra, rev: newRev(), outbox: [...draft.events] } };
  }
  const { nodeId, rev, outbox, ...fields } = { ...node, ...extra };
  void outbox;
  return {
    kind: 'update',
    nodeId,
    expectedRev: rev,
    newRev: newRev(),
    set: fields,
    pushOutbox: [...draft.events],
    ...(draft.historyPoint ? { historyPoint: draft.historyPoint } : {}),
  };
}

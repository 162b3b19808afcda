import type { NodeRecord, NodeWrite } from '../store/node-record.js';
import type { NodeDraft } from './apply-message.js';
import { newRev } from './node-events.js';

/**
 * The single store write that makes a draft durable, or null when nothing changed: a refresh when an
 * ONLINE node stays ONLINE with the same credential (the common heartbeat), otherwise a rev-guarded update.
 */
export function draftToWrite(draft: NodeDraft, extra: Partial<NodeRecord> = {}): NodeWrite | null {
  const node = draft.node;
  if (!node) return null;
  if (!draft.original) {
    return { kind: 'insert', record: { ...node, ...extra, rev: newRev(), outbox: [...draft.events] } };
  }
  const original = draft.original;
  const merged = { ...node, ...extra };
  if (!draft.events.length && original.status === 'ONLINE' && merged.status === 'ONLINE' && merged.credentialHash === original.credentialHash) {
    return {
      kind: 'refresh',
      nodeId: merged.nodeId,
      lastHeartbeat: merged.lastHeartbeat,
      stats: merged.stats,
      set: {
        hostname: merged.hostname,
        ipAddress: merged.ipAddress,
        maxServers: merged.maxServers,
        clockSkewMs: merged.clockSkewMs,
        reregisterRequestedAt: merged.reregisterRequestedAt,
        ...(draft.historyChanged ? { history: merged.history } : {}),
      },
    };
  }
  const { nodeId, rev, outbox, history, ...fields } = merged;
  void outbox;
  return {
    kind: 'update',
    nodeId,
    expectedRev: rev,
    newRev: newRev(),
    set: draft.historyChanged ? { ...fields, history } : fields,
    pushOutbox: [...draft.events],
  };
}

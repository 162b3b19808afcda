import { randomUUID } from 'node:crypto';
import type { NodeEvent } from '../../shared/messages/index.js';
import type { NodeRecord, NodeWrite } from '../../shared/store/node-record.js';

export const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
export const at = (offsetMs: number) => new Date(T0 + offsetMs);

/** A complete stored node; every Date-typed field is set so adapters have to bring each back as a Date. */
export function nodeRecord(nodeId: string, overrides: Partial<NodeRecord> = {}): NodeRecord {
  return {
    nodeId,
    hostname: `${nodeId}.example`,
    ipAddress: '10.0.0.7',
    maxServers: 20,
    status: 'ONLINE',
    registeredAt: at(-3_600_000),
    lastHeartbeat: at(0),
    statusChangedAt: at(-3_600_000),
    statusVersion: 1,
    rev: randomUUID(),
    stats: { cpuUsage: 12.5, memoryUsage: 40.25, diskUsage: 55, containerCount: 3, reportedAt: at(-1000) },
    outbox: [],
    clockSkewMs: 120,
    reregisterRequestedAt: at(-60_000),
    credentialHash: null,
    ...overrides,
  };
}

export function nodeEventFor(nodeId: string, statusVersion: number, overrides: Partial<NodeEvent> = {}): NodeEvent {
  return {
    eventId: randomUUID(),
    type: 'node.offline',
    version: 1,
    nodeId,
    status: 'OFFLINE',
    previousStatus: 'ONLINE',
    statusVersion,
    lastHeartbeat: at(0).toISOString(),
    occurredAt: at(180_000).toISOString(),
    reason: 'timeout',
    ...overrides,
  };
}

export const insert = (record: NodeRecord): NodeWrite => ({ kind: 'insert', record });

export type NodeUpdate = Extract<NodeWrite, { kind: 'update' }>;

export function update(nodeId: string, expectedRev: string, set: NodeUpdate['set'], pushOutbox: NodeEvent[] = []): NodeUpdate {
  return { kind: 'update', nodeId, expectedRev, newRev: randomUUID(), set, pushOutbox };
}

export type NodeRefresh = Extract<NodeWrite, { kind: 'refresh' }>;
export type NodeLate = Extract<NodeWrite, { kind: 'late' }>;

/** A heartbeat refresh of an ONLINE node; by default it moves nothing (lastHeartbeat at 0, as nodeRecord). */
export function refresh(nodeId: string, overrides: Partial<Omit<NodeRefresh, 'kind' | 'nodeId'>> = {}): NodeRefresh {
  return { kind: 'refresh', nodeId, lastHeartbeat: at(0), stats: null, ...overrides };
}

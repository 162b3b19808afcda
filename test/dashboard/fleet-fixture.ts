import type { HistoryPoint, NodeRecord, NodeWrite } from '../../shared/store/node-record.js';
import type { NodeStore } from '../../shared/store/node-store.js';

/** The id of fleet node `i`: fleet-00000, fleet-00001, … (nodeId order is index order). */
export const fleetNodeId = (i: number) => `fleet-${String(i).padStart(5, '0')}`;

/** Host name of fleet node `i`: host-<i>.rack-<i % 50>.<region>.games.example. */
export const fleetHostname = (i: number) => `host-${i}.rack-${i % 50}.${['eu', 'us', 'ap'][i % 3]}.games.example`;

/** Every seventh node is OFFLINE (so every rack holds both). */
export const fleetOffline = (i: number) => i % 7 === 0;

/** Node `i` of a fleet as a registered node with recent stats (its history: fleetHistory). */
export function fleetNode(i: number, now: number): NodeRecord {
  const nodeId = fleetNodeId(i);
  const offline = fleetOffline(i);
  const lastHeartbeat = new Date(now - (offline ? 600_000 + i * 10 : (i % 55) * 1000 + 1000));
  const cpu = (i * 37) % 100;
  const mem = 20 + ((i * 53) % 75);
  const stats = { cpuUsage: cpu, memoryUsage: mem, diskUsage: 30 + ((i * 11) % 60), containerCount: (i * 7) % 21, reportedAt: lastHeartbeat };
  return {
    nodeId,
    hostname: fleetHostname(i),
    ipAddress: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    maxServers: 20,
    status: offline ? 'OFFLINE' : 'ONLINE',
    registeredAt: new Date(now - 86_400_000),
    lastHeartbeat,
    statusChangedAt: new Date(offline ? lastHeartbeat.getTime() + 180_000 : now - 86_400_000),
    statusVersion: offline ? 2 : 1,
    rev: `seed-${i}`,
    stats,
    outbox: [],
    clockSkewMs: 0,
    reregisterRequestedAt: null,
    credentialHash: null,
  };
}

/** An hour of sparkline history (12 points, 5 min apart) for the fleet node `i`, ending at its last heartbeat. */
export function fleetHistory(i: number, now: number): HistoryPoint[] {
  const node = fleetNode(i, now);
  const cpu = node.stats!.cpuUsage;
  const mem = node.stats!.memoryUsage;
  return Array.from({ length: 12 }, (_, k) => {
    const t = new Date(node.lastHeartbeat!.getTime() - (11 - k) * 300_000);
    const wave = Math.sin((i + k) / 2);
    return { t, cpu: Math.max(0, Math.min(100, cpu + wave * 15)), mem: Math.max(0, Math.min(100, mem + Math.cos((i + k) / 3) * 8)) };
  });
}

/**
 * Inserts `count` fleet nodes straight into the store (inserts in chunks: one insert command each); the first
 * `withHistory` of them (those on the first pages) get an hour of history, the rest none.
 */
export async function seedFleet(store: NodeStore, count: number, now = Date.now(), chunk = 2000, withHistory = 200): Promise<void> {
  for (let start = 0; start < count; start += chunk) {
    const writes = [];
    for (let i = start; i < Math.min(count, start + chunk); i++) writes.push({ kind: 'insert' as const, record: fleetNode(i, now) });
    const result = await store.write(writes);
    if (result.conflicts.length) throw new Error(`seeding the fleet: ${result.conflicts.length} nodes existed already`);
  }
  // The points as heartbeats of ONLINE nodes leave them; the refreshes' older lastHeartbeat changes nothing.
  const points: NodeWrite[] = [];
  for (let i = 0; i < Math.min(count, withHistory); i++) {
    if (fleetOffline(i)) continue;
    for (const point of fleetHistory(i, now)) {
      points.push({ kind: 'refresh', nodeId: fleetNodeId(i), lastHeartbeat: point.t, stats: null, historyPoint: point });
    }
  }
  for (let start = 0; start < points.length; start += chunk) await store.write(points.slice(start, start + chunk));
}

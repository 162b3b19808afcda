import type { NodeRecord } from '../../shared/store/node-record.js';
import type { NodeStore } from '../../shared/store/node-store.js';

/** The id of fleet node `i`: fleet-00000, fleet-00001, … (nodeId order is index order). */
export const fleetNodeId = (i: number) => `fleet-${String(i).padStart(5, '0')}`;

/** Host name of fleet node `i`: host-<i>.rack-<i % 50>.<region>.games.example. */
export const fleetHostname = (i: number) => `host-${i}.rack-${i % 50}.${['eu', 'us', 'ap'][i % 3]}.games.example`;

/** Every seventh node is OFFLINE (so every rack holds both). */
export const fleetOffline = (i: number) => i % 7 === 0;

/**
 * Node `i` of a fleet as a registered node with recent stats. The first `withHistory` nodes (the first
 * pages) carry an hour of sparkline history; the rest none, which keeps the store's documents small.
 */
export function fleetNode(i: number, now: number, withHistory = 200): NodeRecord {
  const nodeId = fleetNodeId(i);
  const offline = fleetOffline(i);
  const lastHeartbeat = new Date(now - (offline ? 600_000 + i * 10 : (i % 55) * 1000 + 1000));
  const cpu = (i * 37) % 100;
  const mem = 20 + ((i * 53) % 75);
  const stats = { cpuUsage: cpu, memoryUsage: mem, diskUsage: 30 + ((i * 11) % 60), containerCount: (i * 7) % 21, reportedAt: lastHeartbeat };
  const history =
    i < withHistory
      ? Array.from({ length: 12 }, (_, k) => {
          const t = new Date(lastHeartbeat.getTime() - (11 - k) * 300_000);
          const wave = Math.sin((i + k) / 2);
          return { t, cpu: Math.max(0, Math.min(100, cpu + wave * 15)), mem: Math.max(0, Math.min(100, mem + Math.cos((i + k) / 3) * 8)) };
        })
      : [];
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
    history,
    outbox: [],
    clockSkewMs: 0,
    reregisterRequestedAt: null,
    credentialHash: null,
  };
}

/** Inserts `count` fleet nodes straight into the store (inserts in chunks: one insert command each). */
export async function seedFleet(store: NodeStore, count: number, now = Date.now(), chunk = 2000): Promise<void> {
  for (let start = 0; start < count; start += chunk) {
    const writes = [];
    for (let i = start; i < Math.min(count, start + chunk); i++) writes.push({ kind: 'insert' as const, record: fleetNode(i, now) });
    const result = await store.write(writes);
    if (result.conflicts.length) throw new Error(`seeding the fleet: ${result.conflicts.length} nodes existed already`);
  }
}

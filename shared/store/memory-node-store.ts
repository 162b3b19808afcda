import { readFileSync, writeFileSync, renameSync, existsSync } from 'node:fs';
import { historyStep, historyView, type HistorySettings } from '../domain/history.js';
import { STATS_FIELDS, type NodeStatus } from '../messages/index.js';
import type { CanaryRecord } from '../domain/path-coverage.js';
import type { FleetPace } from '../domain/heartbeat-pace.js';
import type { ClusterGuardState, ExpiryQuery, HistoryPoint, NodeRecord, NodeWrite } from './node-record.js';
import type { NodeStore, WriteResult } from './node-store.js';

export interface MemoryNodeStoreOptions {
  /** History steps shown per node (HISTORY_POINTS). */
  historyPoints: number;
  /** Width of one history step (default 30 s, as HISTORY_RESOLUTION_MS). */
  historyResolutionMs?: number;
  /** Save the nodes to this JSON file after each write, so an embedded restart keeps registrations. */
  stateFile?: string;
}

const clone = <T>(value: T): T => structuredClone(value);

/** In-process node store for the all-in-one mode and unit tests; behaves like the MongoDB adapter. */
export function createMemoryNodeStore(options: MemoryNodeStoreOptions): NodeStore & { roundTrips(): number } {
  const nodes = new Map<string, NodeRecord>();
  /** Each node's history points by step (the first stored in a step stays), as the MongoDB adapter keeps them. */
  const series = new Map<string, Map<number, HistoryPoint>>();
  const history: HistorySettings = { points: options.historyPoints, resolutionMs: options.historyResolutionMs ?? 30_000 };
  const canaries = new Map<string, CanaryRecord>();
  let guard: ClusterGuardState = { heldSince: null, eventId: null };
  let pace: FleetPace | null = null;
  let lease: { holder: string; until: Date } | null = null;
  let trips = 0;
  let saveTimer: NodeJS.Timeout | null = null;

  if (options.stateFile && existsSync(options.stateFile)) {
    const saved = JSON.parse(readFileSync(options.stateFile, 'utf8')) as SavedNode[];
    for (const raw of saved) {
      const { node, points } = revive(raw);
      for (const point of points) addPoint(node.nodeId, point);
      nodes.set(node.nodeId, node);
    }
  }

  /** Like MongoDB's insert by step id: the first point of a step stays. Steps too old to be shown again are dropped. */
  function addPoint(nodeId: string, point: HistoryPoint | undefined): void {
    if (!point || history.points <= 0) return;
    const steps = series.get(nodeId) ?? new Map<number, HistoryPoint>();
    const step = historyStep(point.t.getTime(), history);
    if (!steps.has(step)) steps.set(step, clone(point));
    const newest = Math.max(...steps.keys());
    for (const s of steps.keys()) if (s <= newest - history.points) steps.delete(s);
    series.set(nodeId, steps);
  }
  const pointsOf = (nodeId: string) => series.get(nodeId)?.values() ?? [];

  function scheduleSave(): void {
    if (!options.stateFile || saveTimer) return;
    saveTimer = setTimeout(() => {
      saveTimer = null;
      saveNow();
    }, 200);
    saveTimer.unref();
  }
  function saveNow(): void {
    if (!options.stateFile) return;
    const tmp = `${options.stateFile}.tmp`;
    const saved: SavedNode[] = [...nodes.values()].map((node) => ({ ...node, history: [...pointsOf(node.nodeId)] }));
    writeFileSync(tmp, JSON.stringify(saved));
    renameSync(tmp, options.stateFile);
  }

  const byExpiry = (a: NodeRecord, b: NodeRecord) => (a.lastHeartbeat?.getTime() ?? 0) - (b.lastHeartbeat?.getTime() ?? 0);

  return {
    roundTrips: () => trips,
    async get(nodeId) {
      trips++;
      const node = nodes.get(nodeId);
      return node ? clone(node) : null;
    },
    async getMany(nodeIds) {
      trips++;
      const found = new Map<string, NodeRecord>();
      for (const id of nodeIds) {
        const node = nodes.get(id);
        if (node) found.set(id, clone(node));
      }
      return found;
    },
    async list(filter = {}) {
      trips++;
      return (
        [...nodes.values()]
          .filter((n) => !filter.status || n.status === filter.status)
          // Byte order, like MongoDB's sort on _id (localeCompare would interleave case and punctuation).
          .sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0))
          .map(clone)
      );
    },
    async histories(nodeIds, until) {
      trips++;
      return new Map(nodeIds.map((nodeId) => [nodeId, historyView(pointsOf(nodeId), until.getTime(), history)]));
    },
    async write(writes: NodeWrite[]): Promise<WriteResult> {
      trips++;
      const conflicts: string[] = [];
      for (const w of writes) {
        if (w.kind === 'insert') {
          if (nodes.has(w.record.nodeId)) conflicts.push(w.record.nodeId);
          else nodes.set(w.record.nodeId, clone(w.record));
          continue;
        }
        const current = nodes.get(w.nodeId);
        if (w.kind === 'late') {
          const applies =
            current?.status === 'ONLINE' &&
            (w.clockSkewBelowMs === undefined || (current.clockSkewMs !== null && current.clockSkewMs < w.clockSkewBelowMs)) &&
            (w.credentialHash === undefined || current.credentialHash === w.credentialHash);
          if (!applies) conflicts.push(w.nodeId);
          else nodes.set(w.nodeId, { ...current, stats: maxStats(current.stats, w.stats) });
          continue;
        }
        if (w.kind === 'refresh') {
          const applies =
            current?.status === 'ONLINE' &&
            (w.minClockSkewMs === undefined || (current.clockSkewMs !== null && current.clockSkewMs >= w.minClockSkewMs)) &&
            (w.credentialHash === undefined || current.credentialHash === w.credentialHash) &&
            (current.intervalMs ?? null) === (w.pace?.intervalMs ?? null) &&
            (current.timeoutMs ?? null) === (w.pace?.timeoutMs ?? null) &&
            (current.pendingTimeoutMs ?? null) === null;
          if (!applies) {
            conflicts.push(w.nodeId);
            continue;
          }
          nodes.set(w.nodeId, {
            ...current,
            lastHeartbeat: maxDate(current.lastHeartbeat, w.lastHeartbeat),
            stats: maxStats(current.stats, w.stats),
            // MongoDB's $min: a null baseline stays null (null sorts below numbers).
            clockSkewMs: w.clockSkewMs === undefined || current.clockSkewMs === null ? current.clockSkewMs : Math.min(current.clockSkewMs, w.clockSkewMs),
            ...(current.timeoutMs == null ? {} : { expiresAt: maxDate(current.expiresAt ?? null, new Date(w.lastHeartbeat.getTime() + current.timeoutMs)) }),
          });
          addPoint(w.nodeId, w.historyPoint);
          continue;
        }
        const silent = !w.silentBefore || (current?.status === 'ONLINE' && current.lastHeartbeat !== null && current.lastHeartbeat < w.silentBefore);
        if (!current || current.rev !== w.expectedRev || !silent) {
          conflicts.push(w.nodeId);
          continue;
        }
        const next: NodeRecord = { ...current, ...clone(w.set), rev: w.newRev, prevRev: w.expectedRev };
        next.lastHeartbeat = maxDate(current.lastHeartbeat, w.set.lastHeartbeat ?? null);
        next.stats = maxStats(current.stats, w.set.stats ?? null);
        // Like lastHeartbeat, a deadline only moves forward, unless the node goes back to the default timeout.
        if (w.set.expiresAt !== undefined) next.expiresAt = w.set.expiresAt === null ? null : maxDate(current.expiresAt ?? null, w.set.expiresAt);
        next.outbox = [...current.outbox, ...clone(w.pushOutbox)];
        nodes.set(w.nodeId, next);
        addPoint(w.nodeId, w.historyPoint);
      }
      scheduleSave();
      return { conflicts, roundTrips: 1 };
    },
    async *findExpired(query, pageSize) {
      // One query: the expired nodes as they are when the first page is asked for, handed out a page at a time.
      trips++;
      const expired = [...nodes.values()].filter((n) => isExpired(n, query)).sort(byExpiry);
      for (let i = 0; i < expired.length; i += pageSize) yield expired.slice(i, i + pageSize).map(clone);
    },
    async *scan(pageSize) {
      trips++;
      const all = [...nodes.values()];
      for (let i = 0; i < all.length; i += pageSize) yield all.slice(i, i + pageSize).map(clone);
    },
    async countExpired(query) {
      trips++;
      let count = 0;
      for (const n of nodes.values()) if (isExpired(n, query)) count++;
      return count;
    },
    async countByStatus() {
      trips++;
      const counts: Record<NodeStatus, number> = { ONLINE: 0, OFFLINE: 0 };
      for (const n of nodes.values()) counts[n.status]++;
      return counts;
    },
    async countOnline(upTo = Infinity) {
      trips++;
      let count = 0;
      for (const n of nodes.values()) if (n.status === 'ONLINE' && ++count >= upTo) break;
      return count;
    },
    async findWithOutbox(limit) {
      trips++;
      return [...nodes.values()]
        .filter((n) => n.outbox.length > 0)
        .slice(0, limit)
        .map(clone);
    },
    async removeFromOutbox(entries) {
      trips++;
      for (const { nodeId, events } of entries) {
        const node = nodes.get(nodeId);
        if (!node || !events.length) continue;
        const eventIds = new Set(events.map((e) => e.eventId));
        // Like MongoDB's $pull: no rev change, so it never conflicts with a transition.
        nodes.set(nodeId, { ...node, outbox: node.outbox.filter((e) => !eventIds.has(e.eventId)) });
      }
      scheduleSave();
    },
    async delete(nodeId) {
      trips++;
      const existed = nodes.delete(nodeId);
      series.delete(nodeId);
      scheduleSave();
      return existed;
    },
    async deleteAll() {
      nodes.clear();
      series.clear();
      canaries.clear();
      guard = { heldSince: null, eventId: null };
      pace = null;
      scheduleSave();
    },
    async canaries() {
      trips++;
      return [...canaries.values()].map(clone);
    },
    async recordCanarySender(report) {
      trips++;
      const current = canaries.get(report.senderId);
      canaries.set(report.senderId, {
        senderId: report.senderId,
        kind: report.kind,
        intervalMs: report.intervalMs,
        firstAliveAt: current?.firstAliveAt ?? new Date(report.aliveAt),
        aliveAt: new Date(report.aliveAt),
        sentAt: current?.sentAt ?? null,
        pathSince: current?.pathSince ?? null,
      });
    },
    async recordCanaryArrival(arrival) {
      trips++;
      const current = canaries.get(arrival.senderId);
      canaries.set(arrival.senderId, {
        senderId: arrival.senderId,
        kind: arrival.kind,
        intervalMs: arrival.intervalMs,
        firstAliveAt: current?.firstAliveAt ?? new Date(arrival.sentAt),
        aliveAt: current?.aliveAt ?? new Date(arrival.sentAt),
        sentAt: maxDate(current?.sentAt ?? null, arrival.sentAt),
        pathSince: arrival.pathSince ? new Date(arrival.pathSince) : null,
      });
    },
    async removeCanarySender(senderId) {
      canaries.delete(senderId);
    },
    async guardState() {
      return clone(guard);
    },
    async setGuardState(state) {
      guard = clone(state);
    },
    async fleetPace() {
      return pace ? clone(pace) : null;
    },
    async setFleetPace(next) {
      pace = clone(next);
    },
    async takeSweepLease(holder, now, until) {
      if (lease && lease.holder !== holder && lease.until.getTime() > now.getTime()) return false;
      lease = { holder, until: new Date(until) };
      return true;
    },
    async releaseSweepLease(holder) {
      if (lease?.holder === holder) lease = null;
    },
    async ping() {},
    async close() {
      if (saveTimer) {
        clearTimeout(saveTimer);
        saveTimer = null;
      }
      saveNow();
    },
  };
}

/**
 * The MongoDB adapter's expiry query: a node with its own deadline (`expiresAt`) by that, and only when its own
 * timeout fits the query's; one without (the default timeout, or written before nodes had their own) by
 * lastHeartbeat + the default timeout.
 */
function isExpired(n: NodeRecord, query: ExpiryQuery): boolean {
  if (n.status !== 'ONLINE') return false;
  if (n.expiresAt) return n.expiresAt < query.coveredUntil && (query.maxTimeoutMs === undefined || (n.timeoutMs ?? 0) <= query.maxTimeoutMs);
  return n.lastHeartbeat !== null && n.lastHeartbeat.getTime() < query.coveredUntil.getTime() - query.defaultTimeoutMs;
}

/** MongoDB's $max on a date. */
function maxDate(a: Date | null, b: Date | null): Date | null {
  if (!a) return b ? new Date(b) : null;
  if (!b) return a;
  return b > a ? new Date(b) : a;
}

/** MongoDB's $max on the stats document: field by field in stored order, reportedAt first. */
function maxStats(a: NodeRecord['stats'], b: NodeRecord['stats']): NodeRecord['stats'] {
  if (!a) return b ? clone(b) : null;
  if (!b) return a;
  const key = (s: NonNullable<NodeRecord['stats']>) => [new Date(s.reportedAt).getTime(), ...STATS_FIELDS.map((field) => s[field])];
  const [ka, kb] = [key(a), key(b)];
  for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return kb[i]! > ka[i]! ? clone(b) : a;
  return a;
}

/** A node in the state file: the record and its history's points. */
type SavedNode = NodeRecord & { history?: HistoryPoint[] };

function revive(saved: SavedNode): { node: NodeRecord; points: HistoryPoint[] } {
  const date = (v: unknown) => (v === null || v === undefined ? null : new Date(v as string));
  const { history, ...raw } = saved;
  const points = (history ?? []).map((p) => ({ ...p, t: new Date(p.t) }));
  const node: NodeRecord = {
    ...raw,
    registeredAt: new Date(raw.registeredAt),
    lastHeartbeat: date(raw.lastHeartbeat),
    statusChangedAt: new Date(raw.statusChangedAt),
    reregisterRequestedAt: date(raw.reregisterRequestedAt),
    expiresAt: date(raw.expiresAt),
    stats: raw.stats ? { ...raw.stats, reportedAt: new Date(raw.stats.reportedAt) } : null,
  };
  return { node, points };
}

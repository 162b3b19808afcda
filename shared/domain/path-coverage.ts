import type { ExpiryQuery } from '../store/node-record.js';

/**
 * Up to when the orchestrator could record heartbeats, proven end to end by canaries (docs/architecture.md,
 * "The heartbeat path and its canary"). Every sweeper and api process sends a canary heartbeat along the path
 * an agent's heartbeat takes; an ingest stores its send time on arrival. The sweeper marks a node OFFLINE only
 * for silence within that proven time, so no fault on the orchestrator's side (broker alarm, ingest down, store
 * refusing writes, a wedged channel, a queue that lost its majority) can make it call a live node dead.
 */

/** What the store keeps per canary sender. */
export interface CanaryRecord {
  senderId: string;
  /** 'sweeper' proves the broker path agents publish on; 'api' also the api's hop for HTTP agents. */
  kind: 'sweeper' | 'api';
  intervalMs: number;
  /** Written by the sender itself, straight to the store, at every canary it sends: the sender is running. */
  firstAliveAt: Date;
  aliveAt: Date;
  /** Send time of the newest canary of this sender that an ingest stored; null before the first. */
  sentAt: Date | null;
  /** Start of the current unbroken run of this sender's canaries, when the run follows a break; null when none was seen. */
  pathSince: Date | null;
}

/** A running sender whose newest canary is older than this many intervals makes the path `down` (reported). */
const DOWN_AFTER_INTERVALS = 10;
/** A sender that has not said it is alive for this many intervals is gone (stopped or dead), and counts no more. */
const GONE_AFTER_INTERVALS = 4;
/** A new sender counts once its first canary arrived, or after this many intervals without one. */
const FIRST_CANARY_GRACE_INTERVALS = 10;

/**
 * A canary that took longer than this to make the trip shows a path that was not recording heartbeats when
 * it should have (an ingest stopped, a store refusing writes, a backlog): a third of the timeout, at least
 * 2 s so that a busy machine is not taken for a stopped ingest. Orchestrator hosts' clocks are assumed to
 * agree within well under that (NTP).
 */
export function stalledAfterMs(timeoutMs: number): number {
  return Math.max(2000, Math.round(timeoutMs / 3));
}

/**
 * The record after a canary sent at `sentAt` arrived at `arrivedAt`, or null when a newer one already did.
 * A new run starts when the path broke: the sender could not get an earlier canary onto it (`failedBefore`:
 * the broker refused, blocked or did not confirm it, and agents' heartbeats sent then failed the same way), or
 * this one arrived stalled. The run starts at the arrival, so after any outage every node gets a full timeout
 * from the time heartbeats were recorded again.
 */
export function canaryArrived(
  record: Pick<CanaryRecord, 'sentAt' | 'pathSince'> | null,
  canary: { sentAt: number; arrivedAt: number; failedBefore: boolean },
  stalledAfter: number,
): Pick<CanaryRecord, 'sentAt' | 'pathSince'> | null {
  const previous = record?.sentAt?.getTime() ?? null;
  if (previous !== null && canary.sentAt <= previous) return null;
  const broke = canary.failedBefore || canary.arrivedAt - canary.sentAt > stalledAfter;
  return { sentAt: new Date(canary.sentAt), pathSince: broke ? new Date(Math.max(canary.sentAt, canary.arrivedAt)) : (record?.pathSince ?? null) };
}

export interface PathCoverage {
  /** `down`: no sender runs, or a running one has got nothing through for DOWN_AFTER_INTERVALS intervals. */
  state: 'up' | 'down';
  /** Why the path is down, for the log and /readyz. */
  reason: string | null;
  /** Heartbeats sent up to this time have been recorded (the oldest of the running senders' newest arrivals). */
  coveredUntil: number | null;
  /** After a break: heartbeats are recorded again since this time. */
  since: number | null;
  /** Running senders whose canaries arrive. */
  senders: number;
}

/** The coverage the canary records prove at `now`. */
export function pathCoverage(records: CanaryRecord[], now: number): PathCoverage {
  let coveredUntil: number | null = null;
  let since: number | null = null;
  let senders = 0;
  let down: string | null = null;
  for (const r of records) {
    if (now - r.aliveAt.getTime() > GONE_AFTER_INTERVALS * r.intervalMs) continue;
    const sentAt = r.sentAt?.getTime() ?? null;
    if (sentAt === null) {
      if (now - r.firstAliveAt.getTime() <= FIRST_CANARY_GRACE_INTERVALS * r.intervalMs) continue;
      down ??= `no canary from ${r.kind} ${r.senderId} has made the trip since it started ${seconds(now - r.firstAliveAt.getTime())} ago`;
      continue;
    }
    senders++;
    if (now - sentAt > DOWN_AFTER_INTERVALS * r.intervalMs) down ??= `the last canary from ${r.kind} ${r.senderId} that made the trip was sent ${seconds(now - sentAt)} ago`;
    coveredUntil = coveredUntil === null ? sentAt : Math.min(coveredUntil, sentAt);
    const runSince = r.pathSince?.getTime() ?? null;
    if (runSince !== null) since = since === null ? runSince : Math.max(since, runSince);
  }
  if (!down && coveredUntil === null) down = 'no canary sender is running';
  return { state: down ? 'down' : 'up', reason: down, coveredUntil, since, senders };
}

/**
 * The sweep's cutoff: nodes silent since before it are OFFLINE. Only silence within proven time counts, so
 * while the path is down the cutoff stays where the last canary left it (nodes silent since before the break
 * are still marked), and after a break every node gets a full timeout from the time the path came back.
 */
export function offlineCutoff(coverage: PathCoverage, timeoutMs: number): { cutoff: number } | { held: 'path-down' | 'path-recovering'; reason: string } {
  if (coverage.coveredUntil === null) return { held: 'path-down', reason: coverage.reason ?? 'no canary has made the trip' };
  const cutoff = coverage.coveredUntil - timeoutMs;
  if (coverage.since !== null && coverage.since > cutoff) {
    return { held: 'path-recovering', reason: `heartbeats are recorded again since ${new Date(coverage.since).toISOString()}: every node gets a full timeout from then` };
  }
  return { cutoff };
}

/**
 * The sweep's expiry query: a node is OFFLINE once its own deadline (lastHeartbeat + its own timeout, or the
 * default one) is before the proven time. After a break, the rule above holds per node: a node with a longer
 * timeout of its own is left out until a full one of its own has passed since the path came back.
 */
export function offlineQuery(coverage: PathCoverage, timeoutMs: number): { query: ExpiryQuery } | { held: 'path-down' | 'path-recovering'; reason: string } {
  const decision = offlineCutoff(coverage, timeoutMs);
  if ('held' in decision) return decision;
  const coveredUntil = decision.cutoff + timeoutMs;
  return {
    query: { coveredUntil: new Date(coveredUntil), defaultTimeoutMs: timeoutMs, ...(coverage.since !== null ? { maxTimeoutMs: coveredUntil - coverage.since } : {}) },
  };
}

function seconds(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}

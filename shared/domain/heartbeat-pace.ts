/**
 * The heartbeat pace (docs/architecture.md, "The heartbeat pace"): the orchestrator lengthens the interval of
 * agents that declare theirs so that the whole fleet sends at most HEARTBEAT_MAX_RATE heartbeats a second, and
 * judges each such node by its own timeout. Pure: the sweeper computes the fleet's pace, the api and the ingest
 * derive each node's from it, and the rules below decide when a node's stored deadline may change.
 */

/** The fleet-wide pace, one record for the whole deployment (orchestrator_state `pace:heartbeat`). */
export interface FleetPace {
  /** The advertised fleet interval in seconds, ceil(ONLINE / HEARTBEAT_MAX_RATE) when it last moved; 0: none. */
  intervalSeconds: number;
  /** The ONLINE nodes the advertised interval was computed from. */
  fleetSize: number;
  /** When the advertised interval last moved (ms since the epoch). */
  changedAt: number;
  /** The newest count of ONLINE nodes, and when it was taken. */
  onlineNodes: number;
  countedAt: number;
}

export interface PaceSettings {
  /** HEARTBEAT_MAX_RATE: heartbeats a second the fleet may send at most; 0 turns adaptation off. */
  maxRate: number;
  /** HEARTBEAT_PACE_MIN_CHANGE_MS: the advertised interval moves at most this often (and the fleet is counted this often). */
  minChangeMs: number;
}

/** The advertised interval moves only when the computed one differs from it by more than this share (both ways). */
export const PACE_CHANGE_THRESHOLD = 0.2;
/** Agents are never told to beat less often than this (the agent's own bound too). */
export const MAX_TOLD_INTERVAL_SECONDS = 600;
/** A node's timeout is this many of its intervals, unless TIMEOUT_MINUTES is longer (60 s beats, 3 min timeout). */
export const TIMEOUT_INTERVALS = 3;
/** A pending shorter timeout takes effect with the first heartbeat at most this many new intervals after the one before. */
export const NEW_PACE_TOLERANCE = 1.5;

/** ceil(ONLINE / max rate) in seconds, at most MAX_TOLD_INTERVAL_SECONDS; 0 when adaptation is off or nobody is ONLINE. */
export function fleetInterval(online: number, maxRate: number): number {
  if (maxRate <= 0 || online <= 0) return 0;
  return Math.min(MAX_TOLD_INTERVAL_SECONDS, Math.ceil(online / maxRate));
}

/** Whether the sweeper should count the fleet now: at most once per `minChangeMs` (the pace cannot move sooner). */
export function paceCountDue(current: FleetPace | null, now: number, settings: PaceSettings): boolean {
  return settings.maxRate > 0 && (current === null || now - current.countedAt >= settings.minChangeMs);
}

/**
 * The fleet's pace after a count of `online` ONLINE nodes at `now`, with hysteresis: the advertised interval
 * follows the computed one only when they differ by more than PACE_CHANGE_THRESHOLD of the advertised one and
 * the last move is at least `minChangeMs` old, so churn of the fleet causes no storm of control messages.
 */
export function nextFleetPace(current: FleetPace | null, online: number, now: number, settings: PaceSettings): FleetPace {
  const computed = fleetInterval(online, settings.maxRate);
  if (current === null) return { intervalSeconds: computed, fleetSize: online, changedAt: now, onlineNodes: online, countedAt: now };
  const counted = { ...current, onlineNodes: online, countedAt: now };
  const advertised = current.intervalSeconds;
  const differs = advertised === 0 ? computed !== 0 : Math.abs(computed - advertised) > PACE_CHANGE_THRESHOLD * advertised;
  if (!differs || now - current.changedAt < settings.minChangeMs) return counted;
  return { ...counted, intervalSeconds: computed, fleetSize: online, changedAt: now };
}

/** Heartbeats a second the fleet sends when every agent follows the pace: ONLINE nodes ÷ the advertised interval. */
export function expectedRate(pace: FleetPace): number {
  return pace.intervalSeconds > 0 ? pace.onlineNodes / pace.intervalSeconds : 0;
}

/** What one node is told, in seconds (the protocol's unit): the agent follows it. */
export interface NodePace {
  heartbeatInterval: number;
  timeout: number;
  /** The ONLINE nodes the fleet's interval was computed from (for the agent's log line). */
  fleetSize: number;
}

/**
 * The pace of a node whose agent declared `declaredSeconds`: interval = max(declared, the fleet's advertised
 * interval), timeout = max(TIMEOUT_MINUTES, 3 × interval).
 */
export function nodePace(declaredSeconds: number, fleet: FleetPace | null, defaultTimeoutMs: number): NodePace {
  const heartbeatInterval = Math.max(declaredSeconds, fleet?.intervalSeconds ?? 0);
  return { heartbeatInterval, timeout: Math.max(defaultTimeoutMs / 1000, TIMEOUT_INTERVALS * heartbeatInterval), fleetSize: fleet?.fleetSize ?? 0 };
}

/** A node's stored pace fields (shared/store/node-record.ts): what it was told, and the timeout it is judged by. */
export interface NodePaceFields {
  /** The interval the agent declared (ms), null for an agent that declared none (it is never told anything). */
  declaredIntervalMs?: number | null;
  /** The interval the agent was last told (ms), null when never told. */
  intervalMs?: number | null;
  /** The node's own timeout (ms), null: TIMEOUT_MINUTES. */
  timeoutMs?: number | null;
  /** A shorter timeout told and not yet in effect: it takes effect with the first heartbeat at the new pace. */
  pendingTimeoutMs?: number | null;
}

/** The pace as stored (ms), from what the node is told (s). */
export function paceMs(pace: Pick<NodePace, 'heartbeatInterval' | 'timeout'>): { intervalMs: number; timeoutMs: number } {
  return { intervalMs: Math.round(pace.heartbeatInterval * 1000), timeoutMs: Math.round(pace.timeout * 1000) };
}

/** Whether a node told `told` would be told something new (its stored pace is another, or a shorter timeout is still pending). */
export function paceDiffers(node: NodePaceFields, told: { intervalMs: number; timeoutMs: number }): boolean {
  const effective = node.pendingTimeoutMs ?? node.timeoutMs ?? null;
  return (node.intervalMs ?? null) !== told.intervalMs || effective !== told.timeoutMs;
}

/**
 * Stores what a node is told, before it is told (the caller writes, then tells): a longer (or equal) timeout
 * takes effect at once, so the node has it before its agent can slow down; a shorter one waits as pending,
 * so the node keeps the longer deadline until it beats at the new pace (settlePendingTimeout). Either way no
 * change of pace can make a node OFFLINE that follows what it was told.
 */
export function tellPace(node: NodePaceFields, told: { intervalMs: number; timeoutMs: number }): void {
  node.intervalMs = told.intervalMs;
  if (node.timeoutMs === null || node.timeoutMs === undefined || told.timeoutMs >= node.timeoutMs) {
    node.timeoutMs = told.timeoutMs;
    node.pendingTimeoutMs = null;
  } else {
    node.pendingTimeoutMs = told.timeoutMs;
  }
}

/**
 * A heartbeat received at `at` after the one at `previous`: when it came at the new pace (at most
 * NEW_PACE_TOLERANCE told intervals later), a pending shorter timeout takes effect. Returns whether it did.
 */
export function settlePendingTimeout(node: NodePaceFields, previous: number | null, at: number): boolean {
  if (node.pendingTimeoutMs == null || node.intervalMs == null || previous === null) return false;
  if (at - previous > NEW_PACE_TOLERANCE * node.intervalMs) return false;
  node.timeoutMs = node.pendingTimeoutMs;
  node.pendingTimeoutMs = null;
  return true;
}

/**
 * What the api told an agent, as its message carries it, within what the api can have told it: never slower
 * than the longest of the declared interval and MAX_TOLD_INTERVAL_SECONDS, so a forged message cannot give a
 * node a deadline far beyond what any pace gives.
 */
export function boundTold(told: Pick<NodePace, 'heartbeatInterval' | 'timeout'>, declaredSeconds: number, defaultTimeoutMs: number): { intervalMs: number; timeoutMs: number } {
  const longest = Math.max(declaredSeconds, MAX_TOLD_INTERVAL_SECONDS);
  const heartbeatInterval = Math.min(told.heartbeatInterval, longest);
  return paceMs({ heartbeatInterval, timeout: Math.min(told.timeout, Math.max(defaultTimeoutMs / 1000, TIMEOUT_INTERVALS * longest)) });
}

/** Forgets the pace of a node whose agent now declares nothing: it keeps the default timeout, as before adaptation. */
export function clearPace(node: NodePaceFields): void {
  node.declaredIntervalMs = null;
  node.intervalMs = null;
  node.timeoutMs = null;
  node.pendingTimeoutMs = null;
}

/** Sets `expiresAt` from lastHeartbeat and the node's own timeout; leaves a node that never had one as it is. */
export function syncDeadline(node: NodePaceFields & { lastHeartbeat: Date | null; expiresAt?: Date | null }): void {
  if (node.timeoutMs == null && node.expiresAt == null) return;
  node.expiresAt = expiresAt(node.lastHeartbeat, node.timeoutMs);
}

/** The time after which a node with its own timeout is OFFLINE, or null for a node judged by TIMEOUT_MINUTES. */
export function expiresAt(lastHeartbeat: Date | null, timeoutMs: number | null | undefined): Date | null {
  return lastHeartbeat === null || timeoutMs == null ? null : new Date(lastHeartbeat.getTime() + timeoutMs);
}

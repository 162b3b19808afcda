import { statsValues, type HeartbeatMessage } from '../messages/index.js';
import type { NodeWrite } from '../store/node-record.js';
import { brokerTiming, httpAge, receiveTime, type ApplyContext, type MessageOutcome, type ReceivedMessage } from './apply-message.js';
import { nodePace, paceDiffers, paceMs, type NodePaceFields } from './heartbeat-pace.js';

export type RefreshWrite = Extract<NodeWrite, { kind: 'refresh' }>;
export type LateWrite = Extract<NodeWrite, { kind: 'late' }>;

export interface RefreshPlan<W extends RefreshWrite | LateWrite = RefreshWrite> {
  write: W;
  /** One per message, in the order given: what applyMessage would have answered had the write applied. */
  outcomes: MessageOutcome[];
}

export interface RefreshOptions {
  /**
   * The credential hash the node must hold for these messages to be its own (authentication on), or null
   * when a message carries no usable credential and only a read can say why it is refused.
   */
  credentialHash?: string | null;
  /**
   * The node's clock baseline as last seen by this process, if any: for the reported message age, and (late
   * heartbeats) whether to try the write at all; the store checks the stored baseline either way.
   */
  knownClockSkewMs?: number | null;
  /**
   * The node's pace as this process last saw it stored (absent: none, as for a node whose agent declared no
   * interval). The write applies only while the store holds this pace, so a node whose deadline another process
   * changed is read and decided by the rules.
   */
  knownPace?: Pick<NodePaceFields, 'declaredIntervalMs' | 'intervalMs' | 'timeoutMs'>;
}

/**
 * The common case of the ingest, decided without reading the node: heartbeats of a node that is, and stays,
 * ONLINE. The rules are those of applyMessage, turned into conditions the store checks as it writes:
 * - the node is ONLINE (an OFFLINE node coming back is a status change, with an event);
 * - no message is late (semantics in docs/architecture.md): over HTTP the api's receive time says so here;
 *   over AMQP a message is late when its clock offset exceeds the stored baseline by more than the timeout,
 *   so the write requires a baseline of at least `max(offset + wait) − timeout`, and moves the baseline down
 *   to the lowest offset seen, as applyMessage does;
 * - with authentication on, the node holds the messages' credential;
 * - the node holds the pace this process knows (told interval, own timeout, nothing pending), and `expiresAt`
 *   moves forward with lastHeartbeat by that timeout. An AMQP agent whose pace the fleet's has moved away from
 *   must be told, after a write that stores it: that takes the read (as does a message carrying what the api told).
 * When the write does not apply, the store reports a conflict and the caller reads the node and applies the
 * messages one by one (applyMessage), which also refuses, revives or judges lateness exactly.
 * Returns null when the messages cannot be decided without a read (not all heartbeats, a late HTTP message,
 * a message late against an earlier one of the same batch, messages with different credentials).
 */
export function planHeartbeatRefresh(nodeId: string, messages: ReceivedMessage[], ctx: ApplyContext, options: RefreshOptions = {}): RefreshPlan | null {
  if (!messages.length || options.credentialHash === null) return null;
  const known = options.knownPace;
  if (messages.some((m) => m.message.type === 'agent.heartbeat' && m.message.told)) return null;
  if (known?.declaredIntervalMs != null && messages.some((m) => !m.message.receivedAt)) {
    if (paceDiffers(known, paceMs(nodePace(known.declaredIntervalMs / 1000, ctx.fleetPace ?? null, ctx.timeoutMs)))) return null;
  }
  let lastHeartbeat = -Infinity;
  let newest: { reportedAt: number; at: number; received: ReceivedMessage } | null = null;
  let lowestOffset = Infinity;
  let requiredSkew = -Infinity;
  const outcomes: MessageOutcome[] = [];
  for (const received of messages) {
    const message = received.message;
    if (message.type !== 'agent.heartbeat' || message.nodeId !== nodeId) return null;
    const at = receiveTime(received, ctx.now);
    let age: number;
    if (message.receivedAt) {
      age = httpAge(received, ctx.now);
      if (age > ctx.timeoutMs) return null;
    } else {
      const { offset, wait } = brokerTiming(received, ctx.now);
      // Late against this batch's own lower offsets: only the stored baseline can say how late; read it.
      const threshold = offset + wait - ctx.timeoutMs;
      lowestOffset = Math.min(lowestOffset, offset);
      if (lowestOffset < threshold) return null;
      requiredSkew = Math.max(requiredSkew, threshold);
      const baseline = Math.min(options.knownClockSkewMs ?? lowestOffset, lowestOffset);
      age = offset - baseline + wait;
    }
    outcomes.push({ kind: 'applied', ageMs: age });
    lastHeartbeat = Math.max(lastHeartbeat, at);
    const reportedAt = Date.parse(message.payload.timestamp);
    if (!newest || reportedAt > newest.reportedAt) newest = { reportedAt, at, received };
  }
  const payload = newest!.received.message.type === 'agent.heartbeat' ? newest!.received.message.payload : null;
  if (!payload) return null;
  const write: RefreshWrite = {
    kind: 'refresh',
    nodeId,
    lastHeartbeat: new Date(lastHeartbeat),
    stats: { ...statsValues(payload), reportedAt: new Date(newest!.reportedAt) },
    pace: { intervalMs: known?.intervalMs ?? null, timeoutMs: known?.timeoutMs ?? null },
  };
  if (ctx.history.points > 0) {
    const t = newest!.at;
    write.historyPoint = { t: new Date(t), cpu: payload.cpuUsage, mem: payload.memoryUsage };
  }
  if (Number.isFinite(lowestOffset)) {
    write.clockSkewMs = lowestOffset;
    write.minClockSkewMs = requiredSkew;
  }
  if (options.credentialHash) write.credentialHash = options.credentialHash;
  return { write, outcomes };
}

/**
 * Heartbeats that sat in a backlog, decided without reading the node while the ingest is behind. A late heartbeat's
 * only other effect, asking a starved agent to register again, is then not made (it would add to the backlog); the
 * first batch after the ingest caught up reads the node and asks. Every message must be late, as applyMessage
 * judges it: over HTTP by the api's receive time; over AMQP against the node's stored baseline, which the write
 * requires to be below every message's `offset + wait − timeout` (and at most its offset, so that none would move
 * the baseline). `knownClockSkewMs` (the baseline this process last saw stored) only says
 * whether to try: a write whose condition the store does not meet is a conflict, and the caller reads the node.
 * The write stores the newest stats and changes nothing about liveness. Returns null when not every message is late
 * or the messages cannot be decided without a read (not all heartbeats, different credentials).
 */
export function planLateHeartbeats(
  nodeId: string,
  messages: ReceivedMessage[],
  ctx: ApplyContext,
  options: Pick<RefreshOptions, 'credentialHash' | 'knownClockSkewMs'> = {},
): RefreshPlan<LateWrite> | null {
  if (!messages.length || options.credentialHash === null) return null;
  const known = options.knownClockSkewMs;
  let below = Infinity;
  let newest: { reportedAt: number; payload: HeartbeatMessage['payload'] } | null = null;
  const outcomes: MessageOutcome[] = [];
  for (const received of messages) {
    const message = received.message;
    if (message.type !== 'agent.heartbeat' || message.nodeId !== nodeId) return null;
    let age: number;
    if (message.receivedAt) {
      age = httpAge(received, ctx.now);
    } else {
      if (known == null) return null;
      const { offset, wait } = brokerTiming(received, ctx.now);
      // Late: baseline < offset + wait − timeout. Kept: baseline ≤ offset, i.e. < offset + 1 (times are whole ms).
      below = Math.min(below, offset + 1, offset + wait - ctx.timeoutMs);
      age = offset - known + wait;
    }
    if (age <= ctx.timeoutMs) return null;
    outcomes.push({ kind: 'late', ageMs: age });
    const reportedAt = Date.parse(message.payload.timestamp);
    if (!newest || reportedAt > newest.reportedAt) newest = { reportedAt, payload: message.payload };
  }
  const write: LateWrite = { kind: 'late', nodeId, stats: { ...statsValues(newest!.payload), reportedAt: new Date(newest!.reportedAt) } };
  if (Number.isFinite(below)) write.clockSkewBelowMs = below;
  if (options.credentialHash) write.credentialHash = options.credentialHash;
  return { write, outcomes };
}

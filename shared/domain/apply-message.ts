import { statsValues, type AgentMessage, type HeartbeatMessage, type NodeEvent, type RegisterMessage, type ShutdownMessage } from '../messages/index.js';
import type { HistoryPoint, NodeRecord } from '../store/node-record.js';
import { boundTold, clearPace, nodePace, paceDiffers, paceMs, settlePendingTimeout, syncDeadline, tellPace, type FleetPace, type NodePace } from './heartbeat-pace.js';
import type { HistorySettings } from './history.js';
import { nodeEvent } from './node-events.js';

/** A validated agent message and when the orchestrator took it off the broker. */
export interface ReceivedMessage {
  message: AgentMessage;
  /** Ingest's clock, when the delivery arrived. */
  deliveredAt: number;
}

export interface ApplyContext {
  /** Orchestrator time now. */
  now: number;
  timeoutMs: number;
  /** Sparkline history: a ring of `points` slots of `resolutionMs` (shared/domain/history.ts). */
  history: HistorySettings;
  /** The fleet's heartbeat pace as this process knows it; null (or absent): none, or adaptation off. */
  fleetPace?: FleetPace | null;
}

/** The result of applying one message to one node's working copy. */
export type MessageOutcome =
  /** `ageMs`: how long the message waited before it was processed (the ingest's lag). */
  | { kind: 'applied'; ageMs?: number }
  /** Accepted, but too old to change liveness: it never revives a node nor refreshes lastHeartbeat (docs/architecture.md). */
  | { kind: 'late'; ageMs: number }
  | { kind: 'unknown-node' }
  | { kind: 'refused'; reason: string };

/** A node being changed by the messages of one batch: `node` is the working copy, `events` what it produced. */
export interface NodeDraft {
  original: NodeRecord | null;
  node: NodeRecord | null;
  events: NodeEvent[];
  /** The sparkline point the write adds, in its ring slot (null: none). */
  historyPoint: HistoryPoint | null;
  /** Set when the agent should be asked to re-register (unknown to the store, or its clock baseline is off). */
  askReregister: boolean;
  /** A pace stored by this write that the agent must be told over AMQP (control.settings), once it is written. */
  tell: NodePace | null;
  /** A shorter timeout still pending although the agent beats over AMQP: tell it again (rate-limited by the caller). */
  remind: NodePace | null;
}

export function newDraft(original: NodeRecord | null): NodeDraft {
  return { original, node: original ? structuredClone(original) : null, events: [], historyPoint: null, askReregister: false, tell: null, remind: null };
}

/**
 * When the orchestrator received the message: the api's receive time for messages that came over HTTP
 * (never later than now, so a forged time cannot make a message fresher), else the ingest's delivery time.
 */
export function receiveTime(received: ReceivedMessage, now: number): number {
  const { receivedAt } = received.message;
  return receivedAt ? Math.min(Date.parse(receivedAt), now, received.deliveredAt) : received.deliveredAt;
}

/** Agent-clock send time of a message: the heartbeat's own timestamp, else the envelope's. */
function agentSendTime(message: AgentMessage): number {
  return message.type === 'agent.heartbeat' ? Date.parse(message.payload.timestamp) : Date.parse(message.sentAt);
}

/** The age of a message that came over HTTP: since the api received it (the baseline plays no part). */
export function httpAge(received: ReceivedMessage, now: number): number {
  return Math.max(0, now - receiveTime(received, now));
}

/**
 * The timing of a message that came over AMQP: its clock offset (delivery − agent send time) and how long it has
 * waited since its delivery. Against a node's baseline B its age is `offset − B + wait` (messageAge), so it is late
 * exactly when `B < offset + wait − timeout`, and it moves the baseline when `offset < B`.
 */
export function brokerTiming(received: ReceivedMessage, now: number): { offset: number; wait: number } {
  return { offset: received.deliveredAt - agentSendTime(received.message), wait: Math.max(0, now - received.deliveredAt) };
}

/**
 * How long the message waited before the orchestrator processed it, on the orchestrator's clock.
 * Over HTTP the api stamped the receive time. Over AMQP the agent's clock is all there is: the offset
 * (receive - send) of a live stream is the clock difference plus transit; the smallest offset seen since
 * registration is the baseline, and anything beyond it is time spent in a backlog. Agents whose clocks are
 * minutes off have a large but steady offset, so they are judged like any other.
 */
export function messageAge(draft: NodeDraft, received: ReceivedMessage, now: number): number {
  if (received.message.receivedAt) return httpAge(received, now);
  const node = draft.node;
  if (!node) return 0;
  const { offset, wait } = brokerTiming(received, now);
  if (node.clockSkewMs === null || offset < node.clockSkewMs) {
    node.clockSkewMs = offset;
    return wait;
  }
  return offset - node.clockSkewMs + wait;
}

export function applyMessage(draft: NodeDraft, received: ReceivedMessage, ctx: ApplyContext): MessageOutcome {
  switch (received.message.type) {
    case 'agent.register':
      return applyRegister(draft, received.message, received, ctx);
    case 'agent.heartbeat':
      return applyHeartbeat(draft, received.message, received, ctx);
    case 'agent.shutdown':
      return applyShutdown(draft, received.message, received, ctx);
  }
}

function applyRegister(draft: NodeDraft, message: RegisterMessage, received: ReceivedMessage, ctx: ApplyContext): MessageOutcome {
  const at = receiveTime(received, ctx.now);
  const { hostname, ipAddress, maxServers } = message.payload;
  // Registration is the clock baseline's anchor: agents re-register after long silences and when asked to.
  const skew = message.receivedAt ? null : received.deliveredAt - Date.parse(message.sentAt);
  const node = draft.node;
  if (!node) {
    const created: NodeRecord = {
      nodeId: message.nodeId,
      hostname,
      ipAddress,
      maxServers,
      status: 'ONLINE',
      registeredAt: new Date(at),
      lastHeartbeat: new Date(at),
      statusChangedAt: new Date(ctx.now),
      statusVersion: 1,
      rev: '',
      stats: null,
      outbox: [],
      clockSkewMs: skew,
      reregisterRequestedAt: null,
      credentialHash: null,
    };
    draft.node = created;
    registerPace(draft, created, message, ctx);
    draft.events.push(nodeEvent(created, null, 'registered', ctx.now));
    return { kind: 'applied' };
  }
  node.hostname = hostname;
  node.ipAddress = ipAddress;
  node.maxServers = maxServers;
  node.clockSkewMs = skew;
  registerPace(draft, node, message, ctx);
  const age = message.receivedAt ? Math.max(0, ctx.now - at) : 0;
  if (age > ctx.timeoutMs) return { kind: 'late', ageMs: age };
  if (!node.lastHeartbeat || at > node.lastHeartbeat.getTime()) node.lastHeartbeat = new Date(at);
  syncDeadline(node);
  if (node.status === 'OFFLINE') transition(draft, node, 'ONLINE', 'registered', ctx.now);
  return { kind: 'applied' };
}

/**
 * The pace of a registration: an agent that declares its interval gets the pace it is told (over HTTP the api
 * put it in the message; over AMQP the ingest tells it after the write); one that declares nothing keeps the
 * default timeout and is told nothing. A shorter timeout than the node had waits for the new pace (tellPace).
 */
function registerPace(draft: NodeDraft, node: NodeRecord, message: RegisterMessage, ctx: ApplyContext): void {
  const declared = message.payload.heartbeatInterval;
  if (declared === undefined) {
    if (node.declaredIntervalMs != null || node.timeoutMs != null) clearPace(node);
    syncDeadline(node);
    return;
  }
  node.declaredIntervalMs = Math.round(declared * 1000);
  const pace = nodePace(declared, ctx.fleetPace ?? null, ctx.timeoutMs);
  if (message.told) {
    tellPace(node, boundTold(message.told, declared, ctx.timeoutMs));
  } else {
    tellPace(node, paceMs(pace));
    draft.tell = pace;
  }
  syncDeadline(node);
}

/**
 * The pace at a heartbeat of a node whose agent declared its interval: a pending shorter timeout takes effect
 * when the heartbeat came at the new pace; then the pace it is told: over HTTP what the api told it (in the
 * message), over AMQP the fleet's pace as this process knows it, told after the write when it changed.
 */
function heartbeatPace(draft: NodeDraft, node: NodeRecord, message: HeartbeatMessage, previous: number | null, at: number, ctx: ApplyContext): void {
  if (node.declaredIntervalMs == null) return;
  settlePendingTimeout(node, previous, at);
  const declared = node.declaredIntervalMs / 1000;
  const pace = nodePace(declared, ctx.fleetPace ?? null, ctx.timeoutMs);
  if (message.told) {
    tellPace(node, boundTold(message.told, declared, ctx.timeoutMs));
  } else if (!message.receivedAt) {
    if (paceDiffers(node, paceMs(pace))) {
      tellPace(node, paceMs(pace));
      draft.tell = pace;
    } else if (node.pendingTimeoutMs != null) {
      draft.remind = pace;
    }
  }
}

function applyHeartbeat(draft: NodeDraft, message: HeartbeatMessage, received: ReceivedMessage, ctx: ApplyContext): MessageOutcome {
  const node = draft.node;
  if (!node) {
    draft.askReregister = true;
    return { kind: 'unknown-node' };
  }
  const at = receiveTime(received, ctx.now);
  const age = messageAge(draft, received, ctx.now);
  const late = age > ctx.timeoutMs;
  const { cpuUsage, memoryUsage, timestamp } = message.payload;
  const reportedAt = Date.parse(timestamp);
  const stored = node.stats?.reportedAt.getTime();
  // An older heartbeat never overwrites newer stats; a live one may, when the agent's clock jumped back.
  const newer = stored === undefined || reportedAt > stored || (!late && reportedAt < stored - ctx.timeoutMs);
  if (newer) {
    node.stats = { ...statsValues(message.payload), reportedAt: new Date(reportedAt) };
    if (!late) addHistoryPoint(draft, { t: new Date(at), cpu: cpuUsage, mem: memoryUsage }, ctx);
  }
  if (late) {
    // Either a backlog, or the agent's clock jumped back: a re-registration resets the baseline. Asked only
    // when no fresh heartbeat is arriving besides (a backlog drains next to live beats; a jumped clock has none).
    const starved = !node.lastHeartbeat || ctx.now - node.lastHeartbeat.getTime() > ctx.timeoutMs / 2;
    if (node.status === 'OFFLINE' || starved) draft.askReregister = true;
    return { kind: 'late', ageMs: age };
  }
  const previous = node.lastHeartbeat?.getTime() ?? null;
  if (!node.lastHeartbeat || at > node.lastHeartbeat.getTime()) node.lastHeartbeat = new Date(at);
  heartbeatPace(draft, node, message, previous, at, ctx);
  syncDeadline(node);
  if (node.status === 'OFFLINE') transition(draft, node, 'ONLINE', 'heartbeat', ctx.now);
  return { kind: 'applied', ageMs: age };
}

function applyShutdown(draft: NodeDraft, _message: ShutdownMessage, received: ReceivedMessage, ctx: ApplyContext): MessageOutcome {
  const node = draft.node;
  if (!node) return { kind: 'unknown-node' };
  const age = messageAge(draft, received, ctx.now);
  // A shutdown from a backlog must not take down a node that has come back since.
  if (age > ctx.timeoutMs) return { kind: 'late', ageMs: age };
  if (node.status === 'ONLINE') transition(draft, node, 'OFFLINE', 'shutdown', ctx.now);
  return { kind: 'applied' };
}

/** The sparkline point of the draft: the newest of the messages applied to it (the store keeps one per step). */
function addHistoryPoint(draft: NodeDraft, point: HistoryPoint, ctx: ApplyContext): void {
  if (ctx.history.points <= 0) return;
  if (draft.historyPoint && draft.historyPoint.t.getTime() > point.t.getTime()) return;
  draft.historyPoint = point;
}

function transition(draft: NodeDraft, node: NodeRecord, to: NodeRecord['status'], reason: NodeEvent['reason'], now: number): void {
  const previous = node.status;
  node.status = to;
  node.statusVersion += 1;
  node.statusChangedAt = new Date(now);
  draft.events.push(nodeEvent(node, previous, reason, now));
}

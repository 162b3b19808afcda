import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { clusterEventSchema, nodeEventSchema, type NodeEvent } from '../../shared/messages/index.js';
import { ROUTING, type BrokerNames } from '../../shared/topology.js';
import { paceSettingsOf } from '../../services/agent/heartbeat-pace.js';
import { NodeState, nodeIndex, type Fleet } from './fleet.js';

/** A node event as it arrived, with what the simulator knew about the node at that moment. */
export interface SeenEvent {
  node: number;
  nodeId: string;
  eventId: string;
  type: NodeEvent['type'];
  status: NodeEvent['status'];
  reason: NodeEvent['reason'];
  statusVersion: number;
  occurredAt: number;
  /** The orchestrator's receive time of the node's last heartbeat, as stored (null if none). */
  lastHeartbeat: number | null;
  arrivedAt: number;
  /** The node's own timeout when the event arrived: the one it was told, or the default. */
  timeoutMs: number;
}

export interface FalseOffline {
  nodeId: string;
  reason: string;
  occurredAt: string;
  lastHeartbeat: string | null;
  /** Newest heartbeat confirmed to the agent before the decision, and how long before it. */
  lastConfirmedBefore: string | null;
  confirmedMsBeforeDecision: number | null;
  kind: 'kept beating' | 'premature (silenced, but a confirmed heartbeat was less than a timeout old)' | 'unexpected shutdown';
}

/** Margin for clocks and rounding when judging a node.offline against the last confirmed heartbeat. */
const FALSE_OFFLINE_MARGIN_MS = 1000;

/**
 * The simulator's view of the broker: a private exclusive, auto-deleted queue bound to node.# and cluster.#
 * on node.events (declared before the first registration), one on agent.control for the virtual agents'
 * re-registration requests, and `checkQueue` of the ingest queue for its depth.
 */
export class Observer {
  readonly events: SeenEvent[] = [];
  readonly clusterEvents: Array<{ at: number; body: unknown }> = [];
  readonly falseOffline: FalseOffline[] = [];
  invalidEvents = 0;
  foreignEvents = 0;
  controlMessages = 0;
  /** control.settings received (for any node), and ignored because the node talks HTTP (an HTTP-only agent has no control queue). */
  settingsMessages = 0;
  settingsForHttpNodes = 0;
  /** Per node: status of the newest statusVersion seen (0 unknown, 1 ONLINE, 2 OFFLINE) and that version. */
  readonly status: Uint8Array;
  readonly version: Int32Array;
  online = 0;
  offline = 0;
  registered = 0;
  readonly counts = { registered: 0, online: 0, offlineTimeout: 0, offlineShutdown: 0 };
  /** First node.offline that arrived after the node was silenced (0 = none yet). */
  readonly detectedAt: Float64Array;
  onDetected: ((node: number, at: number) => void) | null = null;
  private model: ChannelModel | null = null;
  private depthChannel: Channel | null = null;
  private connection: { close(): Promise<void> } | null = null;

  constructor(
    private readonly fleet: Fleet,
    private readonly names: BrokerNames,
  ) {
    this.status = new Uint8Array(fleet.n);
    this.version = new Int32Array(fleet.n);
    this.detectedAt = new Float64Array(fleet.n);
  }

  async connect(rabbitUrl: string): Promise<void> {
    const url = new URL(rabbitUrl);
    if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', '10');
    let first = true;
    const connection = await amqp.connect(url.toString(), {
      clientProperties: { connection_name: 'simulate: observer' },
      recovery: {
        initialDelay: 200,
        maxDelay: 2000,
        initialMaxRetries: 5,
        setup: async (m: ChannelModel) => {
          this.model = m;
          m.on('error', () => undefined);
          if (!first) process.stderr.write('simulate: observer reconnected to the broker; events published meanwhile were missed\n');
          first = false;
          const ch = await m.createChannel();
          ch.on('error', () => undefined);
          const events = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
          await ch.bindQueue(events.queue, this.names.exchanges.nodeEvents, 'node.#');
          await ch.bindQueue(events.queue, this.names.exchanges.nodeEvents, 'cluster.#');
          await ch.consume(events.queue, (msg) => msg && this.onEvent(msg), { noAck: true });
          const control = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
          await ch.bindQueue(control.queue, this.names.exchanges.agentControl, ROUTING.control('#'));
          await ch.consume(control.queue, (msg) => msg && this.onControl(msg), { noAck: true });
          this.depthChannel = null;
        },
      },
    });
    connection.on('error', () => undefined);
    this.connection = connection as unknown as { close(): Promise<void> };
  }

  /** Ready messages and consumers of a queue (checkQueue), or null when the broker cannot tell now. */
  async checkQueue(queue: string): Promise<{ messages: number; consumers: number } | null> {
    try {
      if (!this.depthChannel) {
        if (!this.model) return null;
        const ch = await this.model.createChannel();
        ch.on('error', () => undefined);
        ch.on('close', () => {
          if (this.depthChannel === ch) this.depthChannel = null;
        });
        this.depthChannel = ch;
      }
      const q = await this.depthChannel.checkQueue(queue);
      return { messages: q.messageCount, consumers: q.consumerCount };
    } catch {
      this.depthChannel = null;
      return null;
    }
  }

  private onControl(msg: ConsumeMessage): void {
    try {
      const body = JSON.parse(msg.content.toString()) as { type?: string; nodeId?: string };
      const i = typeof body.nodeId === 'string' ? nodeIndex(body.nodeId, this.fleet.n) : -1;
      if (i < 0) return;
      if (body.type === 'control.settings') {
        const settings = paceSettingsOf(body);
        if (!settings) return;
        this.settingsMessages++;
        if (this.fleet.http[i]) this.settingsForHttpNodes++;
        else this.fleet.onSettings(i, settings);
        return;
      }
      if (body.type !== 'control.reregister') return;
      this.controlMessages++;
      this.fleet.onReregisterRequest(i);
    } catch {
      /* not ours */
    }
  }

  private onEvent(msg: ConsumeMessage): void {
    const arrivedAt = Date.now();
    let body: unknown;
    try {
      body = JSON.parse(msg.content.toString());
    } catch {
      this.invalidEvents++;
      return;
    }
    if (msg.fields.routingKey.startsWith('cluster.')) {
      if (!clusterEventSchema.safeParse(body).success) this.invalidEvents++;
      this.clusterEvents.push({ at: arrivedAt, body });
      return;
    }
    const parsed = nodeEventSchema.safeParse(body);
    if (!parsed.success) {
      this.invalidEvents++;
      return;
    }
    const e = parsed.data;
    const i = nodeIndex(e.nodeId, this.fleet.n);
    if (i < 0) {
      this.foreignEvents++; // e.g. the all-in-one's own local agent
      return;
    }
    const seen: SeenEvent = {
      node: i,
      nodeId: e.nodeId,
      eventId: e.eventId,
      type: e.type,
      status: e.status,
      reason: e.reason,
      statusVersion: e.statusVersion,
      occurredAt: Date.parse(e.occurredAt),
      lastHeartbeat: e.lastHeartbeat ? Date.parse(e.lastHeartbeat) : null,
      arrivedAt,
      timeoutMs: this.fleet.timeoutMs[i]!,
    };
    this.events.push(seen);
    if (e.type === 'node.registered') this.counts.registered++;
    else if (e.type === 'node.online') this.counts.online++;
    else if (e.reason === 'shutdown') this.counts.offlineShutdown++;
    else this.counts.offlineTimeout++;

    if (e.statusVersion > this.version[i]!) {
      const before = this.status[i]!;
      const after = e.status === 'ONLINE' ? 1 : 2;
      if (before === 1) this.online--;
      else if (before === 2) this.offline--;
      if (after === 1) this.online++;
      else this.offline++;
      this.status[i] = after;
      this.version[i] = e.statusVersion;
    }
    if (e.type === 'node.registered') {
      if (!this.fleet.registeredSeen[i]) this.registered++;
      this.fleet.onRegistered(i);
    }
    if (e.type === 'node.offline') this.judgeOffline(seen);
  }

  /**
   * A node.offline is false when the node did not announce a shutdown and a heartbeat of it was confirmed
   * (by the broker, or by the api's 2xx) less than one timeout (the node's own) before the orchestrator's decision
   * (occurredAt), give or take 1 s: had that heartbeat been taken into account, the node could not have
   * been expired. Silenced nodes marked after a full timeout, shut-down nodes and nodes after the end of the
   * run are therefore never false.
   */
  private judgeOffline(e: SeenEvent): void {
    const f = this.fleet;
    const i = e.node;
    if (e.reason === 'shutdown') {
      if (f.state[i] !== NodeState.ShutDown) this.recordFalse(e, null, 'unexpected shutdown');
      return;
    }
    // Detection of a silenced node: the first node.offline after it went quiet.
    if (f.state[i] === NodeState.Silent && f.silencedAt[i]! > 0 && this.detectedAt[i] === 0 && e.arrivedAt >= f.silencedAt[i]!) {
      this.detectedAt[i] = e.arrivedAt;
      this.onDetected?.(i, e.arrivedAt);
    }
    const occ = e.occurredAt;
    const c1 = f.lastConfirmedAt[i]!;
    const c0 = f.prevConfirmedAt[i]!;
    let newest: number | null;
    if (c1 > 0 && c1 <= occ) newest = c1;
    else if (c0 > 0 && c0 <= occ) newest = c0;
    else if (c0 > occ) {
      // Two heartbeats confirmed since the decision: the node was beating then, unless it had only just come back.
      const resumed = f.resumedAt[i]!;
      newest = resumed > 0 && resumed > occ - e.timeoutMs ? null : occ;
    } else newest = null;
    if (newest === null || newest < occ - e.timeoutMs + FALSE_OFFLINE_MARGIN_MS) return;
    const silenced = f.silencedAt[i]! > 0 && f.silencedAt[i]! <= occ && (f.resumedAt[i] === 0 || f.resumedAt[i]! > occ);
    this.recordFalse(e, newest, silenced ? 'premature (silenced, but a confirmed heartbeat was less than a timeout old)' : 'kept beating');
  }

  private recordFalse(e: SeenEvent, newest: number | null, kind: FalseOffline['kind']): void {
    this.falseOffline.push({
      nodeId: e.nodeId,
      reason: e.reason,
      occurredAt: new Date(e.occurredAt).toISOString(),
      lastHeartbeat: e.lastHeartbeat === null ? null : new Date(e.lastHeartbeat).toISOString(),
      lastConfirmedBefore: newest === null ? null : new Date(newest).toISOString(),
      confirmedMsBeforeDecision: newest === null ? null : e.occurredAt - newest,
      kind,
    });
  }

  /**
   * Duplicate transitions: (a) two events with the same nodeId + statusVersion and different eventIds; (b) the
   * same transition twice in a row (consecutive distinct statusVersions of a node with the same status).
   * Redeliveries of one eventId (at-least-once) are counted apart and are not duplicates.
   */
  duplicates(): { sameVersion: number; repeated: number; redeliveries: number; versionGaps: number; examples: string[] } {
    const byNode = new Map<number, Map<number, Set<string>>>();
    const statusOf = new Map<string, string>();
    let redeliveries = 0;
    const seenIds = new Set<string>();
    for (const e of this.events) {
      if (seenIds.has(e.eventId)) {
        redeliveries++;
        continue;
      }
      seenIds.add(e.eventId);
      let versions = byNode.get(e.node);
      if (!versions) byNode.set(e.node, (versions = new Map()));
      let ids = versions.get(e.statusVersion);
      if (!ids) versions.set(e.statusVersion, (ids = new Set()));
      ids.add(e.eventId);
      statusOf.set(`${e.node}#${e.statusVersion}`, e.status);
    }
    let sameVersion = 0;
    let repeated = 0;
    let versionGaps = 0;
    const examples: string[] = [];
    for (const [node, versions] of byNode) {
      const ordered = [...versions.keys()].sort((a, b) => a - b);
      let previous: string | null = null;
      let previousVersion = 0;
      for (const v of ordered) {
        // A missing version (an event this subscriber never got) is not a repetition.
        if (v !== previousVersion + 1) {
          versionGaps++;
          previous = null;
        }
        previousVersion = v;
        if (versions.get(v)!.size > 1) {
          sameVersion++;
          if (examples.length < 5) examples.push(`${this.fleet.ids[node]} statusVersion ${v}: ${versions.get(v)!.size} eventIds`);
        }
        const status = statusOf.get(`${node}#${v}`)!;
        if (previous === status) {
          repeated++;
          if (examples.length < 5) examples.push(`${this.fleet.ids[node]}: ${status} twice in a row (statusVersion ${v})`);
        }
        previous = status;
      }
    }
    return { sameVersion, repeated, redeliveries, versionGaps, examples };
  }

  async close(): Promise<void> {
    await this.connection?.close().catch(() => undefined);
  }
}

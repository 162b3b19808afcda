import { Agent as HttpAgent, request } from 'node:http';
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { generateCredential } from '../../shared/auth/credentials.js';
import type { Clock } from '../../shared/clock.js';
import { agentMessageSchema, describeIssues, type AgentMessage, type HeartbeatBody } from '../../shared/messages/index.js';
import { ROUTING, type BrokerNames } from '../../shared/topology.js';
import { boundedIntervalMs, firstGapMs, paceSettingsOf, staggeredIntervalMs, type PaceSettings } from '../../services/agent/heartbeat-pace.js';
import { createMessageFactory, type MessageFactory } from '../../services/agent/outbound-messages.js';
import { credentialAuth, noAuth, type RequestAuth } from '../../services/agent/request-auth.js';

/**
 * N virtual agents in one process. Per-node state lives in typed arrays; the beat schedule is a binary heap of
 * due times (each node its own phase, every beat moved by ± jitter). AMQP agents share one connection and a few
 * confirm channels (publishes pipelined, one confirm callback each); HTTP agents share a keep-alive pool.
 * Envelopes are built by the agent's own `createMessageFactory` with the agent's `RequestAuth`, so they carry
 * the same fields and credentials as `npm run agent`; a sample is checked against the shared zod schema.
 * Unless legacy, each node declares its interval and follows the pace it is told (the HTTP answers, or
 * `control.settings` through the observer) by the agent's own rules: within bounds, with the ±10 % stagger.
 */

export const NodeState = {
  /** Registration sent or to be sent; beats wait for the node.registered event. */
  Registering: 0,
  Beating: 1,
  Silent: 2,
  ShutDown: 3,
} as const;

export interface FleetOptions {
  nodes: number;
  intervalMs: number;
  jitter: number;
  httpShare: number;
  channels: number;
  httpConnections: number;
  auth: { joinToken: string } | null;
  rabbitUrl: string;
  apiUrl: string;
  names: BrokerNames;
  seed: number;
  /** A beat not confirmed within this time frees the node's slot (the agent's HEARTBEAT_TIMEOUT). */
  confirmTimeoutMs: number;
  /** The orchestrator's TIMEOUT: each node's deadline until it is told another. */
  timeoutMs: number;
  /** Declare no interval and follow nothing (the original agent). */
  legacy: boolean;
}

export interface FleetCounters {
  registersSent: number;
  registersConfirmed: number;
  registersFailed: number;
  /** Heartbeats handed to a transport. */
  offered: number;
  /** Heartbeats the broker confirmed / the api answered 2xx for. */
  confirmed: number;
  failed: number;
  /** Beats not sent because the previous one of that node was still unconfirmed (like the agent: no overlap). */
  skippedBusy: number;
  /** Beats not sent because the node was registering again (an agent does not beat meanwhile). */
  skippedRegistering: number;
  /** Re-registration requests that came while the node was already registering (an agent ignores them). */
  reregisterIgnored: number;
  /** Confirms that came later than confirmTimeoutMs (still counted as confirmed when they come). */
  slowConfirms: number;
  shutdownsSent: number;
  shutdownsConfirmed: number;
  /** Registrations sent again because the orchestrator asked (control.reregister) or answered 404. */
  reregisters: number;
  httpStatus: Record<string, number>;
  amqpErrors: number;
  /** Times amqplib's write buffer was full (publish() returned false). */
  amqpBackpressure: number;
  schemaChecked: number;
  /** Pace settings received (HTTP answers and control.settings), and the changes of interval they made. */
  paceAnswers: number;
  paceChanges: number;
  /** HTTP registrations answered without a pace: the node went back to its own interval. */
  paceFallbacks: number;
}

/** Deterministic PRNG (mulberry32) so that a seed reproduces phases, jitter and choices. */
export function prng(seed: number): () => number {
  let a = seed >>> 0 || 0x9e3779b9;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function nodeId(i: number): string {
  return `sim-${String(i).padStart(6, '0')}`;
}

/** Index of a simulator node id, or -1. */
export function nodeIndex(id: string, n: number): number {
  if (!id.startsWith('sim-') || id.length !== 10) return -1;
  const i = Number(id.slice(4));
  return Number.isInteger(i) && i >= 0 && i < n ? i : -1;
}

/** Min-heap of (due time, node) in typed arrays. */
class DueHeap {
  private due: Float64Array;
  private node: Int32Array;
  size = 0;
  constructor(capacity: number) {
    this.due = new Float64Array(Math.max(16, capacity));
    this.node = new Int32Array(Math.max(16, capacity));
  }
  push(due: number, node: number): void {
    if (this.size === this.due.length) {
      const d = new Float64Array(this.due.length * 2);
      d.set(this.due);
      const n = new Int32Array(this.node.length * 2);
      n.set(this.node);
      this.due = d;
      this.node = n;
    }
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.due[p]! <= due) break;
      this.due[i] = this.due[p]!;
      this.node[i] = this.node[p]!;
      i = p;
    }
    this.due[i] = due;
    this.node[i] = node;
  }
  peekDue(): number {
    return this.size ? this.due[0]! : Infinity;
  }
  pop(): number {
    const top = this.node[0]!;
    const lastDue = this.due[--this.size]!;
    const lastNode = this.node[this.size]!;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= this.size) break;
      const r = l + 1;
      const c = r < this.size && this.due[r]! < this.due[l]! ? r : l;
      if (this.due[c]! >= lastDue) break;
      this.due[i] = this.due[c]!;
      this.node[i] = this.node[c]!;
      i = c;
    }
    this.due[i] = lastDue;
    this.node[i] = lastNode;
    return top;
  }
}

export type BeatListener = (node: number, ts: number, outcome: 'sent' | 'confirmed' | 'failed', at: number) => void;

export class Fleet {
  readonly n: number;
  readonly ids: string[];
  readonly http: Uint8Array;
  readonly state: Uint8Array;
  /** node.registered seen for it (set by the observer). */
  readonly registeredSeen: Uint8Array;
  readonly registerConfirmed: Uint8Array;
  private readonly registerPending: Uint8Array;
  readonly inFlight: Uint8Array;
  readonly inFlightSince: Float64Array;
  /** Agent timestamp (ms) of the newest heartbeat sent / confirmed. */
  readonly lastSentTs: Float64Array;
  readonly lastConfirmedTs: Float64Array;
  /** When the newest and the one-before confirmed heartbeat were confirmed (simulator clock). */
  readonly lastConfirmedAt: Float64Array;
  readonly prevConfirmedAt: Float64Array;
  /** When the node was silenced / shut down / resumed (0 = never). */
  readonly silencedAt: Float64Array;
  readonly resumedAt: Float64Array;
  /** The interval told (bounded, before the stagger; 0 = none: its own), the one it beats at (staggered), its timeout: ms. */
  readonly toldIntervalMs: Float64Array;
  readonly intervalMs: Float64Array;
  readonly timeoutMs: Float64Array;
  /** Fleet size in the newest settings a node was told. */
  lastFleetSize = 0;
  readonly counters: FleetCounters = {
    registersSent: 0,
    registersConfirmed: 0,
    registersFailed: 0,
    offered: 0,
    confirmed: 0,
    failed: 0,
    skippedBusy: 0,
    skippedRegistering: 0,
    reregisterIgnored: 0,
    slowConfirms: 0,
    shutdownsSent: 0,
    shutdownsConfirmed: 0,
    reregisters: 0,
    httpStatus: {},
    amqpErrors: 0,
    amqpBackpressure: 0,
    schemaChecked: 0,
    paceAnswers: 0,
    paceChanges: 0,
    paceFallbacks: 0,
  };
  /** Called for every heartbeat of a sampled node (publish→stored). */
  beatListener: BeatListener | null = null;
  sampled: Uint8Array;

  private readonly factories: MessageFactory[];
  private readonly auths: RequestAuth[];
  private readonly stats: Float32Array;
  private readonly phase: Float64Array;
  private readonly slot: Int32Array;
  /** Start of each node's beat grid, and the due time of its one live heap entry (others are stale). */
  private readonly nodeAnchor: Float64Array;
  /** The slot (before jitter) of each node's last beat, 0 before its first. */
  private readonly lastSlotAt: Float64Array;
  private readonly nextDue: Float64Array;
  private readonly heap: DueHeap;
  private readonly random: () => number;
  private stamp = 0;
  private readonly wallClock: Clock = { now: () => this.stamp };
  private channels: Array<ConfirmChannel | null> = [];
  private connectionUp = false;
  private readonly httpAgent: HttpAgent;
  private readonly apiHost: string;
  private readonly apiPort: number;
  private anchor = 0;
  private timer: NodeJS.Timeout | null = null;
  private registerCursor = 0;
  private registering = false;
  private checkTimer: NodeJS.Timeout | null = null;
  private outstanding = 0;
  private schemaEvery = 997;
  private schemaErrors: string[] = [];

  constructor(private readonly o: FleetOptions) {
    const n = o.nodes;
    this.n = n;
    this.random = prng(o.seed);
    this.ids = Array.from({ length: n }, (_, i) => nodeId(i));
    this.http = new Uint8Array(n);
    // HTTP nodes spread evenly over the index range (Bresenham), so any slice of the fleet has the same mix.
    for (let i = 0; i < n; i++) this.http[i] = Math.floor((i + 1) * o.httpShare) - Math.floor(i * o.httpShare);
    this.state = new Uint8Array(n);
    this.registeredSeen = new Uint8Array(n);
    this.registerConfirmed = new Uint8Array(n);
    this.registerPending = new Uint8Array(n);
    this.inFlight = new Uint8Array(n);
    this.inFlightSince = new Float64Array(n);
    this.lastSentTs = new Float64Array(n);
    this.lastConfirmedTs = new Float64Array(n);
    this.lastConfirmedAt = new Float64Array(n);
    this.prevConfirmedAt = new Float64Array(n);
    this.silencedAt = new Float64Array(n);
    this.resumedAt = new Float64Array(n);
    this.toldIntervalMs = new Float64Array(n);
    this.intervalMs = new Float64Array(n).fill(o.intervalMs);
    this.timeoutMs = new Float64Array(n).fill(o.timeoutMs);
    this.sampled = new Uint8Array(n);
    this.phase = new Float64Array(n);
    this.slot = new Int32Array(n);
    this.nodeAnchor = new Float64Array(n);
    this.lastSlotAt = new Float64Array(n);
    this.nextDue = new Float64Array(n);
    this.stats = new Float32Array(n * 3);
    this.heap = new DueHeap(n);
    this.auths = new Array<RequestAuth>(n);
    this.factories = new Array<MessageFactory>(n);
    for (let i = 0; i < n; i++) {
      this.phase[i] = this.random() * o.intervalMs;
      this.stats[i * 3] = 5 + this.random() * 60;
      this.stats[i * 3 + 1] = 20 + this.random() * 60;
      this.stats[i * 3 + 2] = 10 + this.random() * 80;
      const auth = o.auth ? credentialAuth({ nodeId: this.ids[i]!, joinToken: o.auth.joinToken, credential: generateCredential() }) : noAuth;
      this.auths[i] = auth;
      this.factories[i] = createMessageFactory({ nodeId: this.ids[i]!, wallClock: this.wallClock, auth });
    }
    const api = new URL(o.apiUrl);
    this.apiHost = api.hostname;
    this.apiPort = Number(api.port || 80);
    this.httpAgent = new HttpAgent({ keepAlive: true, maxSockets: o.httpConnections, keepAliveMsecs: 30_000 });
  }

  get httpCount(): number {
    let c = 0;
    for (let i = 0; i < this.n; i++) c += this.http[i]!;
    return c;
  }

  /** Heartbeats handed to a transport and not settled yet. */
  get pending(): number {
    return this.outstanding;
  }

  schemaProblems(): string[] {
    return this.schemaErrors;
  }

  async connect(): Promise<void> {
    const url = new URL(this.o.rabbitUrl);
    if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', '10');
    const connection = await amqp.connect(url.toString(), {
      clientProperties: { connection_name: 'simulate: virtual agents' },
      recovery: {
        initialDelay: 200,
        maxDelay: 2000,
        initialMaxRetries: 5,
        setup: async (m: ChannelModel) => {
          m.on('error', () => undefined);
          const channels: ConfirmChannel[] = [];
          for (let c = 0; c < this.o.channels; c++) {
            const ch = await m.createConfirmChannel();
            ch.on('error', () => {
              this.counters.amqpErrors++;
            });
            const index = c;
            ch.on('close', () => {
              if (this.channels[index] === ch) this.channels[index] = null;
            });
            channels.push(ch);
          }
          this.channels = channels;
          this.connectionUp = true;
        },
      },
    });
    connection.on('disconnect', () => {
      this.connectionUp = false;
      this.channels = [];
      this.counters.amqpErrors++;
    });
    connection.on('error', () => undefined);
    this.connection = connection as unknown as { close(): Promise<void> };
  }

  private connection: { close(): Promise<void> } | null = null;

  // ---------------------------------------------------------------- sending

  private validate(message: AgentMessage): void {
    if (this.counters.schemaChecked > 3 && (this.counters.offered + this.counters.registersSent) % this.schemaEvery !== 0) return;
    this.counters.schemaChecked++;
    const result = agentMessageSchema.safeParse(message);
    if (!result.success && this.schemaErrors.length < 5) this.schemaErrors.push(`${message.type}: ${describeIssues(result.error)}`);
  }

  private heartbeatBody(i: number, ts: number): HeartbeatBody {
    const wobble = Math.sin(ts / 7000 + i) * 4;
    const clamp = (v: number) => Math.round(Math.min(100, Math.max(0, v)) * 100) / 100;
    return {
      cpuUsage: clamp(this.stats[i * 3]! + wobble),
      memoryUsage: clamp(this.stats[i * 3 + 1]! + wobble / 2),
      diskUsage: clamp(this.stats[i * 3 + 2]!),
      containerCount: (i * 7 + Math.floor(ts / 600_000)) % 12,
      timestamp: new Date(ts).toISOString(),
    };
  }

  /** Sends one message; `done(ok, status)` once confirmed / answered (status: HTTP status, 0 for AMQP or a network error). */
  private send(i: number, message: AgentMessage, done: (ok: boolean, status: number) => void): void {
    this.validate(message);
    if (this.http[i]) {
      const id = encodeURIComponent(message.nodeId);
      const path = message.type === 'agent.register' ? '/api/nodes/register' : message.type === 'agent.heartbeat' ? `/api/nodes/${id}/stats` : `/api/nodes/${id}/shutdown`;
      const body = JSON.stringify(message.payload);
      const req = request(
        {
          agent: this.httpAgent,
          host: this.apiHost,
          port: this.apiPort,
          method: 'POST',
          path,
          headers: { 'content-type': 'application/json', accept: 'application/json', 'content-length': Buffer.byteLength(body), ...this.auths[i]!.httpHeaders(message.type) },
        },
        (res) => {
          // Small JSON answers: the register and stats ones may carry the pace.
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.once('end', () => {
            const status = res.statusCode ?? 0;
            this.counters.httpStatus[status] = (this.counters.httpStatus[status] ?? 0) + 1;
            const ok = status >= 200 && status < 300;
            if (ok && !this.o.legacy && message.type !== 'agent.shutdown') this.onHttpAnswer(i, message.type, Buffer.concat(chunks));
            done(ok, status);
          });
          res.once('error', () => undefined);
        },
      );
      let settled = false;
      const fail = () => {
        if (settled) return;
        settled = true;
        this.counters.httpStatus.error = (this.counters.httpStatus.error ?? 0) + 1;
        done(false, 0);
      };
      req.setTimeout(this.o.confirmTimeoutMs, () => req.destroy(new Error('timeout')));
      req.once('error', fail);
      req.once('response', () => (settled = true));
      req.end(body);
      return;
    }
    const ch = this.connectionUp ? this.channels[i % this.channels.length] : null;
    if (!ch) {
      done(false, 0);
      return;
    }
    const key =
      message.type === 'agent.register'
        ? ROUTING.register(message.nodeId)
        : message.type === 'agent.heartbeat'
          ? ROUTING.heartbeat(message.nodeId)
          : ROUTING.shutdown(message.nodeId);
    try {
      const ok = ch.publish(
        this.o.names.exchanges.agentInbound,
        key,
        Buffer.from(JSON.stringify(message)),
        { persistent: true, messageId: message.id, contentType: 'application/json', timestamp: Math.floor(Date.now() / 1000) },
        (err: unknown) => done(!err, 0),
      );
      if (!ok) this.counters.amqpBackpressure++;
    } catch {
      this.counters.amqpErrors++;
      done(false, 0);
    }
  }

  private register(i: number, again: boolean): void {
    const id = this.ids[i]!;
    this.stamp = Date.now();
    const message = this.factories[i]!.register({
      nodeId: id,
      hostname: `${id}.sim.local`,
      ipAddress: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      maxServers: 10 + (i % 30),
      ...(this.o.legacy ? {} : { heartbeatInterval: this.o.intervalMs / 1000 }),
    });
    this.counters.registersSent++;
    if (again) this.counters.reregisters++;
    this.registerPending[i] = 1;
    this.send(i, message, (ok) => {
      this.registerPending[i] = 0;
      if (ok) {
        this.counters.registersConfirmed++;
        this.registerConfirmed[i] = 1;
        // After a re-registration the agent beats at once and from then on every interval.
        if (again && this.state[i] === NodeState.Beating && this.timer) this.reanchor(i, Date.now());
      } else this.counters.registersFailed++;
    });
  }

  private beat(i: number, now: number): void {
    const st = this.state[i]!;
    if (st === NodeState.Registering) {
      // Not stored yet: the first beats wait for node.registered. A registration that failed is sent again.
      if (i < this.registerCursor && !this.registerConfirmed[i] && !this.registerPending[i]) this.register(i, false);
      return;
    }
    if (st !== NodeState.Beating) return;
    if (this.registerPending[i]) {
      this.counters.skippedRegistering++;
      return;
    }
    if (this.inFlight[i]) {
      this.counters.skippedBusy++;
      return;
    }
    const ts = Math.max(now, this.lastSentTs[i]! + 1);
    this.lastSentTs[i] = ts;
    this.stamp = ts;
    const message = this.factories[i]!.heartbeat(this.heartbeatBody(i, ts));
    this.inFlight[i] = 1;
    this.inFlightSince[i] = now;
    this.outstanding++;
    this.counters.offered++;
    const sampled = this.sampled[i] === 1;
    if (sampled) this.beatListener?.(i, ts, 'sent', now);
    this.send(i, message, (ok, status) => {
      this.outstanding--;
      const at = Date.now();
      if (this.inFlightSince[i] === now) this.inFlight[i] = 0;
      if (ok) {
        this.counters.confirmed++;
        if (at - now > this.o.confirmTimeoutMs) this.counters.slowConfirms++;
        if (ts > this.lastConfirmedTs[i]!) this.lastConfirmedTs[i] = ts;
        this.prevConfirmedAt[i] = this.lastConfirmedAt[i]!;
        this.lastConfirmedAt[i] = at;
        if (sampled) this.beatListener?.(i, ts, 'confirmed', at);
      } else {
        this.counters.failed++;
        if (sampled) this.beatListener?.(i, ts, 'failed', at);
        // The api forgot the node (404): register again at once, as the agent does.
        if (status === 404 && this.state[i] === NodeState.Beating) this.register(i, true);
      }
    });
  }

  // ---------------------------------------------------------------- schedule

  /** Sends every registration, `ratePerS` a second (spread over ticks); resolves once all were handed over. */
  async registerAll(ratePerS: number, shouldStop: () => boolean): Promise<void> {
    this.registering = true;
    const start = performance.now();
    while (this.registerCursor < this.n && !shouldStop()) {
      const due = Math.min(this.n, Math.floor(((performance.now() - start) / 1000) * ratePerS) + 1);
      for (; this.registerCursor < due; this.registerCursor++) this.register(this.registerCursor, false);
      await new Promise((r) => setTimeout(r, 20));
    }
    this.registering = false;
  }

  /** Called by the observer for node.registered: the node may beat from its next slot on. */
  onRegistered(i: number): void {
    this.registeredSeen[i] = 1;
    if (this.state[i] === NodeState.Registering) this.state[i] = NodeState.Beating;
  }

  /** The orchestrator asked this node to register again (control.reregister). */
  onReregisterRequest(i: number): void {
    if (!this.timer) return; // the fleet has stopped: nobody is listening any more
    if (this.registerPending[i]) {
      this.counters.reregisterIgnored++;
      return;
    }
    if (this.state[i] === NodeState.Beating || (this.state[i] === NodeState.Registering && i < this.registerCursor)) this.register(i, true);
  }

  /**
   * Starts the beat schedule: node i beats at anchor + phase_i + k × interval ± jitter, from its first slot
   * after its node.registered arrived (an agent starts beating once its registration is accepted).
   */
  startBeating(): void {
    this.anchor = Date.now();
    for (let i = 0; i < this.n; i++) {
      this.nodeAnchor[i] = this.anchor + this.phase[i]!;
      this.nextDue[i] = this.nodeAnchor[i]!;
      this.heap.push(this.nextDue[i]!, i);
    }
    const tick = () => {
      const now = Date.now();
      while (this.heap.peekDue() <= now) {
        const due = this.heap.peekDue();
        const i = this.heap.pop();
        if (due !== this.nextDue[i]) continue; // replaced by a re-anchor
        this.lastSlotAt[i] = this.nodeAnchor[i]! + this.slot[i]! * this.intervalMs[i]!;
        this.beat(i, now);
        const k = ++this.slot[i]!;
        this.nextDue[i] = this.due(i, k);
        this.heap.push(this.nextDue[i]!, i);
      }
      this.timer = setTimeout(tick, Math.max(1, Math.min(20, this.heap.peekDue() - Date.now())));
    };
    tick();
    // Free the slot of a node whose beat was never confirmed in time (the agent's HEARTBEAT_TIMEOUT).
    this.checkTimer = setInterval(() => {
      const limit = Date.now() - this.o.confirmTimeoutMs;
      for (let i = 0; i < this.n; i++) if (this.inFlight[i] && this.inFlightSince[i]! < limit) this.inFlight[i] = 0;
    }, 1000);
  }

  private due(i: number, k: number): number {
    const interval = this.intervalMs[i]!;
    return this.nodeAnchor[i]! + k * interval + (k === 0 ? 0 : (2 * this.random() - 1) * this.o.jitter * interval);
  }

  // ---------------------------------------------------------------- pace

  private onHttpAnswer(i: number, type: AgentMessage['type'], body: Buffer): void {
    let settings: PaceSettings | undefined;
    try {
      settings = body.length ? paceSettingsOf(JSON.parse(body.toString('utf8'))) : undefined;
    } catch {
      settings = undefined;
    }
    if (settings) this.onSettings(i, settings);
    else if (type === 'agent.register') this.fallBack(i);
  }

  /**
   * Settings for node i (an HTTP answer, or control.settings for an AMQP node), followed as the agent does
   * (services/agent/heartbeat-pace.ts): within bounds, a change staggered by ±10 % and taken from the slot of
   * the node's last beat.
   */
  onSettings(i: number, settings: PaceSettings): void {
    if (this.o.legacy) return;
    this.counters.paceAnswers++;
    this.timeoutMs[i] = Math.round(settings.timeout * 1000);
    if (settings.fleetSize !== undefined) this.lastFleetSize = settings.fleetSize;
    const own = this.o.intervalMs;
    const bounded = boundedIntervalMs(Math.round(settings.heartbeatInterval * 1000), own);
    if (bounded === (this.toldIntervalMs[i] || own)) {
      this.toldIntervalMs[i] = bounded;
      return;
    }
    this.toldIntervalMs[i] = bounded;
    this.counters.paceChanges++;
    this.changeInterval(i, staggeredIntervalMs(bounded, own, this.random));
  }

  /** Registered again over HTTP with an orchestrator that set no pace: back to its own interval and the default timeout. */
  private fallBack(i: number): void {
    this.timeoutMs[i] = this.o.timeoutMs;
    if (!this.toldIntervalMs[i]) return;
    this.toldIntervalMs[i] = 0;
    this.counters.paceFallbacks++;
    this.changeInterval(i, this.o.intervalMs);
  }

  /** As the agent's loop: the next beat a first gap after the slot of the last one, then every `ms`. */
  private changeInterval(i: number, ms: number): void {
    const gap = firstGapMs(this.intervalMs[i]!, ms, this.random);
    this.intervalMs[i] = ms;
    // Before the schedule runs, or before the node's first beat, there is nothing to move.
    if (!this.timer || this.lastSlotAt[i] === 0) return;
    this.nodeAnchor[i] = this.lastSlotAt[i]! + gap - ms;
    this.slot[i] = Math.max(1, Math.ceil((Date.now() - this.nodeAnchor[i]!) / ms));
    const due = this.due(i, this.slot[i]!);
    if (due === this.nextDue[i]) return; // the entry in the heap stands
    this.nextDue[i] = due; // the old entry is stale from now on
    this.heap.push(due, i);
  }

  /** The told intervals (ms, 0 = own) and how many nodes have each, most frequent first. */
  toldIntervals(): Array<{ intervalMs: number; nodes: number }> {
    const counts = new Map<number, number>();
    for (let i = 0; i < this.n; i++) {
      if (this.state[i] === NodeState.ShutDown) continue;
      const v = this.toldIntervalMs[i]!;
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    return [...counts].map(([intervalMs, nodes]) => ({ intervalMs, nodes })).sort((a, b) => b.nodes - a.nodes || b.intervalMs - a.intervalMs);
  }

  /** Restarts a node's beat grid at `at` (its next beat then, every interval after). */
  private reanchor(i: number, at: number): void {
    this.nodeAnchor[i] = at;
    this.slot[i] = 0;
    this.nextDue[i] = at;
    this.heap.push(at, i);
  }

  silence(i: number, at: number): void {
    this.state[i] = NodeState.Silent;
    this.silencedAt[i] = at;
  }

  resume(i: number, at: number): void {
    if (this.state[i] !== NodeState.Silent) return;
    this.state[i] = NodeState.Beating;
    this.resumedAt[i] = at;
  }

  /** Announces the shutdown (the agent's SIGTERM path) and stops beating. */
  shutdown(i: number, at: number): void {
    this.state[i] = NodeState.ShutDown;
    this.silencedAt[i] = at;
    this.stamp = Date.now();
    this.counters.shutdownsSent++;
    this.send(i, this.factories[i]!.shutdown(), (ok) => {
      if (ok) this.counters.shutdownsConfirmed++;
    });
  }

  /** Stops the schedule and waits (bounded) for the confirms of what was sent. */
  async stopBeating(waitMs: number): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    if (this.checkTimer) clearInterval(this.checkTimer);
    this.timer = null;
    this.checkTimer = null;
    const deadline = Date.now() + waitMs;
    while (this.outstanding > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }

  get isRegistering(): boolean {
    return this.registering;
  }

  async close(): Promise<void> {
    this.httpAgent.destroy();
    await this.connection?.close().catch(() => undefined);
  }
}

import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import type { Bus } from '../../shared/bus/bus.js';
import { createMemoryLogger } from '../../shared/logger.js';
import type { NodeEvent } from '../../shared/messages/index.js';
import { createMongoNodeStore } from '../../shared/store/mongo-node-store.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { brokerNames, ROUTING, topology } from '../../shared/topology.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One service process started as the README starts it (`npm run <script>`), in a process group of its own. */
export class ServiceProcess {
  child: ChildProcess | null = null;
  /** Every stdout/stderr line with its arrival time, across restarts. */
  readonly lines: Array<{ at: number; text: string }> = [];
  starts = 0;

  constructor(
    readonly name: string,
    private readonly script: string,
    private readonly env: Record<string, string>,
  ) {}

  start(): this {
    this.starts++;
    const child = spawn('npm', ['run', '--silent', this.script], { cwd: ROOT, env: { ...process.env, ...this.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    for (const stream of [child.stdout!, child.stderr!]) {
      let rest = '';
      stream.on('data', (chunk: Buffer) => {
        const parts = (rest + chunk.toString()).split('\n');
        rest = parts.pop() ?? '';
        for (const text of parts) if (text.trim()) this.lines.push({ at: Date.now(), text });
      });
    }
    this.child = child;
    return this;
  }

  running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Signals the whole group (npm, tsx, node) and waits until the npm process is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || !this.running()) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      process.kill(-child.pid!, signal);
    } catch {
      /* gone */
    }
    await Promise.race([exited, sleep(15_000)]);
    if (signal !== 'SIGKILL') {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  /** Most lines logged in any one-second bucket within [from, to]. */
  maxLinesPerSecond(from: number, to: number): number {
    const buckets = new Map<number, number>();
    for (const l of this.lines) {
      if (l.at < from || l.at > to) continue;
      const b = Math.floor(l.at / 1000);
      buckets.set(b, (buckets.get(b) ?? 0) + 1);
    }
    return Math.max(0, ...buckets.values());
  }
}

export interface HttpRequestRecord {
  /** When it was sent (epoch ms). */
  at: number;
  ms: number;
  /** The api's status, null when there was no answer (refused, reset, or the agent's timeout). */
  status: number | null;
}

interface SimNode {
  nodeId: string;
  transport: 'amqp' | 'http';
  registered: boolean;
  /** Agent timestamp (ms) of the newest heartbeat the broker confirmed / the api answered 2xx for. */
  newestConfirmed: number;
  lastSentTs: number;
  inFlight: Promise<void> | null;
}

/**
 * Simulated agents: each beats every `intervalMs` over AMQP (publisher confirms, one shared connection)
 * or HTTP (the api), and records the newest heartbeat that was confirmed to it.
 */
export class SimFleet {
  readonly nodes: SimNode[] = [];
  confirmed = 0;
  /** Heartbeats the broker or the api did not accept (no confirm, a refusal, no answer). */
  failed = 0;
  /** Why sends failed: the bus's error message or the api's status, with how often. */
  readonly failures = new Map<string, number>();
  /** Every request of the HTTP agents: when it was sent, how long it took, its status (null: no answer, e.g. its timeout). */
  readonly httpRequests: HttpRequestRecord[] = [];
  private timer: NodeJS.Timeout | null = null;
  private frozen = false;
  private bus!: Bus;

  /**
   * `apiUrls`: more api replicas behind a load balancer: each HTTP agent has one of them, and a request the
   * api does not answer at all (refused, reset) is sent once more to the next, as a load balancer would.
   * `idPrefix` (default `sim`) names the nodes `<idPrefix>-amqp-<i>` and `<idPrefix>-http-<i>`.
   */
  constructor(
    private readonly options: {
      rabbitUrl: string;
      apiUrl: string;
      apiUrls?: string[];
      namespace: string;
      amqp: number;
      http: number;
      intervalMs: number;
      idPrefix?: string;
    },
  ) {
    const prefix = options.idPrefix ?? 'sim';
    for (let i = 0; i < options.amqp; i++) this.nodes.push(this.node(`${prefix}-amqp-${i}`, 'amqp'));
    for (let i = 0; i < options.http; i++) this.nodes.push(this.node(`${prefix}-http-${i}`, 'http'));
  }

  private node(nodeId: string, transport: 'amqp' | 'http'): SimNode {
    return { nodeId, transport, registered: false, newestConfirmed: 0, lastSentTs: 0, inFlight: null };
  }

  async start(): Promise<void> {
    this.bus = await createRabbitBus({
      url: this.options.rabbitUrl,
      log: createMemoryLogger('error'),
      name: 'simulated agents',
      confirmTimeoutMs: 2000,
      maxReconnectDelayMs: 1000,
      initialMaxRetries: 20,
    });
    // Spread the fleet over the interval, as real agents drift apart.
    const step = this.options.intervalMs / this.nodes.length;
    let k = 0;
    this.timer = setInterval(
      () => {
        if (this.frozen) return;
        const slice = Math.max(1, Math.round(this.nodes.length / (this.options.intervalMs / 50)));
        for (let i = 0; i < slice; i++) {
          const node = this.nodes[k++ % this.nodes.length]!;
          if (!node.inFlight) node.inFlight = this.beat(node).finally(() => (node.inFlight = null));
        }
      },
      Math.max(10, Math.min(50, step)),
    );
  }

  private async beat(node: SimNode): Promise<void> {
    const names = brokerNames(this.options.namespace);
    if (!node.registered) {
      const body = { nodeId: node.nodeId, hostname: `${node.nodeId}.faults`, ipAddress: '10.9.0.1', maxServers: 10 };
      node.registered = await this.send(node, 'agent.register', body, ROUTING.register(node.nodeId), '/api/nodes/register', names.exchanges.agentInbound).then((s) => s === 'ok');
      return;
    }
    // Strictly increasing agent timestamps, so "newest confirmed" is exact.
    const ts = Math.max(Date.now(), node.lastSentTs + 1);
    node.lastSentTs = ts;
    const body = { cpuUsage: 10, memoryUsage: 20, diskUsage: 30, containerCount: 1, timestamp: new Date(ts).toISOString() };
    const outcome = await this.send(node, 'agent.heartbeat', body, ROUTING.heartbeat(node.nodeId), `/api/nodes/${node.nodeId}/stats`, names.exchanges.agentInbound);
    if (outcome === 'ok') {
      this.confirmed++;
      node.newestConfirmed = Math.max(node.newestConfirmed, ts);
    } else {
      this.failed++;
      if (outcome === 'unknown') node.registered = false;
    }
  }

  private async send(node: SimNode, type: string, payload: object, routingKey: string, path: string, exchange: string): Promise<'ok' | 'failed' | 'unknown'> {
    if (node.transport === 'amqp') {
      const id = randomUUID();
      const sentAt = new Date().toISOString();
      try {
        await this.bus.publish(exchange, routingKey, { id, type, version: 1, sentAt, nodeId: node.nodeId, payload }, { messageId: id });
        return 'ok';
      } catch (error) {
        this.countFailure((error as Error).message);
        return 'failed';
      }
    }
    const apis = this.options.apiUrls ?? [this.options.apiUrl];
    const first = this.nodes.indexOf(node) % apis.length;
    const outcome = await this.post(apis[first]!, path, payload);
    if (outcome !== 'no answer' || apis.length === 1) return outcome === 'no answer' ? 'failed' : outcome;
    const retried = await this.post(apis[(first + 1) % apis.length]!, path, payload);
    return retried === 'no answer' ? 'failed' : retried;
  }

  private async post(apiUrl: string, path: string, payload: object): Promise<'ok' | 'failed' | 'unknown' | 'no answer'> {
    const record: HttpRequestRecord = { at: Date.now(), ms: 0, status: null };
    try {
      const res = await fetch(`${apiUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(payload),
        signal: AbortSignal.timeout(2000),
      });
      const text = await res.text();
      record.status = res.status;
      if (res.ok) return 'ok';
      this.countFailure(`HTTP ${res.status} ${text.slice(0, 100)}`);
      return res.status === 404 ? 'unknown' : 'failed';
    } catch (error) {
      // The agent's own timeout is a failure like a refusal; no answer at all may be retried elsewhere.
      this.countFailure((error as Error).name === 'TimeoutError' ? 'HTTP timeout' : 'HTTP no answer');
      return (error as Error).name === 'TimeoutError' ? 'failed' : 'no answer';
    } finally {
      record.ms = Date.now() - record.at;
      this.httpRequests.push(record);
    }
  }

  private countFailure(reason: string): void {
    // Counts, ports and durations in messages would make every message its own reason (HTTP statuses stay).
    const key = reason.replace(/\d{4,}|\d+(?:\.\d+)? ?(?:ms|s)\b/g, 'N').slice(0, 140);
    this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
  }

  /** Stops sending new beats and waits for those in flight: from then on "newest confirmed" is final. */
  async freeze(): Promise<void> {
    this.frozen = true;
    await Promise.all(this.nodes.map((n) => n.inFlight ?? Promise.resolve()));
  }

  resume(): void {
    this.frozen = false;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.freeze();
    await this.bus.close();
  }
}

/**
 * A subscriber's own durable queue on node.events (all keys), with each event's arrival time. `queueArguments`
 * are its queue's (`{ 'x-queue-type': 'quorum' }` on a cluster, where a classic queue lives on one node).
 */
export async function subscribeEvents(rabbitUrl: string, namespace: string, queueArguments: Record<string, unknown> = {}) {
  const bus = await createRabbitBus({ url: rabbitUrl, log: createMemoryLogger('error'), name: 'faults subscriber', maxReconnectDelayMs: 1000, initialMaxRetries: 20 });
  const names = brokerNames(namespace);
  await bus.declareTopology(topology(names));
  const queue = `${namespace}.faults-subscriber`;
  await bus.declareQueue({ name: queue, durable: true, arguments: queueArguments, bindings: [{ exchange: names.exchanges.nodeEvents, routingKey: '#' }] });
  const events: Array<NodeEvent & { arrivedAt: number }> = [];
  await bus.consume(
    queue,
    (d) => {
      events.push({ ...(JSON.parse(d.body.toString()) as NodeEvent), arrivedAt: Date.now() });
      d.ack();
    },
    { prefetch: 200 },
  );
  return {
    events,
    /** Node events grouped by nodeId + statusVersion that carry more than one distinct eventId. */
    duplicateTransitions(): number {
      const groups = new Map<string, Set<string>>();
      for (const e of events) {
        if (!e.nodeId) continue; // cluster.degraded
        const key = `${e.nodeId}#${e.statusVersion}`;
        if (!groups.has(key)) groups.set(key, new Set());
        groups.get(key)!.add(e.eventId);
      }
      return [...groups.values()].filter((ids) => ids.size > 1).length;
    },
    close: () => bus.close(),
  };
}

export async function openStore(url: string): Promise<NodeStore> {
  for (let i = 0; ; i++) {
    try {
      return await createMongoNodeStore({ url, historyPoints: 0, serverSelectionTimeoutMs: 2000 });
    } catch (error) {
      if (i > 30) throw error;
      await sleep(500);
    }
  }
}

/** Polls `check` until it is truthy; returns the time it took, or null on timeout. */
export async function until(check: () => Promise<unknown> | unknown, timeoutMs: number, everyMs = 200): Promise<number | null> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    try {
      if (await check()) return Date.now() - start;
    } catch {
      /* not yet */
    }
    await sleep(everyMs);
  }
  return null;
}

/**
 * Freezes the fleets (no new beats; those in flight settle), then waits up to `withinMs` until every node's newest
 * heartbeat confirmed to its agent (or answered 2xx) is in the store. Returns the nodes still missing it, each
 * with what was confirmed and what is stored, and lets the fleets beat again.
 */
export async function confirmedButNotStored(fleets: SimFleet[], store: NodeStore, withinMs: number, everyMs: number): Promise<string[]> {
  await Promise.all(fleets.map((f) => f.freeze()));
  try {
    const expected = new Map(fleets.flatMap((f) => f.nodes.map((n) => [n.nodeId, n.newestConfirmed] as const)));
    let behind: string[] = [];
    await until(
      async () => {
        const stored = await store.getMany([...expected.keys()]);
        behind = [...expected]
          .filter(([id, ts]) => ts > 0 && (stored.get(id)?.stats?.reportedAt.getTime() ?? 0) < ts)
          .map(([id, ts]) => `${id} (confirmed ${new Date(ts).toISOString()}, stored ${stored.get(id)?.stats?.reportedAt.toISOString() ?? 'none'})`);
        return behind.length === 0;
      },
      withinMs,
      everyMs,
    );
    if (behind.length) console.log(`    confirmed but not stored: ${behind.slice(0, 10).join('; ')}${behind.length > 10 ? ` ... (${behind.length})` : ''}`);
    return behind;
  } finally {
    for (const f of fleets) f.resume();
  }
}

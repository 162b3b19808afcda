import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import amqp from 'amqplib';
import { brokerNames, topology, type BrokerNames } from '../shared/topology.js';
import { deleteRedisKeys } from '../test/support/redis-keys.js';
import { mongoUrlFor, RABBITMQ_URL, REDIS_URL } from '../test/support/services.js';
import { describeMachine, renderMachine, type Machine } from './lib/machine.js';
import { finishRow, renderResult, saveRecord, type Row, type RunRecord } from './lib/report.js';
import { Fleet, NodeState, prng } from './simulate/fleet.js';
import { Observer } from './simulate/observer.js';
import { OptionsError, parseOptions, type SimOptions } from './simulate/options.js';
import { BackendCpu, fetchText, freePort, killAllChildrenNow, ownCpuMs, parseIngestCounters, ROOT, ServiceChild, type IngestCounters, type Usage } from './simulate/processes.js';
import { StoreProbe, type ProbeSummary } from './simulate/store-probe.js';

/**
 * `npm run simulate -- --nodes N --interval S [...]`: a fleet of N virtual agents in this process against
 * real service processes (ingest ×K, sweeper, api; or the all-in-one) on the shared RabbitMQ / Redis / MongoDB,
 * each run in a namespace, Redis prefix and database of its own. See docs/simulate.md.
 */

const EXIT = { ok: 0, checkFailed: 1, cannotRun: 2, interrupted: 130 } as const;

class CannotRun extends Error {}

interface Sample {
  phase: string;
  t: number;
  offered: number;
  confirmed: number;
  stored: number | null;
  queue: number | null;
  online: number;
  offline: number;
}

const out = (line: string) => process.stdout.write(`${line}\n`);
const round1 = (x: number) => Math.round(x * 10) / 10;

function pct(values: number[], p: number): number | null {
  if (!values.length) return null;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function mib(bytes: number | null): string {
  return bytes === null ? '-' : `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

async function declareTopology(url: string, names: BrokerNames): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    const ch = await connection.createChannel();
    const t = topology(names);
    for (const e of t.exchanges) await ch.assertExchange(e.name, e.type, { durable: e.durable });
    for (const q of t.queues) await ch.assertQueue(q.name, { durable: q.durable, arguments: q.arguments });
    for (const b of t.bindings) await ch.bindQueue(b.destination, b.source, b.routingKey);
    await ch.close();
  } finally {
    await connection.close().catch(() => undefined);
  }
}

async function deleteTopology(url: string, names: BrokerNames): Promise<void> {
  const connection = await amqp.connect(url);
  try {
    for (const q of Object.values(names.queues)) {
      const ch = await connection.createChannel();
      ch.on('error', () => undefined);
      await ch.deleteQueue(q).catch(() => undefined);
      await ch.close().catch(() => undefined);
    }
    for (const e of Object.values(names.exchanges)) {
      const ch = await connection.createChannel();
      ch.on('error', () => undefined);
      await ch.deleteExchange(e).catch(() => undefined);
      await ch.close().catch(() => undefined);
    }
  } finally {
    await connection.close().catch(() => undefined);
  }
}

class Simulation {
  private aborted = false;
  private abortWaiters: Array<() => void> = [];
  readonly tag = `sim-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  readonly database = this.tag.replace(/-/g, '_');
  readonly names: BrokerNames;
  readonly logDir: string;
  readonly timeoutMs: number;
  readonly intervalMs: number;
  private services: ServiceChild[] = [];
  private ingestMetricsUrls: string[] = [];
  private apiUrl = '';
  private fleet!: Fleet;
  private observer!: Observer;
  private probe!: StoreProbe;
  private samples: Sample[] = [];
  private maxQueue = 0;
  private maxQueueAt = 0;
  private startedAt = new Date();
  private machine!: Machine;
  private silenced: number[] = [];
  private shutdowns: number[] = [];
  private returners = new Set<number>();
  private beatStart = 0;
  private beatEnd = 0;
  private beatingOver = false;
  private returnPhase = false;
  private ownCpuStart = 0;
  private ownCpuEnd = 0;
  private ownRssPeak = 0;
  private ownRssEnd = 0;
  private countersAtStart: IngestCounters | null = null;
  private countersAtEnd: IngestCounters | null = null;
  private countersAfterDrain: IngestCounters | null = null;
  private queueAtEnd: number | null = null;
  private registrationS = 0;
  private drainS: number | null = null;
  private drained = false;
  private notes: string[] = [];
  private extensionS = 0;
  private readonly backends = new BackendCpu();
  /** Fleet counters when the measured window (the scripted timeline) started. */
  private base = { offered: 0, confirmed: 0, failed: 0, skippedBusy: 0 };
  private atEnd = { offered: 0, confirmed: 0, failed: 0, skippedBusy: 0 };
  private queueAtCheck: number | null = null;

  constructor(readonly o: SimOptions) {
    this.names = brokerNames(this.tag);
    this.logDir = join(ROOT, '.cache', 'simulate', this.tag);
    this.timeoutMs = Math.round(o.timeoutS * 1000);
    this.intervalMs = Math.round(o.intervalS * 1000);
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    for (const w of this.abortWaiters) w();
    this.abortWaiters = [];
  }

  /** Sleeps, or returns early when the run is interrupted. */
  private pause(ms: number): Promise<void> {
    if (this.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.abortWaiters.push(done);
    });
  }

  async execute(): Promise<number> {
    const o = this.o;
    this.machine = await describeMachine();
    out(renderMachine(this.machine));
    const down = (['rabbitmq', 'store', 'redis'] as const).filter((k) => this.machine[k] === 'unreachable');
    if (down.length) throw new CannotRun(`not reachable: ${down.join(', ')} (start them with \`npm run services\`; URLs from RABBITMQ_URL / MONGO_URL / REDIS_URL)`);
    const mongoUrl = mongoUrlFor(this.database);
    const joinToken = o.auth ? randomBytes(24).toString('hex') : undefined;
    const httpNodes = Math.round(o.nodes * o.httpShare);
    out(
      `simulate: run ${this.tag}: ${o.nodes} nodes (${o.nodes - httpNodes} AMQP on ${o.channels} confirm channels, ${httpNodes} HTTP on ${o.httpConnections} keep-alive sockets) every ${o.intervalS} s ±${Math.round(o.jitter * 100)} %, ` +
        `timeout ${o.timeoutS} s, sweep ${o.sweepS} s, target ${o.target}${o.target === 'separate' ? ` (${o.ingests} ingest${o.ingests > 1 ? 's' : ''})` : ''}, auth ${o.auth ? 'on' : 'off'}`,
    );
    out(
      o.legacy
        ? `simulate: pace: legacy agents (--legacy): they declare no interval, and nothing sets their pace`
        : `simulate: pace: the agents declare ${o.intervalS} s and follow what they are told (±10 % stagger); HEARTBEAT_MAX_RATE ${o.maxRate}` +
            (o.maxRate > 0
              ? `: expected once all are ONLINE every ${o.expected.intervalS} s, timeout ${o.expected.timeoutS} s (max(${o.intervalS}, ceil(${o.nodes} / ${o.maxRate})), max(${o.timeoutS}, 3 × interval))`
              : ' (adaptation off)'),
    );
    out(
      `simulate: timeline (s after registration): silence ${round1(o.silenceShare * 100)} % + shutdown ${round1(o.shutdownShare * 100)} % at ${round1(o.silenceAtS)}, ` +
        `${round1(o.returnShare * 100)} % of the silenced come back from ${round1(o.returnAtS)} once detected, beats stop at ${round1(o.durationS)} ` +
        `(up to +${round1(o.detectWaitS)} while silenced nodes are undetected), then drain ≤ ${round1(o.drainWaitS)}`,
    );
    if (o.silenceShare + o.shutdownShare > 0.5 && o.serviceEnv.MASS_SILENCE_GUARD !== 'false') {
      out('simulate: note: more than 50 % of the nodes go quiet at once: the mass-silence guard will hold them (cluster.degraded); --env MASS_SILENCE_GUARD=false turns it off');
    }
    out(`simulate: broker namespace ${this.tag}, database ${this.database}, Redis prefix sim:${this.tag}; service logs in ${this.logDir.slice(ROOT.length + 1)}/`);

    try {
      await declareTopology(RABBITMQ_URL, this.names);
      this.observer = await this.startObserver(joinToken);
      // Connected before the services start, so that the database is dropped whatever happens next.
      this.probe = new StoreProbe(this.fleet, mongoUrl, { sample: o.sample, pollMs: o.pollMs, dutyShare: 0.1, exclude: () => false });
      await this.probe.connect();
      await this.startServices(mongoUrl, joinToken);
      if (this.aborted) return EXIT.interrupted;

      await this.fleet.connect();
      this.probe.chooseSample();

      await this.registrationPhase();
      if (!this.aborted) await this.beatingPhase();
      if (!this.aborted) await this.drainPhase();
      await this.probe.stop();
      let check: Awaited<ReturnType<StoreProbe['finalCheck']>> | null = null;
      if (!this.aborted) {
        try {
          check = await this.probe.finalCheck();
        } catch (error) {
          this.notes.push(`STORE CHECK FAILED: ${(error as Error).message}`);
          out(`simulate: the store check failed: ${(error as Error).message}`);
        }
      }
      const code = this.report(check);
      return this.aborted ? EXIT.interrupted : code;
    } finally {
      await this.teardown();
    }
  }

  private async startObserver(joinToken: string | undefined): Promise<Observer> {
    const o = this.o;
    const apiPort = await freePort();
    this.apiUrl = `http://127.0.0.1:${apiPort}`;
    this.fleet = new Fleet({
      nodes: o.nodes,
      intervalMs: this.intervalMs,
      jitter: o.jitter,
      httpShare: o.httpShare,
      channels: o.channels,
      httpConnections: o.httpConnections,
      auth: joinToken ? { joinToken } : null,
      rabbitUrl: RABBITMQ_URL,
      apiUrl: this.apiUrl,
      names: this.names,
      seed: o.seed,
      confirmTimeoutMs: Math.min(10_000, Math.round(this.intervalMs * 0.8)),
      timeoutMs: this.timeoutMs,
      legacy: o.legacy,
    });
    const observer = new Observer(this.fleet, this.names);
    await observer.connect(RABBITMQ_URL);
    observer.onDetected = (i, at) => {
      // A silenced node chosen to come back returns once it was detected (and not before --return-at).
      if (this.returnPhase && !this.beatingOver && this.returners.has(i)) this.fleet.resume(i, at);
    };
    return observer;
  }

  private async startServices(mongoUrl: string, joinToken: string | undefined): Promise<void> {
    const o = this.o;
    const apiPort = Number(new URL(this.apiUrl).port);
    const env: Record<string, string> = {
      RABBITMQ_URL,
      MONGO_URL: mongoUrl,
      REDIS_URL,
      BROKER_NAMESPACE: this.tag,
      REDIS_PREFIX: `sim:${this.tag}`,
      TIMEOUT_MINUTES: String(o.timeoutS / 60),
      HEALTH_CHECK_INTERVAL: String(Math.round(o.sweepS * 1000)),
      // Explicit, so that the services pace the fleet as this run expects (it comes from --env or the environment).
      HEARTBEAT_MAX_RATE: String(o.maxRate),
      AUTH_MODE: joinToken ? 'on' : 'off',
      LOG_LEVEL: o.logLevel,
      LOG_FORMAT: 'text',
      // An HTTP agent beating faster than every 0.5 s would hit the default per-node rate limit.
      RATE_LIMIT_PER_NODE_PER_MINUTE: String(Math.max(120, Math.ceil((4 * 60) / o.intervalS))),
      ...(joinToken ? { AGENT_JOIN_TOKEN: joinToken } : {}),
      ...o.serviceEnv,
    };
    const log = (name: string) => join(this.logDir, `${name}.log`);
    if (o.target === 'separate') {
      for (let k = 0; k < o.ingests; k++) {
        const port = await freePort();
        this.ingestMetricsUrls.push(`http://127.0.0.1:${port}/metrics`);
        this.services.push(
          new ServiceChild(o.ingests > 1 ? `ingest-${k + 1}` : 'ingest', 'services/ingest/main.ts', { ...env, METRICS_PORT: String(port) }, log(`ingest-${k + 1}`)).start(),
        );
      }
      const sweeperPort = await freePort();
      this.services.push(new ServiceChild('sweeper', 'services/sweeper/main.ts', { ...env, METRICS_PORT: String(sweeperPort) }, log('sweeper')).start());
      this.services.push(new ServiceChild('api', 'services/api/main.ts', { ...env, PORT: String(apiPort) }, log('api')).start());
    } else {
      this.ingestMetricsUrls.push(`${this.apiUrl}/metrics`);
      this.services.push(
        new ServiceChild(
          'all-in-one',
          'services/all-in-one/main.ts',
          {
            ...env,
            ENV_FILE: 'none',
            STATE_FILE: 'none',
            PORT: String(apiPort),
            // The all-in-one's own local agent: a node outside the simulated fleet, left out of every figure.
            NODE_ID: `${this.tag}-local`,
            HEARTBEAT_INTERVAL: String(o.intervalS),
            HEARTBEAT_TIMEOUT: String(Math.min(10, o.intervalS * 0.8)),
            DOCKER_SOCKET: '/nonexistent/docker.sock',
            AGENT_CREDENTIAL_FILE: join(this.logDir, 'local-agent.credential'),
          },
          log('all-in-one'),
        ).start(),
      );
    }
    out(`simulate: started ${this.services.map((s) => `${s.name} (pid ${s.child?.pid})`).join(', ')}; waiting until ready`);
    const t0 = Date.now();
    const deadline = t0 + 180_000;
    const wantConsumers = o.target === 'separate' ? o.ingests : 1;
    for (;;) {
      if (this.aborted) return;
      const dead = this.services.find((s) => !s.running());
      if (dead) throw new CannotRun(`${dead.name} exited at start (code ${dead.exitCode ?? dead.exitSignal}):\n${dead.tail()}`);
      const ready = await fetch(`${this.apiUrl}/readyz`, { signal: AbortSignal.timeout(2000) })
        .then((r) => r.status === 200)
        .catch(() => false);
      const q = await this.observer.checkQueue(this.names.queues.ingest);
      const metrics = await Promise.all(this.ingestMetricsUrls.map((u) => fetchText(u)));
      if (ready && q && q.consumers >= wantConsumers && metrics.every((m) => m !== null)) break;
      if (Date.now() > deadline) {
        throw new CannotRun(
          `services not ready after 180 s (api ready: ${ready}, ingest consumers: ${q?.consumers ?? '?'} of ${wantConsumers}):\n${this.services.map((s) => `--- ${s.name}\n${s.tail(8)}`).join('\n')}`,
        );
      }
      await this.pause(500);
    }
    for (const s of this.services) s.refreshTree();
    out(`simulate: services ready in ${round1((Date.now() - t0) / 1000)} s`);
  }

  private async scrapeCounters(): Promise<IngestCounters | null> {
    const pages = await Promise.all(this.ingestMetricsUrls.map((u) => fetchText(u)));
    if (pages.some((p) => p === null)) return null;
    const sum: IngestCounters = { stored: 0, consumed: 0, refused: 0, byOutcome: {} };
    for (const page of pages) {
      const c = parseIngestCounters(page!);
      sum.stored += c.stored;
      sum.consumed += c.consumed;
      sum.refused += c.refused;
      for (const [k, v] of Object.entries(c.byOutcome)) sum.byOutcome[k] = (sum.byOutcome[k] ?? 0) + v;
    }
    return sum;
  }

  private async sampleQueue(): Promise<number | null> {
    const q = await this.observer.checkQueue(this.names.queues.ingest);
    if (q && q.messages > this.maxQueue) {
      this.maxQueue = q.messages;
      this.maxQueueAt = Date.now();
    }
    return q?.messages ?? null;
  }

  private sampleResources(): void {
    for (const s of this.services) s.sampleRss();
    const rss = process.memoryUsage.rss();
    this.ownRssEnd = rss;
    if (rss > this.ownRssPeak) this.ownRssPeak = rss;
  }

  private last: { at: number; offered: number; confirmed: number; stored: number | null; cpu: number } | null = null;

  /** One progress line (rates since the previous line). */
  private async progress(phase: string, elapsedS: number): Promise<void> {
    const f = this.fleet.counters;
    const counters = await this.scrapeCounters();
    const queue = await this.sampleQueue();
    const now = performance.now();
    const cpu = ownCpuMs();
    const prev = this.last;
    this.last = { at: now, offered: f.offered, confirmed: f.confirmed, stored: counters?.stored ?? null, cpu };
    const ob = this.observer;
    this.samples.push({ phase, t: round1(elapsedS), offered: f.offered, confirmed: f.confirmed, stored: counters?.stored ?? null, queue, online: ob.online, offline: ob.offline });
    if (!prev) return;
    const dt = (now - prev.at) / 1000;
    const rate = (a: number, b: number) => `${Math.round((a - b) / dt)}/s`;
    const stored = counters && prev.stored !== null ? rate(counters.stored, prev.stored) : 'n/a';
    const degraded = ob.clusterEvents.length;
    out(
      `[${phase} ${elapsedS.toFixed(0).padStart(4)} s] offered ${rate(f.offered, prev.offered)} confirmed ${rate(f.confirmed, prev.confirmed)} stored ${stored} ` +
        `| queue ${queue ?? '?'} (max ${this.maxQueue}) | ONLINE ${ob.online} OFFLINE ${ob.offline} ` +
        `| events registered ${ob.registered} offline ${ob.counts.offlineTimeout} (+${ob.counts.offlineShutdown} shutdown) online ${ob.counts.online}${degraded ? ` cluster.degraded ${degraded}` : ''}` +
        `${f.reregisters ? ` | re-registrations ${f.reregisters}` : ''}${ob.falseOffline.length ? ` FALSE-OFFLINE ${ob.falseOffline.length}` : ''} | ${this.paceText()} | sim cpu ${Math.round(((cpu - prev.cpu) / (dt * 1000)) * 100)} %`,
    );
  }

  /** The intervals the fleet was told, most nodes first: `told 200 s ×19800, not told ×200 (fleet of 20000)`. */
  private paceText(): string {
    if (this.o.legacy) return `own ${this.o.intervalS} s (legacy)`;
    const told = this.fleet.toldIntervals();
    const parts = told.slice(0, 3).map((t) => (t.intervalMs ? `${round1(t.intervalMs / 1000)} s ×${t.nodes}` : `not told ×${t.nodes}`));
    const fleet = this.fleet.lastFleetSize ? ` (fleet of ${this.fleet.lastFleetSize})` : '';
    return `told ${parts.join(', ')}${told.length > 3 ? ', …' : ''}${fleet}`;
  }

  /** Heartbeats sent per second over the last `windowS` seconds of the beats (progress samples), or null. */
  private recentRate(windowS: number): { rate: number; overS: number } | null {
    const beats = this.samples.filter((x) => x.phase === 'beat');
    const last = beats[beats.length - 1];
    if (!last) return null;
    const first = beats.find((x) => x.t >= last.t - windowS);
    if (!first || last.t - first.t < 1) return null;
    return { rate: (last.offered - first.offered) / (last.t - first.t), overS: last.t - first.t };
  }

  private async registrationPhase(): Promise<void> {
    const o = this.o;
    const t0 = Date.now();
    let nextProgress = t0;
    // Each node beats from its first slot after its node.registered arrived, as an agent does once registered.
    this.fleet.startBeating();
    const sending = this.fleet.registerAll(o.registerRate, () => this.aborted);
    const deadline = t0 + o.registerWaitS * 1000 + (o.nodes / o.registerRate) * 1000;
    while (!this.aborted && Date.now() < deadline) {
      if (this.observer.registered >= o.nodes) break;
      if (Date.now() >= nextProgress) {
        await this.progress('register', (Date.now() - t0) / 1000);
        nextProgress += o.progressS * 1000;
      }
      this.sampleResources();
      await this.pause(200);
    }
    await sending;
    this.registrationS = (Date.now() - t0) / 1000;
    const missing = o.nodes - this.observer.registered;
    out(
      `simulate: ${this.observer.registered} of ${o.nodes} registrations stored (node.registered seen) in ${round1(this.registrationS)} s` +
        (missing ? `; the other ${missing} beat once their node.registered arrives` : '') +
        '; the scripted timeline starts now',
    );
  }

  private pickScenario(): void {
    const o = this.o;
    const random = prng(o.seed * 7919 + 17);
    const candidates: number[] = [];
    for (let i = 0; i < this.fleet.n; i++) if (!this.fleet.sampled[i] && this.fleet.state[i] === NodeState.Beating) candidates.push(i);
    // Fisher-Yates on the candidates: the first ones go silent, the next ones shut down.
    for (let k = candidates.length - 1; k > 0; k--) {
      const j = Math.floor(random() * (k + 1));
      [candidates[k], candidates[j]] = [candidates[j]!, candidates[k]!];
    }
    const nSilent = Math.min(candidates.length, Math.round(o.nodes * o.silenceShare));
    const nShutdown = Math.min(candidates.length - nSilent, Math.round(o.nodes * o.shutdownShare));
    this.silenced = candidates.slice(0, nSilent);
    this.shutdowns = candidates.slice(nSilent, nSilent + nShutdown);
    for (const i of this.silenced.slice(0, Math.round(nSilent * o.returnShare))) this.returners.add(i);
  }

  private async beatingPhase(): Promise<void> {
    const o = this.o;
    for (const s of this.services) s.beginWindow();
    this.backends.begin();
    this.ownCpuStart = ownCpuMs();
    this.ownRssPeak = 0;
    this.countersAtStart = await this.scrapeCounters();
    const fc = this.fleet.counters;
    this.base = { offered: fc.offered, confirmed: fc.confirmed, failed: fc.failed, skippedBusy: fc.skippedBusy };
    this.last = null;
    this.beatStart = Date.now();
    this.probe.startRecording();
    this.probe.start();
    await this.progress('beat', 0);
    let nextProgress = this.beatStart + o.progressS * 1000;
    let nextSample = this.beatStart + 1000;
    let silencedDone = false;
    const end = this.beatStart + o.durationS * 1000;
    const extendedEnd = end + o.detectWaitS * 1000;
    let extensionAnnounced = false;
    while (!this.aborted) {
      const now = Date.now();
      const t = (now - this.beatStart) / 1000;
      if (!silencedDone && t >= o.silenceAtS) {
        silencedDone = true;
        this.pickScenario();
        for (const i of this.silenced) this.fleet.silence(i, now);
        for (const i of this.shutdowns) this.fleet.shutdown(i, now);
        out(`simulate: t=${round1(t)} s: ${this.silenced.length} nodes silenced, ${this.shutdowns.length} announced shutdown`);
      }
      if (silencedDone && !this.returnPhase && t >= o.returnAtS) {
        this.returnPhase = true;
        let back = 0;
        for (const i of this.returners) {
          if (this.observer.detectedAt[i]! > 0) {
            this.fleet.resume(i, now);
            back++;
          }
        }
        if (this.returners.size) out(`simulate: t=${round1(t)} s: ${back} of ${this.returners.size} returning nodes were detected and beat again (the others once detected)`);
      }
      if (now >= end) {
        const undetected = this.silenced.filter((i) => this.observer.detectedAt[i] === 0).length;
        if (!undetected || now >= extendedEnd) break;
        if (!extensionAnnounced) {
          extensionAnnounced = true;
          out(`simulate: ${undetected} silenced nodes not detected yet: the fleet keeps beating for up to ${round1(o.detectWaitS)} s more`);
        }
      }
      if (now >= nextSample) {
        nextSample += 1000;
        this.sampleResources();
        if (now < nextProgress) await this.sampleQueue();
      }
      if (now >= nextProgress) {
        nextProgress += o.progressS * 1000;
        await this.progress('beat', t);
      }
      await this.pause(Math.max(1, Math.min(100, nextSample - Date.now())));
    }
    this.beatingOver = true;
    this.extensionS = Math.max(0, (Date.now() - end) / 1000);
    this.probe.stopRecording();
    this.beatEnd = Date.now();
    this.atEnd = { offered: fc.offered, confirmed: fc.confirmed, failed: fc.failed, skippedBusy: fc.skippedBusy };
    this.ownCpuEnd = ownCpuMs();
    this.sampleResources();
    for (const s of this.services) s.endWindow();
    this.backends.end();
    this.countersAtEnd = await this.scrapeCounters();
    this.queueAtEnd = await this.sampleQueue();
    // The sweeper stops first, while the fleet still beats: every decision it made was about a live fleet, and
    // the end of the run (every node silent) is not one big silence to sweep.
    const sweeper = this.services.find((s) => s.name === 'sweeper');
    if (sweeper) await sweeper.stop(5000);
    await this.fleet.stopBeating(this.fleet.pending ? Math.min(10_000, this.intervalMs) : 0);
    out(
      `simulate: ${sweeper ? 'sweeper stopped, then ' : ''}beats stopped after ${round1((Date.now() - this.beatStart) / 1000)} s (figures cover the first ${round1((this.beatEnd - this.beatStart) / 1000)} s)`,
    );
  }

  private async drainPhase(): Promise<void> {
    const o = this.o;
    const t0 = Date.now();
    const deadline = t0 + o.drainWaitS * 1000;
    const f = this.fleet.counters;
    const expected = f.confirmed + f.registersConfirmed + f.shutdownsConfirmed;
    let emptyChecks = 0;
    let nextProgress = t0 + o.progressS * 1000;
    while (!this.aborted) {
      const counters = await this.scrapeCounters();
      const queue = await this.sampleQueue();
      emptyChecks = queue === 0 ? emptyChecks + 1 : 0;
      const consumedAll = counters ? counters.consumed >= expected : emptyChecks >= 3;
      if (consumedAll && queue === 0 && this.probe.unsettled === 0) {
        this.drained = true;
        break;
      }
      if (Date.now() >= deadline) break;
      if (Date.now() >= nextProgress) {
        nextProgress += o.progressS * 1000;
        await this.progress('drain', (Date.now() - this.beatStart) / 1000);
      }
      await this.pause(250);
    }
    this.drainS = (Date.now() - t0) / 1000;
    this.countersAfterDrain = await this.scrapeCounters();
    this.queueAtCheck = await this.sampleQueue();
    out(`simulate: ${this.drained ? 'drained' : `NOT drained within ${o.drainWaitS} s`} after ${round1(this.drainS)} s; reading every node from the store`);
  }

  private report(check: Awaited<ReturnType<StoreProbe['finalCheck']>> | null): number {
    const o = this.o;
    const f = this.fleet;
    const c = f.counters;
    const ob = this.observer;
    const beatS = Math.max(0.001, (this.beatEnd - this.beatStart) / 1000);
    const probe: ProbeSummary = this.probe.summary();
    const offered = this.atEnd.offered - this.base.offered;
    const confirmed = this.atEnd.confirmed - this.base.confirmed;
    const offeredRate = offered / beatS;
    const storedRate = this.countersAtStart && this.countersAtEnd ? (this.countersAtEnd.stored - this.countersAtStart.stored) / beatS : null;
    const storedWithDrain = this.countersAtStart && this.countersAfterDrain ? (this.countersAfterDrain.stored - this.countersAtStart.stored) / (beatS + (this.drainS ?? 0)) : null;
    // Without the ingest's counter: what the broker took minus what is still queued.
    const storedFallback = this.queueAtEnd !== null ? (confirmed - this.queueAtEnd) / beatS : null;
    const storedShown = storedRate ?? storedFallback;

    // Detection of the silenced nodes.
    const firstOffline = new Map<number, { arrivedAt: number; lastHeartbeat: number | null; timeoutMs: number }>();
    for (const e of ob.events) {
      if (e.type !== 'node.offline' || e.reason !== 'timeout') continue;
      const s = f.silencedAt[e.node]!;
      if (!s || e.arrivedAt < s || firstOffline.has(e.node)) continue;
      firstOffline.set(e.node, { arrivedAt: e.arrivedAt, lastHeartbeat: e.lastHeartbeat, timeoutMs: e.timeoutMs });
    }
    const detectionMs: number[] = [];
    const rawMs: number[] = [];
    let detected = 0;
    const undetected: string[] = [];
    for (const i of this.silenced) {
      const d = firstOffline.get(i);
      if (!d) {
        undetected.push(f.ids[i]!);
        continue;
      }
      detected++;
      rawMs.push(d.arrivedAt - f.silencedAt[i]!);
      // Against the node's own deadline: the timeout it was told, or the default.
      if (d.lastHeartbeat !== null) detectionMs.push(d.arrivedAt - (d.lastHeartbeat + d.timeoutMs));
    }
    const resumed = [...this.returners].filter((i) => f.resumedAt[i]! > 0);
    const backOnline = resumed.filter((i) => ob.events.some((e) => e.node === i && e.type === 'node.online' && e.arrivedAt >= f.resumedAt[i]!)).length;
    const shutdownSeen = this.shutdowns.filter((i) => ob.events.some((e) => e.node === i && e.type === 'node.offline' && e.reason === 'shutdown')).length;
    const dup = ob.duplicates();
    const duplicates = dup.sameVersion + dup.repeated;
    const falseOffline = ob.falseOffline.length;
    const lost = check ? check.lostHeartbeats.length + check.missingNodes.length : null;
    const lat = probe.latenciesMs;
    const p50 = pct(lat, 50);
    const p99 = pct(lat, 99);
    const ownCpu = ((this.ownCpuEnd - this.ownCpuStart) / (beatS * 1000)) * 100;
    const usages: Usage[] = this.services.map((s) => s.usage());
    const afterEnd = ob.events.filter((e) => e.arrivedAt > this.beatEnd).length;

    // The pace: what the fleet was told and the rate it sent at.
    const told = f.toldIntervals();
    const mostTold = told[0] && told[0].intervalMs ? told[0] : null;
    const timeouts = new Map<number, number>();
    for (let i = 0; i < f.n; i++) timeouts.set(f.timeoutMs[i]!, (timeouts.get(f.timeoutMs[i]!) ?? 0) + 1);
    const mostTimeout = [...timeouts].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0]!;
    const recent = this.recentRate(60);
    const paced = !o.legacy && o.maxRate > 0;
    const toldText = told.map((t) => (t.intervalMs ? `${round1(t.intervalMs / 1000)} s ×${t.nodes}` : `not told ×${t.nodes}`)).join(', ');
    const detectP99 = pct(detectionMs, 99);

    const rows: Row[] = [
      { figure: 'offered heartbeats (virtual agents → transport)', system: offeredRate, baseline: null, unit: 'msg/s' },
      { figure: 'confirmed heartbeats (broker confirm / api 2xx)', system: confirmed / beatS, baseline: null, unit: 'msg/s' },
      {
        figure: `fleet heartbeat rate, last ${recent ? Math.round(recent.overS) : 60} s of the beats (heartbeats sent)`,
        system: recent?.rate ?? null,
        baseline: paced ? o.maxRate : null,
        baselineName: 'HEARTBEAT_MAX_RATE',
        unit: 'msg/s',
        // The rows are finished with a null ratio unless given: this one is judged against the cap.
        ...(paced && recent ? { target: '<= 1.1x', ratio: recent.rate / o.maxRate, met: recent.rate <= 1.1 * o.maxRate } : {}),
      },
      {
        figure: o.legacy ? 'heartbeat interval (legacy agents: their own)' : `interval told to most nodes (${mostTold ? `${mostTold.nodes} of ${f.n}` : 'none told'})`,
        system: o.legacy ? o.intervalS : mostTold ? mostTold.intervalMs / 1000 : null,
        baseline: o.expected.intervalS,
        baselineName: 'expected',
        unit: 's',
      },
      {
        figure: `timeout of most nodes (${mostTimeout[1]} of ${f.n}; told, or the default)`,
        system: mostTimeout[0] / 1000,
        baseline: o.expected.timeoutS,
        baselineName: 'expected',
        unit: 's',
      },
      {
        figure: storedRate !== null ? 'stored messages (ingest counter, during the beats)' : 'stored messages (confirmed − still queued: no ingest counter)',
        system: storedShown,
        baseline: null,
        unit: 'msg/s',
      },
      { figure: 'stored messages incl. the drain', system: storedWithDrain, baseline: null, unit: 'msg/s' },
      { figure: `publish→stored p50 (${probe.sampledNodes} sampled nodes)`, system: p50, baseline: pct(probe.lowerLatenciesMs, 50), baselineName: 'lower bound', unit: 'ms' },
      { figure: 'publish→stored p99', system: p99, baseline: pct(probe.lowerLatenciesMs, 99), baselineName: 'lower bound', unit: 'ms' },
      { figure: 'poll resolution (time between two reads of a node, p50)', system: probe.roundIntervalP50Ms, baseline: null, unit: 'ms' },
      {
        figure: 'deepest ingest queue (ready messages, 1 s samples)',
        system: this.maxQueue,
        baseline: null,
        unit: this.maxQueue ? `msgs (at ${round1((this.maxQueueAt - this.beatStart) / 1000)} s${this.maxQueueAt < this.beatStart ? ', during registration' : ''})` : 'msgs',
      },
      { figure: "detection latency p50 (node.offline − (last receive + the node's own timeout))", system: pct(detectionMs, 50), baseline: null, unit: 'ms' },
      { figure: 'detection latency p99', system: detectP99, baseline: null, unit: 'ms' },
      { figure: 'silence → node.offline p50', system: pct(rawMs, 50), baseline: null, unit: 'ms' },
      { figure: 'silence → node.offline p99', system: pct(rawMs, 99), baseline: null, unit: 'ms' },
      { figure: 'silenced nodes detected', system: detected, baseline: this.silenced.length, baselineName: 'silenced', target: '>= 1x', met: detected === this.silenced.length },
      { figure: 'returned nodes seen ONLINE again (node.online)', system: backOnline, baseline: resumed.length, baselineName: `came back, of ${this.returners.size} chosen` },
      { figure: 'announced shutdowns seen (node.offline, reason shutdown)', system: shutdownSeen, baseline: this.shutdowns.length, baselineName: 'announced' },
      { figure: 'false OFFLINE', system: falseOffline, baseline: null, target: '<= 0', met: falseOffline === 0 },
      { figure: 'duplicate transitions', system: duplicates, baseline: null, target: '<= 0', met: duplicates === 0 },
      {
        figure: 'confirmed heartbeats missing from the store at the end',
        system: lost,
        baseline: null,
        unit: check ? `of ${check.checked} nodes` : '',
        target: '<= 0',
        met: lost === null ? null : lost === 0,
      },
      { figure: 'simulator CPU (% of one core, during the beats)', system: ownCpu, baseline: null, unit: '%' },
      { figure: 'simulator RSS peak / end', system: this.ownRssPeak / 2 ** 20, baseline: this.ownRssEnd / 2 ** 20, baselineName: 'end', unit: 'MiB' },
    ];
    for (const u of usages) {
      rows.push({ figure: `${u.name}: CPU (% of one core, process tree)`, system: u.cpuPercent, baseline: null, unit: '%' });
      rows.push({
        figure: `${u.name}: RSS peak / end (node process)`,
        system: u.rssPeakBytes === null ? null : u.rssPeakBytes / 2 ** 20,
        baseline: u.rssEndBytes === null ? null : u.rssEndBytes / 2 ** 20,
        baselineName: 'end',
        unit: 'MiB',
      });
    }
    for (const b of this.backends.usage()) {
      rows.push({ figure: `${b.name}: CPU (% of one core; shared, other users included)`, system: b.cpuPercent, baseline: null, unit: '%' });
    }
    rows.push({ figure: 'machine CPU busy (all cores, everyone)', system: this.backends.machineBusyPercent, baseline: null, unit: `% of ${this.machine.cores} cores` });
    const finished = rows.map((r) => finishRow({ ...r, ratio: r.ratio ?? null }));

    const notes: string[] = [
      `timeline: registration ${round1(this.registrationS)} s, beats ${round1(beatS)} s (silence/shutdown at ${round1(o.silenceAtS)} s, returns from ${round1(o.returnAtS)} s${this.extensionS > 0.5 ? `, ${round1(this.extensionS)} s beyond --duration waiting for detections` : ''}), drain ${round1(this.drainS ?? 0)} s${this.drained ? '' : ' (NOT drained)'}`,
      `transport (during the timeline): ${offered} heartbeats offered, ${confirmed} confirmed, ${this.atEnd.failed - this.base.failed} failed, ${this.atEnd.skippedBusy - this.base.skippedBusy} skipped (previous one still unconfirmed); whole run: ${c.slowConfirms} confirmed after ${Math.min(10, o.intervalS * 0.8)} s; registrations ${c.registersConfirmed}/${c.registersSent} confirmed (${c.reregisters} re-registrations; ${ob.controlMessages} control.reregister received, ${c.reregisterIgnored} of them while already registering; ${c.skippedRegistering} beats skipped while registering); shutdowns ${c.shutdownsConfirmed}/${c.shutdownsSent}; HTTP statuses ${JSON.stringify(c.httpStatus)}; AMQP write-buffer full ${c.amqpBackpressure}×, errors ${c.amqpErrors}`,
      `stored msg/s: ${storedRate !== null ? `orchestrator_ingest_messages_total (outcome applied|late) summed over the ingest${this.ingestMetricsUrls.length > 1 ? 's' : ''}' /metrics, between the start and the end of the beats` : 'no ingest /metrics reachable: confirmed minus the ready messages left in the queue'}; outcomes over the whole run ${JSON.stringify(this.countersAfterDrain?.byOutcome ?? {})}`,
      `publish→stored: time from handing a sampled node's heartbeat to the transport until a poll of the store first shows a stats.reportedAt at or after its timestamp (the figure, an upper bound); ` +
        `the lower bound ends at the read before, which did not show it yet; ${probe.sampledNodes} nodes, ${lat.length} heartbeats measured, ${probe.neverSeen} not seen by the end; ` +
        `poll resolution (time between two reads of the same node) p50 ${Math.round(probe.roundIntervalP50Ms ?? 0)} ms / p99 ${Math.round(probe.roundIntervalP99Ms ?? 0)} ms; ` +
        `simulator's own store load: ${Math.round(probe.readsPerS)} queries/s (${probe.modeRounds.findOne} rounds of one findOne by _id per node, ${probe.modeRounds.in} rounds of one $in; the probe keeps the store busy about 10 % of the time, pauses ≤ 2 s), ${probe.errors} failed rounds`,
      `pace: ${
        o.legacy
          ? `legacy agents (--legacy): no interval declared, every node on its own ${o.intervalS} s and the default timeout ${o.timeoutS} s`
          : `agents declare ${o.intervalS} s; HEARTBEAT_MAX_RATE ${o.maxRate}; expected interval ${o.expected.intervalS} s, timeout ${o.expected.timeoutS} s; ` +
            `told at the end: ${toldText || 'nothing'}; ${c.paceAnswers} settings received (HTTP answers and control.settings; ${ob.settingsMessages} control.settings, ${ob.settingsForHttpNodes} of them for HTTP nodes, ignored), ` +
            `${c.paceChanges} changes of interval applied (±10 % stagger), ${c.paceFallbacks} back to their own interval; ` +
            `fleet rate ${Math.round(offeredRate)}/s over the timeline${recent ? `, ${round1(recent.rate)}/s over its last ${Math.round(recent.overS)} s` : ''}`
      }`,
      `detection latency: for each silenced node, arrival of its first node.offline at the simulator minus (lastHeartbeat in that event — the orchestrator's receive time of the node's last heartbeat — + the node's own timeout: the one it was told, or the default ${o.timeoutS} s); ` +
        `0 = detected the moment its timeout expired; the sweep interval (${o.sweepS} s) bounds it from above on a fast store. "silence → node.offline" is the raw time from the moment the simulator stopped the node's beats`,
      `false OFFLINE: a node.offline whose node did not announce a shutdown, decided (occurredAt) less than its own timeout − 1 s after a heartbeat of that node was confirmed to its agent; ${
        ob.falseOffline.length
          ? ob.falseOffline
              .slice(0, 5)
              .map((x) => `${x.nodeId} (${x.kind}, confirmed ${x.confirmedMsBeforeDecision ?? '?'} ms before the decision, stored lastHeartbeat ${x.lastHeartbeat})`)
              .join('; ')
          : 'none'
      }`,
      `duplicates: ${dup.sameVersion} nodeId+statusVersion with several eventIds, ${dup.repeated} same status twice in consecutive statusVersions; ${dup.redeliveries} redeliveries of one eventId (at-least-once, not duplicates); ${dup.versionGaps} statusVersion gaps${dup.examples.length ? `; e.g. ${dup.examples.join('; ')}` : ''}`,
      `events: ${ob.counts.registered} node.registered, ${ob.counts.offlineTimeout} node.offline (timeout), ${ob.counts.offlineShutdown} node.offline (shutdown), ${ob.counts.online} node.online, ${ob.clusterEvents.length} cluster.degraded, ${ob.invalidEvents} invalid, ${ob.foreignEvents} of other nodes; ${afterEnd} arrived after the measured window`,
      `store check: ${
        check
          ? `${check.checked} nodes read in ${check.reads} chunks of ≤ 2000 by _id in ${Math.round(check.ms)} ms; ${check.lostHeartbeats.length} with a stored stats.reportedAt older than their last confirmed heartbeat${
              check.lostHeartbeats.length
                ? ` (e.g. ${check.lostHeartbeats
                    .slice(0, 3)
                    .map((l) => `${l.nodeId}: confirmed ${l.confirmedTs}, stored ${l.storedTs}`)
                    .join('; ')})`
                : ''
            }; ${check.missingNodes.length} confirmed nodes missing`
          : 'not run'
      }`,
      `undetected silenced nodes: ${undetected.length ? undetected.slice(0, 10).join(', ') : 'none'}`,
      `CPU: utime+stime from /proc/<pid>/stat of each service's process tree (tsx launcher + the node process running main.ts) over the beats; RSS: VmRSS of that node process, sampled every second; simulator: process.cpuUsage()`,
      ...usages.map(
        (u) => `${u.name}: pid ${u.pid ?? '?'}, CPU ${u.cpuPercent === null ? '-' : `${u.cpuPercent.toFixed(1)} %`}, RSS peak ${mib(u.rssPeakBytes)}, end ${mib(u.rssEndBytes)}`,
      ),
      ...(f.schemaProblems().length
        ? [`SCHEMA: built messages failed the shared schema: ${f.schemaProblems().join('; ')}`]
        : [`messages: ${c.schemaChecked} built messages checked against agentMessageSchema, all valid`]),
      ...this.notes,
    ];

    const record: RunRecord = {
      name: 'simulate',
      scale: {
        nodes: o.nodes,
        intervalS: o.intervalS,
        httpShare: o.httpShare,
        silence: o.silenceShare,
        shutdown: o.shutdownShare,
        return: o.returnShare,
        durationS: o.durationS,
        timeoutS: o.timeoutS,
        sweepS: o.sweepS,
        target: o.target,
        ...(o.target === 'separate' ? { ingests: o.ingests } : {}),
        auth: o.auth,
        legacy: o.legacy,
        heartbeatMaxRate: o.maxRate,
      },
      rows: finished,
      notes,
      details: {
        options: o,
        run: this.tag,
        timeline: { registrationS: this.registrationS, beatS, extensionS: this.extensionS, drainS: this.drainS, drained: this.drained },
        transport: c,
        series: this.samples,
        probe: {
          ...probe,
          latenciesMs: undefined,
          lowerLatenciesMs: undefined,
          p50,
          p90: pct(lat, 90),
          p99,
          max: pct(lat, 100),
          lowerP50: pct(probe.lowerLatenciesMs, 50),
          lowerP99: pct(probe.lowerLatenciesMs, 99),
          count: lat.length,
        },
        detection: { silenced: this.silenced.length, detected, detectionMs, rawMs, undetected },
        pace: {
          legacy: o.legacy,
          maxRate: o.maxRate,
          expected: o.expected,
          told: told.map((t) => ({ intervalS: t.intervalMs / 1000, nodes: t.nodes })),
          timeouts: [...timeouts].map(([ms, nodes]) => ({ timeoutS: ms / 1000, nodes })),
          fleetSize: f.lastFleetSize || null,
          rateOverTimeline: offeredRate,
          recentRate: recent,
          settingsReceived: c.paceAnswers,
          controlSettings: ob.settingsMessages,
          changes: c.paceChanges,
          fallbacks: c.paceFallbacks,
        },
        returns: { chosen: this.returners.size, resumed: resumed.length, backOnline },
        shutdowns: { announced: this.shutdowns.length, seen: shutdownSeen },
        falseOffline: ob.falseOffline.slice(0, 200),
        duplicates: dup,
        events: { ...ob.counts, clusterDegraded: ob.clusterEvents, invalid: ob.invalidEvents, foreign: ob.foreignEvents, afterEnd },
        storeCheck: check ? { ...check, lostHeartbeats: check.lostHeartbeats.slice(0, 200), missingNodes: check.missingNodes.slice(0, 200) } : null,
        services: usages,
        backends: { processes: this.backends.usage(), machineBusyPercent: this.backends.machineBusyPercent },
        queueAtCheck: this.queueAtCheck,
        simulator: { cpuPercent: ownCpu, rssPeakBytes: this.ownRssPeak, rssEndBytes: this.ownRssEnd },
        ingestCounters: { atStart: this.countersAtStart, atEnd: this.countersAtEnd, afterDrain: this.countersAfterDrain },
        interrupted: this.aborted,
      },
      startedAt: this.startedAt.toISOString(),
      durationS: (Date.now() - this.startedAt.getTime()) / 1000,
      mode: 'default',
      machine: this.machine,
    };
    const file = saveRecord(record);
    out('');
    out(renderResult(record));
    out(`(saved ${file.slice(file.indexOf('bench/results'))})`);

    const problems: string[] = [];
    if (lost === null) problems.push('the store was not checked');
    else if (lost > 0) {
      problems.push(
        `${lost} nodes whose last confirmed heartbeat (or registration) is not in the store` +
          (this.queueAtCheck
            ? ` (the ingest had not caught up: ${this.queueAtCheck} messages still in its queue after the ${o.drainWaitS} s drain wait)`
            : ' (the ingest queue was empty: lost)'),
      );
    }
    if (falseOffline > 0) problems.push(`${falseOffline} false OFFLINE`);
    if (duplicates > 0) problems.push(`${duplicates} duplicate transitions`);
    if (detected < this.silenced.length) problems.push(`${this.silenced.length - detected} silenced nodes not detected`);
    if (f.schemaProblems().length) problems.push('built messages failed the schema');
    out('');
    if (this.aborted) out('simulate: INTERRUPTED: the figures above cover the run until then; nothing was checked');
    else if (problems.length) out(`simulate: FAILED: ${problems.join('; ')}`);
    out(
      `simulate: nodes=${o.nodes} offered=${Math.round(offeredRate)}/s stored=${storedShown === null ? 'n/a' : Math.round(storedShown)}/s p99=${p99 === null ? 'n/a' : `${Math.round(p99)}ms`} ` +
        `detected=${detected}/${this.silenced.length} false_offline=${falseOffline} duplicates=${duplicates} ` +
        `fleet_rate=${recent ? Math.round(recent.rate) : Math.round(offeredRate)}/s told=${o.legacy ? 'legacy' : mostTold ? `${round1(mostTold.intervalMs / 1000)}s` : 'none'} ` +
        `detect_p99=${detectP99 === null ? 'n/a' : `${Math.round(detectP99)}ms`}`,
    );
    return problems.length ? EXIT.checkFailed : EXIT.ok;
  }

  private tornDown = false;

  async teardown(): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    await this.fleet?.stopBeating(0).catch(() => undefined);
    await this.probe?.stop().catch(() => undefined);
    await Promise.all(this.services.map((s) => s.stop(10_000)));
    await this.fleet?.close().catch(() => undefined);
    await this.observer?.close().catch(() => undefined);
    if (this.o.keep) {
      out(`simulate: kept broker namespace ${this.tag}, database ${this.database}, Redis prefix sim:${this.tag} (--keep)`);
    } else {
      await deleteTopology(RABBITMQ_URL, this.names).catch((e: Error) => out(`simulate: could not delete the broker namespace: ${e.message}`));
      await deleteRedisKeys(REDIS_URL, `sim:${this.tag}`);
      if (this.probe) await this.probe.dropDatabase().catch((e: Error) => out(`simulate: could not drop database ${this.database}: ${e.message}`));
    }
    await this.probe?.close();
  }
}

async function main(): Promise<void> {
  let options: SimOptions;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    if (error instanceof OptionsError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(error.message.startsWith('usage') ? 0 : EXIT.cannotRun);
    }
    throw error;
  }
  // A closed stdout (the terminal went away, a pipe's reader exited) must not stop the clean-up.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  const sim = new Simulation(options);
  let signals = 0;
  const onSignal = (signal: string) => {
    signals++;
    if (signals === 1) {
      out(`\nsimulate: ${signal}: stopping (services, then clean-up); again to kill at once`);
      sim.abort();
    } else {
      killAllChildrenNow();
      process.exit(EXIT.interrupted);
    }
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('uncaughtException', (error) => {
    process.stderr.write(`simulate: crashed: ${error.stack ?? String(error)}\n`);
    killAllChildrenNow();
    process.exit(EXIT.cannotRun);
  });
  let code: number;
  try {
    code = await sim.execute();
  } catch (error) {
    process.stderr.write(`simulate: ${error instanceof CannotRun ? error.message : ((error as Error).stack ?? String(error))}\n`);
    await sim.teardown().catch(() => undefined);
    code = EXIT.cannotRun;
  }
  // Open handles of a failed run must not keep the process alive; children are killed by the exit hook.
  process.exit(code);
}

void main();

import { MongoClient, type Collection } from 'mongodb';
import { sleep } from './processes.js';
import type { Fleet } from './fleet.js';

interface StoredDoc {
  _id: string;
  status?: string;
  stats?: { reportedAt?: Date } | null;
}

export type PollMode = 'findOne' | 'in';

/** Longest pause between two poll rounds, whatever the duty share asks (bounds the poll resolution). */
const MAX_IDLE_MS = 2000;

export interface ProbeSummary {
  sampledNodes: number;
  /** Upper bounds: from the send to the first read that showed the heartbeat stored. */
  latenciesMs: number[];
  /** Lower bounds: from the send to the read before that (which did not show it yet), or 0. */
  lowerLatenciesMs: number[];
  /** Sampled heartbeats sent in the window that were never seen in the store (confirmed or not). */
  neverSeen: number;
  rounds: number;
  /** Time between the starts of two poll rounds (= how often each sampled node is read). */
  roundIntervalP50Ms: number | null;
  roundIntervalP99Ms: number | null;
  /** Time one round took (the store's answer time for the sample). */
  roundDurationP50Ms: number | null;
  reads: number;
  readsPerS: number;
  modeRounds: Record<PollMode, number>;
  errors: number;
}

/**
 * Follows the heartbeats of a sample of nodes into the store: every poll round reads each sampled node's
 * `stats.reportedAt` by `_id` (one `findOne` each, 4 at a time: indexed on MongoDB and on the patched FerretDB)
 * or with one `$in` (one collection scan on FerretDB 1.24), whichever answered the sample faster in the last
 * try-out (re-tried every 30 rounds). A heartbeat counts as stored at the end of the first round that sees a
 * reportedAt at or after its own timestamp (agent timestamps are strictly increasing per node); its
 * publish→stored time is that moment minus the moment it was handed to the transport, so the figure is high
 * by up to one round interval (the poll resolution, reported). The probe keeps the store busy about
 * `dutyShare` of the time: after a round it waits max(pollMs − d, min(2 s, d̄ × (1/duty − 1))), d̄ the moving
 * average of the round durations.
 */
export class StoreProbe {
  private client: MongoClient | null = null;
  private nodes!: Collection<StoredDoc>;
  private readonly sample: number[] = [];
  private readonly sampleIds: string[] = [];
  /** Per sampled node (by position in the sample): unsettled heartbeats [ts, sentAt] in send order. */
  private readonly pending: Array<Array<[number, number]>> = [];
  private readonly positionOf = new Map<number, number>();
  private readonly latencies: number[] = [];
  private readonly lowerLatencies: number[] = [];
  /** Per sampled node: when it was last read. */
  private lastReadAt: number[] = [];
  private neverSeen = 0;
  private roundStarts: number[] = [];
  private roundDurations: number[] = [];
  private reads = 0;
  private errors = 0;
  private running = false;
  private loop: Promise<void> | null = null;
  private mode: PollMode = 'findOne';
  private readonly lastCost: Record<PollMode, number> = { findOne: Infinity, in: Infinity };
  private readonly modeRounds: Record<PollMode, number> = { findOne: 0, in: 0 };
  private recordFrom = Infinity;
  private recordUntil = Infinity;
  private startedAt = 0;
  private stoppedAt = 0;

  constructor(
    private readonly fleet: Fleet,
    private readonly mongoUrl: string,
    private readonly options: { sample: number; pollMs: number; dutyShare: number; exclude: (i: number) => boolean },
  ) {}

  async connect(): Promise<void> {
    this.client = await MongoClient.connect(this.mongoUrl, { serverSelectionTimeoutMS: 10_000, socketTimeoutMS: 60_000, maxPoolSize: 8 });
    this.nodes = this.client.db().collection<StoredDoc>('nodes');
  }

  /** Picks the sample evenly over the fleet (AMQP and HTTP nodes in their share), skipping excluded nodes. */
  chooseSample(): void {
    const n = this.fleet.n;
    const want = Math.min(this.options.sample, n);
    if (!want) return;
    const step = n / want;
    for (let k = 0; k < want; k++) {
      let i = Math.floor(k * step);
      while (i < n && (this.options.exclude(i) || this.positionOf.has(i))) i++;
      if (i >= n) break;
      this.positionOf.set(i, this.sample.length);
      this.sample.push(i);
      this.sampleIds.push(this.fleet.ids[i]!);
      this.pending.push([]);
      this.lastReadAt.push(0);
      this.fleet.sampled[i] = 1;
    }
    this.fleet.beatListener = (i, ts, outcome, at) => {
      const p = this.positionOf.get(i);
      if (p === undefined) return;
      const list = this.pending[p]!;
      if (outcome === 'sent') {
        if (at >= this.recordFrom && at < this.recordUntil) list.push([ts, at]);
      } else if (outcome === 'failed') {
        const k = list.findIndex((e) => e[0] === ts);
        if (k >= 0) list.splice(k, 1);
      }
    };
  }

  get sampleSize(): number {
    return this.sample.length;
  }

  /** Heartbeats sent from now until stopRecording() are measured. */
  startRecording(): void {
    this.recordFrom = Date.now();
  }

  stopRecording(): void {
    this.recordUntil = Date.now();
  }

  /** Sampled heartbeats not yet seen in the store. */
  get unsettled(): number {
    let c = 0;
    for (const list of this.pending) c += list.length;
    return c;
  }

  start(): void {
    if (!this.sample.length) return;
    this.running = true;
    this.startedAt = performance.now();
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let round = 0;
    let typical = 0;
    while (this.running) {
      // Try the other way now and then: the cheaper one can change (a restarted, patched FerretDB).
      const other: PollMode = this.mode === 'findOne' ? 'in' : 'findOne';
      const mode = round === 1 || (round > 1 && round % 30 === 0) ? other : this.mode;
      const t0 = performance.now();
      this.roundStarts.push(t0);
      try {
        const found = mode === 'in' ? await this.readIn() : await this.readEach();
        const at = Date.now();
        for (let p = 0; p < this.sampleIds.length; p++) this.settle(p, found.get(this.sampleIds[p]!) ?? null, at);
        const d = performance.now() - t0;
        this.roundDurations.push(d);
        this.modeRounds[mode]++;
        this.lastCost[mode] = d;
        this.mode = this.lastCost.in < this.lastCost.findOne ? 'in' : 'findOne';
      } catch {
        this.errors++;
        await sleep(1000);
      }
      round++;
      const d = performance.now() - t0;
      // The duty share applies to a typical round (moving average): one slow answer does not open a long gap.
      typical = typical ? 0.8 * typical + 0.2 * d : d;
      const wait = Math.max(this.options.pollMs - d, Math.min(MAX_IDLE_MS, typical * (1 / this.options.dutyShare - 1)));
      const until = performance.now() + wait;
      while (this.running && performance.now() < until) await sleep(Math.min(50, until - performance.now()));
    }
  }

  private async readEach(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    let next = 0;
    const worker = async () => {
      while (next < this.sampleIds.length) {
        const id = this.sampleIds[next++]!;
        const doc = await this.nodes.findOne({ _id: id }, { projection: { 'stats.reportedAt': 1 } });
        this.reads++;
        const r = doc?.stats?.reportedAt;
        if (r) out.set(id, new Date(r).getTime());
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    return out;
  }

  private async readIn(): Promise<Map<string, number>> {
    const docs = await this.nodes.find({ _id: { $in: this.sampleIds } }, { projection: { 'stats.reportedAt': 1 } }).toArray();
    this.reads++;
    const out = new Map<string, number>();
    for (const doc of docs) if (doc.stats?.reportedAt) out.set(doc._id, new Date(doc.stats.reportedAt).getTime());
    return out;
  }

  private settle(p: number, reportedAt: number | null, at: number): void {
    const list = this.pending[p]!;
    const previousRead = this.lastReadAt[p]!;
    this.lastReadAt[p] = at;
    if (reportedAt === null) return;
    while (list.length && list[0]![0] <= reportedAt) {
      const [, sentAt] = list.shift()!;
      this.latencies.push(at - sentAt);
      this.lowerLatencies.push(Math.max(0, previousRead - sentAt));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.stoppedAt = performance.now();
    this.neverSeen = this.unsettled;
  }

  summary(): ProbeSummary {
    const intervals: number[] = [];
    for (let k = 1; k < this.roundStarts.length; k++) intervals.push(this.roundStarts[k]! - this.roundStarts[k - 1]!);
    const elapsedS = ((this.stoppedAt || performance.now()) - this.startedAt) / 1000;
    return {
      sampledNodes: this.sample.length,
      latenciesMs: this.latencies,
      lowerLatenciesMs: this.lowerLatencies,
      neverSeen: this.neverSeen,
      rounds: this.roundDurations.length,
      roundIntervalP50Ms: pct(intervals, 50),
      roundIntervalP99Ms: pct(intervals, 99),
      roundDurationP50Ms: pct(this.roundDurations, 50),
      reads: this.reads,
      readsPerS: elapsedS > 0 ? this.reads / elapsedS : 0,
      modeRounds: this.modeRounds,
      errors: this.errors,
    };
  }

  /**
   * The end-of-run check: reads every node's stats.reportedAt (and status) in chunks of `chunk` by _id
   * (`_id > last`, sorted by _id) and compares it with the newest heartbeat confirmed to that virtual agent.
   */
  async finalCheck(
    chunk = 2000,
  ): Promise<{ checked: number; missingNodes: string[]; lostHeartbeats: Array<{ nodeId: string; confirmedTs: string; storedTs: string | null }>; reads: number; ms: number }> {
    const t0 = performance.now();
    const stored = new Map<string, number | null>();
    let last = '';
    let reads = 0;
    for (;;) {
      let docs: StoredDoc[] = [];
      for (let attempt = 0; ; attempt++) {
        try {
          docs = await this.nodes
            .find({ _id: { $gt: last } }, { projection: { 'stats.reportedAt': 1, status: 1 } })
            .sort({ _id: 1 })
            .limit(chunk)
            .toArray();
          break;
        } catch (error) {
          if (attempt >= 10) throw error;
          await sleep(1000); // e.g. the store is being restarted
        }
      }
      reads++;
      if (!docs.length) break;
      for (const d of docs) stored.set(d._id, d.stats?.reportedAt ? new Date(d.stats.reportedAt).getTime() : null);
      last = docs.at(-1)!._id;
      if (docs.length < chunk) break;
    }
    const f = this.fleet;
    const missingNodes: string[] = [];
    const lostHeartbeats: Array<{ nodeId: string; confirmedTs: string; storedTs: string | null }> = [];
    let checked = 0;
    for (let i = 0; i < f.n; i++) {
      const confirmed = f.lastConfirmedTs[i]!;
      if (!f.registerConfirmed[i] && confirmed === 0) continue;
      checked++;
      const id = f.ids[i]!;
      if (!stored.has(id)) {
        missingNodes.push(id);
        continue;
      }
      const s = stored.get(id)!;
      if (confirmed > 0 && (s === null || s < confirmed)) {
        lostHeartbeats.push({ nodeId: id, confirmedTs: new Date(confirmed).toISOString(), storedTs: s === null ? null : new Date(s).toISOString() });
      }
    }
    return { checked, missingNodes, lostHeartbeats, reads, ms: performance.now() - t0 };
  }

  async close(): Promise<void> {
    await this.client?.close().catch(() => undefined);
  }

  /** Drops the run's database. */
  async dropDatabase(): Promise<void> {
    const client = this.client;
    if (!client) return;
    const name = client.db().databaseName;
    const exists = async () => (await client.db('admin').admin().listDatabases({ nameOnly: true })).databases.some((d) => d.name === name);
    for (let attempt = 0; ; attempt++) {
      try {
        await client.db().dropDatabase();
        // A write the server was still running for a killed service can create it again: check, drop again.
        await sleep(1500);
        if (!(await exists())) return;
      } catch (error) {
        if (attempt >= 10) throw error;
        await sleep(1000); // e.g. the store is being restarted
      }
      if (attempt >= 10) throw new Error(`database ${name} still exists after ${attempt + 1} drops`);
    }
  }
}

function pct(values: number[], p: number): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

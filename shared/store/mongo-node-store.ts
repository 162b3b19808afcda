import mongoose, { type Connection, type Model } from 'mongoose';
import type { NodeEvent, NodeStatus } from '../messages/index.js';
import type { ClusterGuardState, IngestLiveness, NodeRecord, NodeWrite } from './node-record.js';
import { StoreUnavailableError, type NodeStore, type WriteResult } from './node-store.js';

// Explicit, so no mongoose upgrade changes it under us: unknown filter keys are dropped. Every filter
// is built here from values validated at the edge (a nodeId matches [A-Za-z0-9._-]{1,64}), so no
// operator ($gt and friends) from input can reach a query.
mongoose.set('strictQuery', true);

export interface NodeDocument {
  _id: string;
  hostname: string;
  ipAddress: string;
  maxServers: number;
  status: NodeStatus;
  registeredAt: Date;
  lastHeartbeat: Date | null;
  statusChangedAt: Date;
  statusVersion: number;
  rev: string;
  prevRev?: string | null;
  stats: NodeRecord['stats'];
  history: NodeRecord['history'];
  outbox: NodeEvent[];
  clockSkewMs: number | null;
  reregisterRequestedAt: Date | null;
  credentialHash: string | null;
}

const statsSchema = new mongoose.Schema(
  { reportedAt: Date, cpuUsage: Number, memoryUsage: Number, diskUsage: Number, containerCount: Number },
  { _id: false },
);
const historySchema = new mongoose.Schema({ t: Date, cpu: Number, mem: Number }, { _id: false });

export const nodeSchema = new mongoose.Schema<NodeDocument>(
  {
    _id: { type: String, required: true },
    hostname: { type: String, required: true },
    ipAddress: { type: String, required: true },
    maxServers: { type: Number, required: true },
    status: { type: String, enum: ['ONLINE', 'OFFLINE'], required: true },
    registeredAt: { type: Date, required: true },
    lastHeartbeat: { type: Date, default: null },
    statusChangedAt: { type: Date, required: true },
    statusVersion: { type: Number, required: true },
    rev: { type: String, required: true },
    prevRev: { type: String },
    stats: { type: statsSchema, default: null },
    history: { type: [historySchema], default: [] },
    outbox: { type: [mongoose.Schema.Types.Mixed] as never, default: [] },
    clockSkewMs: { type: Number, default: null },
    reregisterRequestedAt: { type: Date, default: null },
    credentialHash: { type: String, default: null },
  },
  { collection: 'nodes', versionKey: false, autoIndex: false, autoCreate: false, strict: true },
);
// The sweep's query: its cost follows the number of expired nodes on MongoDB. (The SQLite-backed
// test server indexes only _id and scans instead; see docs/architecture.md.)
nodeSchema.index({ status: 1, lastHeartbeat: 1 });
nodeSchema.index({ 'outbox.eventId': 1 }, { sparse: true });

interface LivenessDocument {
  _id: string;
  kind: 'ingest' | 'guard';
  healthySince?: Date | null;
  lastSeenAt?: Date;
  lagMs?: number;
  heldSince?: Date | null;
  eventId?: string | null;
}
const livenessSchema = new mongoose.Schema<LivenessDocument>(
  {
    _id: { type: String, required: true },
    kind: { type: String, required: true },
    healthySince: { type: Date, default: null },
    lastSeenAt: Date,
    lagMs: { type: Number, default: 0 },
    heldSince: { type: Date, default: null },
    eventId: { type: String, default: null },
  },
  { collection: 'orchestrator_state', versionKey: false, autoIndex: false, autoCreate: false },
);

export interface MongoNodeStoreOptions {
  url: string;
  historyPoints: number;
  /** Most operations in one bulk write command (default: 10 on FerretDB, 1000 elsewhere). */
  opsPerCommand?: number;
  /** Read batches with one lookup per id (default: only on FerretDB, see below). */
  perIdReads?: boolean;
  /** Fail an operation after this long without a server (default 5 s). */
  serverSelectionTimeoutMs?: number;
}

const GUARD_ID = 'guard:mass-silence';

function toRecord(doc: NodeDocument): NodeRecord {
  return {
    nodeId: doc._id,
    hostname: doc.hostname,
    ipAddress: doc.ipAddress,
    maxServers: doc.maxServers,
    status: doc.status,
    registeredAt: doc.registeredAt,
    lastHeartbeat: doc.lastHeartbeat ?? null,
    statusChangedAt: doc.statusChangedAt,
    statusVersion: doc.statusVersion,
    rev: doc.rev,
    ...(doc.prevRev ? { prevRev: doc.prevRev } : {}),
    stats: doc.stats ?? null,
    history: doc.history ?? [],
    outbox: doc.outbox ?? [],
    clockSkewMs: doc.clockSkewMs ?? null,
    reregisterRequestedAt: doc.reregisterRequestedAt ?? null,
    credentialHash: doc.credentialHash ?? null,
  };
}

function toDocument(record: NodeRecord): NodeDocument {
  const { nodeId, stats, ...rest } = record;
  return { _id: nodeId, ...rest, stats: stats ? statsDocument(stats) : null };
}

/** Field order matters: $max compares embedded documents field by field, so reportedAt goes first. */
function statsDocument(stats: NonNullable<NodeRecord['stats']>) {
  return {
    reportedAt: stats.reportedAt,
    cpuUsage: stats.cpuUsage,
    memoryUsage: stats.memoryUsage,
    diskUsage: stats.diskUsage,
    containerCount: stats.containerCount,
  };
}

/** Turns driver failures into StoreUnavailableError; anything else is a bug and is rethrown. */
/** No store call may hang: a server that accepted a request and then died would otherwise hold it forever. */
const OPERATION_DEADLINE_MS = 8_000;

async function guarded<T>(what: string, run: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreUnavailableError(`store ${what} did not answer within ${OPERATION_DEADLINE_MS / 1000} s`)), OPERATION_DEADLINE_MS);
    });
    return await Promise.race([run(), deadline]);
  } catch (error) {
    if (error instanceof StoreUnavailableError) throw error;
    // Duplicate keys only: the server answered and an insert lost a race, which write() reports as a conflict.
    const writeErrors = (error as { writeErrors?: Array<{ code?: number }> })?.writeErrors;
    if (Array.isArray(writeErrors) && writeErrors.length > 0 && writeErrors.every((e) => e.code === 11000)) throw error;
    const name = (error as Error)?.name ?? '';
    if (/Mongo|Mongoose|Disconnected|Timeout|Network|Pool/i.test(name) || /ECONNREFUSED|ECONNRESET|connection|topology|timed out/i.test(String((error as Error)?.message))) {
      throw new StoreUnavailableError(`store ${what} failed: ${(error as Error).message}`, { cause: error });
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** The MongoDB adapter of the node store (mongoose). Works on MongoDB 6/7 and on the SQLite-backed FerretDB used in tests. */
export async function createMongoNodeStore(options: MongoNodeStoreOptions): Promise<NodeStore & { connection: Connection; ensureIndexes(): Promise<void> }> {
  const connection = mongoose.createConnection(options.url, {
    serverSelectionTimeoutMS: options.serverSelectionTimeoutMs ?? 5000,
    // A socket that stops answering is closed (and the operation fails, to be retried) instead of waiting forever.
    socketTimeoutMS: 10_000,
    // Fail fast instead of queueing every operation in memory while the store is down.
    bufferCommands: false,
    maxPoolSize: 20,
  });
  connection.on('error', () => {
    /* surfaced by the failing operation; never crash on the event */
  });
  await guarded('connect', () => connection.asPromise());
  const Nodes: Model<NodeDocument> = connection.model<NodeDocument>('Node', nodeSchema);
  // FerretDB on SQLite answers only a bare {_id: value} filter from its index ($in scans the collection),
  // so against it a batch is read with one indexed lookup per node instead of one $in query.
  const buildInfo = await guarded('buildInfo', () => connection.db!.admin().command({ buildInfo: 1 }));
  const isFerret = 'ferretdbVersion' in buildInfo;
  const perIdReads = options.perIdReads ?? isFerret;
  // FerretDB 1.24 stalls on an update command of 100 or more statements (seen here: 80 take 0.2 s, 100
  // never finish), and each statement scans the collection, so there a bulk write is sent as commands of 10:
  // each stays well inside the operation deadline.
  const opsPerCommand = options.opsPerCommand ?? (isFerret ? 10 : 1000);
  const State: Model<LivenessDocument> = connection.model<LivenessDocument>('OrchestratorState', livenessSchema);

  async function ensureIndexes(): Promise<void> {
    await guarded('createCollection', async () => {
      for (const model of [Nodes, State]) {
        await model.createCollection().catch((error: { code?: number; codeName?: string }) => {
          if (error?.code !== 48 && error?.codeName !== 'NamespaceExists') throw error;
        });
      }
    });
    // Explicit, once at start (autoIndex is off).
    await guarded('createIndexes', () => Nodes.createIndexes());
  }

  /** lastHeartbeat and stats only move forward: $max, with stats stored reportedAt first so it compares by time. */
  function forwardOnly(lastHeartbeat: Date | null | undefined, stats: NodeRecord['stats'] | undefined): Record<string, unknown> {
    const max: Record<string, unknown> = {};
    if (lastHeartbeat) max.lastHeartbeat = lastHeartbeat;
    if (stats) max.stats = statsDocument(stats);
    return max;
  }

  function toOp(w: NodeWrite) {
    if (w.kind === 'insert') {
      return { insertOne: { document: toDocument(w.record) } };
    }
    if (w.kind === 'refresh') {
      const update: Record<string, unknown> = { $set: w.set };
      const max = forwardOnly(w.lastHeartbeat, w.stats);
      if (Object.keys(max).length) update.$max = max;
      return { updateOne: { filter: { _id: w.nodeId }, update } };
    }
    const { lastHeartbeat, stats, ...rest } = w.set;
    // prevRev lets a writer that lost sight of its write (read back after a later writer) recognise it.
    const update: Record<string, unknown> = { $set: { ...rest, rev: w.newRev, prevRev: w.expectedRev } };
    const max = forwardOnly(lastHeartbeat, stats);
    if (Object.keys(max).length) update.$max = max;
    if (w.pushOutbox.length) update.$push = { outbox: { $each: w.pushOutbox } };
    const filter: Record<string, unknown> = { _id: w.nodeId, rev: w.expectedRev };
    if (w.silentBefore) Object.assign(filter, { status: 'ONLINE', lastHeartbeat: { $lt: w.silentBefore } });
    return { updateOne: { filter, update } };
  }

  const store = {
    connection,
    ensureIndexes,
    async get(nodeId: string) {
      const doc = await guarded('get', () => Nodes.findById(nodeId).lean<NodeDocument>().exec());
      return doc ? toRecord(doc) : null;
    },
    async getMany(nodeIds: string[]) {
      if (!nodeIds.length) return new Map<string, NodeRecord>();
      const docs = perIdReads
        ? (await Promise.all(nodeIds.map((id) => guarded('getMany', () => Nodes.collection.findOne({ _id: id } as never))))).filter(Boolean)
        : await guarded('getMany', () => Nodes.collection.find({ _id: { $in: nodeIds } } as never).toArray());
      return new Map((docs as unknown as NodeDocument[]).map((d) => [d._id, toRecord(d)]));
    },
    async list(filter: { status?: NodeStatus } = {}) {
      const query = filter.status ? { status: filter.status } : {};
      const docs = await guarded('list', () => Nodes.find(query).sort({ _id: 1 }).lean<NodeDocument[]>().exec());
      return docs.map(toRecord);
    },
    async write(writes: NodeWrite[]): Promise<WriteResult> {
      if (writes.length === 0) return { conflicts: [], roundTrips: 0 };
      const ops = writes.map(toOp);
      let applied = 0;
      let duplicate = false;
      // The driver's bulkWrite (update commands) without mongoose casting: field order as built here.
      for (let i = 0; i < ops.length; i += opsPerCommand) {
          const chunk = ops.slice(i, i + opsPerCommand);
          try {
            const result = await guarded('write', () => Nodes.collection.bulkWrite(chunk as never, { ordered: false }));
            applied += (result.insertedCount ?? 0) + (result.matchedCount ?? 0);
          } catch (error) {
            const writeErrors = (error as { writeErrors?: Array<{ code?: number; err?: { code?: number } }> }).writeErrors;
            const codes = Array.isArray(writeErrors) ? writeErrors.map((e) => e.code ?? e.err?.code) : [(error as { code?: number }).code];
            if (!codes.length || codes.some((code) => code !== 11000)) throw error;
            duplicate = true; // an insert raced another writer's insert: resolved below like any conflict
          }
      }
      if (!duplicate && applied === writes.length) return { conflicts: [], roundTrips: 1 };
      // Some writes lost a race. The bulk result has no per-operation counts, so read back which
      // documents carry the rev this batch wrote.
      const ids = writes.map((w) => (w.kind === 'insert' ? w.record.nodeId : w.nodeId));
      const current = await store.getMany(ids);
      const conflicts = writes
        .filter((w) => {
          const id = w.kind === 'insert' ? w.record.nodeId : w.nodeId;
          const found = current.get(id);
          if (w.kind === 'refresh') return !found; // matched by _id alone: it applied unless the node is gone
          const expected = w.kind === 'insert' ? w.record.rev : w.newRev;
          return found?.rev !== expected && found?.prevRev !== expected;
        })
        .map((w) => (w.kind === 'insert' ? w.record.nodeId : w.nodeId));
      return { conflicts, roundTrips: 2 };
    },
    async findExpired(cutoff: Date, limit: number) {
      const docs = await guarded('findExpired', () =>
        Nodes.find({ status: 'ONLINE', lastHeartbeat: { $lt: cutoff } })
          
          .sort({ lastHeartbeat: 1 })
          .limit(limit)
          .lean<NodeDocument[]>()
          .exec(),
      );
      return docs.map(toRecord);
    },
    async countExpired(cutoff: Date) {
      return guarded('countExpired', () => Nodes.countDocuments({ status: 'ONLINE', lastHeartbeat: { $lt: cutoff } }).exec());
    },
    async countByStatus() {
      const [online, offline] = await guarded('countByStatus', () =>
        Promise.all([Nodes.countDocuments({ status: 'ONLINE' }).exec(), Nodes.countDocuments({ status: 'OFFLINE' }).exec()]),
      );
      return { ONLINE: online, OFFLINE: offline };
    },
    async findWithOutbox(limit: number) {
      const docs = await guarded('findWithOutbox', () =>
        Nodes.find({ 'outbox.0': { $exists: true } }).limit(limit).lean<NodeDocument[]>().exec(),
      );
      return docs.map(toRecord);
    },
    async removeFromOutbox(nodeId: string, events: NodeEvent[]) {
      if (!events.length) return;
      // One whole-value $pull per event: portable to servers whose $pull takes no conditions.
      const ops = events.map((event) => ({ updateOne: { filter: { _id: nodeId }, update: { $pull: { outbox: event } } } }));
      await guarded('removeFromOutbox', () => Nodes.collection.bulkWrite(ops as never, { ordered: false }));
    },
    async delete(nodeId: string) {
      const result = await guarded('delete', () => Nodes.deleteOne({ _id: nodeId }).exec());
      return result.deletedCount > 0;
    },
    async deleteAll() {
      await guarded('deleteAll', async () => {
        await Nodes.deleteMany({}).exec();
        await State.deleteMany({}).exec();
      });
    },
    async recordIngestLiveness(entry: IngestLiveness) {
      await guarded('recordIngestLiveness', () =>
        State.updateOne(
          { _id: `ingest:${entry.instanceId}` },
          { $set: { kind: 'ingest', healthySince: entry.healthySince, lastSeenAt: entry.lastSeenAt, lagMs: entry.lagMs } },
          { upsert: true },
        ).exec(),
      );
    },
    async ingestLiveness() {
      const docs = await guarded('ingestLiveness', () => State.find({ kind: 'ingest' }).lean<LivenessDocument[]>().exec());
      return docs.map((d) => ({ instanceId: d._id.slice('ingest:'.length), healthySince: d.healthySince ?? null, lastSeenAt: d.lastSeenAt ?? new Date(0), lagMs: d.lagMs ?? 0 }));
    },
    async removeIngestLiveness(instanceId: string) {
      await guarded('removeIngestLiveness', () => State.deleteOne({ _id: `ingest:${instanceId}` }).exec());
    },
    async guardState(): Promise<ClusterGuardState> {
      const doc = await guarded('guardState', () => State.findById(GUARD_ID).lean<LivenessDocument>().exec());
      return { heldSince: doc?.heldSince ?? null, eventId: doc?.eventId ?? null };
    },
    async setGuardState(state: ClusterGuardState) {
      await guarded('setGuardState', () =>
        State.updateOne({ _id: GUARD_ID }, { $set: { kind: 'guard', heldSince: state.heldSince, eventId: state.eventId } }, { upsert: true }).exec(),
      );
    },
    async ping() {
      await guarded('ping', async () => {
        const db = connection.db;
        if (!db) throw new StoreUnavailableError('store not connected');
        await db.admin().ping();
      });
    },
    async close() {
      await connection.close().catch(() => undefined);
    },
  };
  return store;
}

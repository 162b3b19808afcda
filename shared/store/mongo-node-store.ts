import { randomUUID } from 'node:crypto';
import mongoose, { type Connection, type Model } from 'mongoose';
import pLimit from 'p-limit';
import type { mongo } from 'mongoose';
import { historyStep, historyView, historyWindow, type HistorySettings } from '../domain/history.js';
import { STATS_FIELDS, statsValues, type NodeEvent, type NodeStatus } from '../messages/index.js';
import type { CanaryRecord } from '../domain/path-coverage.js';
import type { FleetPace } from '../domain/heartbeat-pace.js';
import type { CanaryArrival, CanarySenderReport, ClusterGuardState, ExpiryQuery, HistoryPoint, NodeRecord, NodeWrite } from './node-record.js';
import { StoreUnavailableError, type NodeStore, type OutboxRemoval, type WriteResult } from './node-store.js';

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
  /** Token of the last heartbeat refresh: tells a writer whether its refresh applied. */
  refreshId?: string;
  outbox: NodeEvent[];
  clockSkewMs: number | null;
  reregisterRequestedAt: Date | null;
  credentialHash: string | null;
  declaredIntervalMs?: number | null;
  intervalMs?: number | null;
  timeoutMs?: number | null;
  pendingTimeoutMs?: number | null;
  expiresAt?: Date | null;
}

const statsSchema = new mongoose.Schema(
  // reportedAt first, then the heartbeat's stats in their one order (STATS_FIELDS).
  { reportedAt: Date, ...Object.fromEntries(STATS_FIELDS.map((field) => [field, Number])) },
  { _id: false },
);

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
    refreshId: { type: String },
    outbox: { type: [mongoose.Schema.Types.Mixed] as never, default: [] },
    clockSkewMs: { type: Number, default: null },
    reregisterRequestedAt: { type: Date, default: null },
    credentialHash: { type: String, default: null },
    declaredIntervalMs: { type: Number, default: null },
    intervalMs: { type: Number, default: null },
    timeoutMs: { type: Number, default: null },
    pendingTimeoutMs: { type: Number, default: null },
    expiresAt: { type: Date, default: null },
  },
  { collection: 'nodes', versionKey: false, autoIndex: false, autoCreate: false, strict: true },
);
// The sweeper's queries, created at start by ensureIndexes() (the SQLite-backed test server indexes only _id
// and scans instead; see docs/architecture.md). {status, lastHeartbeat}: findExpired (status equality, then
// the lastHeartbeat range and sort), countExpired, countOnline and countByStatus (which need no more than the index), so
// their cost follows the expired nodes, not the fleet. Sparse outbox.eventId: findWithOutbox reads only the
// nodes with pending events. {status, expiresAt}: the nodes with their own deadline (findExpired's other
// clause; documents without one, all null, sit at one end of it).
nodeSchema.index({ status: 1, lastHeartbeat: 1 });
nodeSchema.index({ status: 1, expiresAt: 1 });
nodeSchema.index({ 'outbox.eventId': 1 }, { sparse: true });

/**
 * `node_history`: the sparkline, a time series of one document per node and step of HISTORY_RESOLUTION_MS
 * (`_id` `<nodeId>|<step>`, the first point of a step), inserted and never updated, read by `_id`. A TTL index on
 * `t` expires what no reader shows any more; on a server without TTL indexes (the SQLite-backed test server)
 * each insert deletes the step that falls out of its node's window instead. Apart from the node document, which
 * every heartbeat rewrites: a ring of 120 points inside it made each of those writes six times dearer.
 */
interface HistoryDocument {
  _id: string;
  t: Date;
  cpu: number;
  mem: number;
}
/** Node documents written before the history moved out carry these fields: never read, dropped by the next guarded update. */
const LEGACY_HISTORY_FIELDS = { historyRing: '', history: '' };

/** `orchestrator_state`: the mass-silence guard, the fleet's heartbeat pace, and one document per canary sender. */
interface StateDocument {
  _id: string;
  kind: 'canary' | 'guard' | 'pace';
  heldSince?: Date | null;
  eventId?: string | null;
  senderKind?: CanaryRecord['kind'];
  intervalMs?: number;
  firstAliveAt?: Date;
  aliveAt?: Date;
  sentAt?: Date | null;
  pathSince?: Date | null;
}
const stateSchema = new mongoose.Schema<StateDocument>(
  {
    _id: { type: String, required: true },
    kind: { type: String, required: true },
    heldSince: { type: Date, default: null },
    eventId: { type: String, default: null },
    senderKind: String,
    intervalMs: Number,
    firstAliveAt: Date,
    aliveAt: Date,
    sentAt: { type: Date, default: null },
    pathSince: { type: Date, default: null },
  },
  { collection: 'orchestrator_state', versionKey: false, autoIndex: false, autoCreate: false },
);

export interface MongoNodeStoreOptions {
  url: string;
  historyPoints: number;
  /** Width of one history slot (default 30 s, as HISTORY_RESOLUTION_MS). */
  historyResolutionMs?: number;
  /** Fail an operation after this long without a server (default 5 s). */
  serverSelectionTimeoutMs?: number;
}

const GUARD_ID = 'guard:mass-silence';
const PACE_ID = 'pace:heartbeat';
const SWEEP_LEASE_ID = 'lease:sweep';
const PACE_FIELDS = ['intervalSeconds', 'fleetSize', 'changedAt', 'onlineNodes', 'countedAt'] as const;
/**
 * Statements per bulk-write command. A batch behind a backlog can hold thousands of node writes; commands of
 * this size each take about half a second on the SQLite-backed test server (much less on MongoDB, whose own limit
 * is 100,000), one command for a batch of the default INGEST_BATCH_SIZE.
 */
const MAX_STATEMENTS_PER_COMMAND = 500;
const CANARY_PREFIX = 'canary:';

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
    outbox: doc.outbox ?? [],
    clockSkewMs: doc.clockSkewMs ?? null,
    reregisterRequestedAt: doc.reregisterRequestedAt ?? null,
    credentialHash: doc.credentialHash ?? null,
    // Absent before the node's agent declared an interval (and on documents written before nodes had a pace).
    ...(doc.declaredIntervalMs != null ? { declaredIntervalMs: doc.declaredIntervalMs } : {}),
    ...(doc.intervalMs != null ? { intervalMs: doc.intervalMs } : {}),
    ...(doc.timeoutMs != null ? { timeoutMs: doc.timeoutMs } : {}),
    ...(doc.pendingTimeoutMs != null ? { pendingTimeoutMs: doc.pendingTimeoutMs } : {}),
    ...(doc.expiresAt ? { expiresAt: doc.expiresAt } : {}),
  };
}

/**
 * The expiry query: a node with its own deadline by `expiresAt` (the {status, expiresAt} index), one without
 * (the default timeout, or a document written before nodes had their own) by lastHeartbeat + the default
 * timeout (the {status, lastHeartbeat} index). One query, each clause answered from its index on MongoDB.
 */
function expiryFilter(query: ExpiryQuery): Record<string, unknown> {
  const own: Record<string, unknown> = { expiresAt: { $lt: query.coveredUntil } };
  if (query.maxTimeoutMs !== undefined) own.timeoutMs = { $lte: query.maxTimeoutMs };
  const byDefault = { expiresAt: null, lastHeartbeat: { $lt: new Date(query.coveredUntil.getTime() - query.defaultTimeoutMs) } };
  return { status: 'ONLINE', $or: [own, byDefault] };
}

function toDocument(record: NodeRecord): NodeDocument {
  const { nodeId, stats, ...rest } = record;
  return { _id: nodeId, ...rest, stats: stats ? statsDocument(stats) : null };
}

/** The id of a node's history document for one step. */
function historyId(nodeId: string, step: number): string {
  return `${nodeId}|${step}`;
}

/** Every history document of a node (node ids match [A-Za-z0-9._-]: only the dot needs escaping). */
function historyOf(nodeId: string): RegExp {
  return new RegExp(`^${nodeId.replace(/\./g, '\\.')}\\|`);
}

/** Most ids in one `$in` read of history documents. */
const MAX_IDS_PER_READ = 6000;

/** The most history-step entries remembered per store (one per node); past it the memory starts again. */
const MAX_REMEMBERED_STEPS = 200_000;

/** Node projection: everything but the fields of history kept in the node document by earlier versions. */
const NODE_PROJECTION = { historyRing: 0, history: 0 };

/** Field order matters: $max compares embedded documents field by field, so reportedAt goes first. */
function statsDocument(stats: NonNullable<NodeRecord['stats']>) {
  return { reportedAt: stats.reportedAt, ...statsValues(stats) };
}

/**
 * The records of one query in pages of at most `pageSize`, each page read within the operation deadline; a page
 * is fetched when the loop asks for it, and leaving the loop early closes the query.
 */
async function* pagesOf(what: string, cursor: mongo.FindCursor, pageSize: number): AsyncGenerator<NodeRecord[]> {
  try {
    for (;;) {
      const page = await guarded(what, async () => {
        const docs: NodeRecord[] = [];
        while (docs.length < pageSize) {
          const doc = await cursor.next();
          if (!doc) break;
          docs.push(toRecord(doc as unknown as NodeDocument));
        }
        return docs;
      });
      if (page.length) yield page;
      if (page.length < pageSize) return;
    }
  } finally {
    // Leaving early, or on a store error: a cursor the server dropped already needs no closing.
    await cursor.close().catch(() => undefined);
  }
}

/** No store call may hang: a server that accepted a request and then died would otherwise hold it forever. */
const OPERATION_DEADLINE_MS = 8_000;
/**
 * A bulk write's deadline grows with its statements, so that a slow but working store (many ms a statement
 * under load) still completes a command instead of the same command failing its deadline and being retried
 * for ever while the server goes on running it.
 */
const DEADLINE_PER_STATEMENT_MS = 30;

/**
 * Bulk commands (node writes, reads of many ids, the history's insert and prune, outbox removals) one store sends
 * at once, over all its callers: the ingest runs several batches at once, and their commands queue here rather
 * than at the server, so a command's deadline counts from when it is sent and the server's queue stays as short
 * as with one batch at a time.
 */
const COMMANDS_IN_FLIGHT = 4;

/** `items` in pieces of at most one command's statements (MAX_STATEMENTS_PER_COMMAND), in order. */
function inPieces<T>(items: readonly T[]): T[][] {
  const pieces: T[][] = [];
  for (let i = 0; i < items.length; i += MAX_STATEMENTS_PER_COMMAND) pieces.push(items.slice(i, i + MAX_STATEMENTS_PER_COMMAND));
  return pieces;
}

function deadlineFor(statements: number): number {
  return OPERATION_DEADLINE_MS + statements * DEADLINE_PER_STATEMENT_MS;
}

/**
 * The write concern of one bulk-write command. A command with a status change (a registration's insert, a
 * conditional update: they carry the node's events in its outbox) is acknowledged only once a majority of a
 * replica set has it, whatever the URL says, so that a failover cannot roll back a transition whose event was
 * published; the server gives up waiting at the command's deadline (the write stays, and the caller's retry
 * recognises it by its rev). Commands of heartbeat refreshes and late stats alone take the URL's or the server's default
 * (majority on a MongoDB 5.0+ replica set unless the URL sets `w`). On a single server majority is that server.
 */
function writeConcernFor(writes: NodeWrite[], deadlineMs: number): { writeConcern?: { w: 'majority'; wtimeoutMS: number } } {
  return writes.some((w) => w.kind === 'insert' || w.kind === 'update') ? { writeConcern: { w: 'majority', wtimeoutMS: deadlineMs } } : {};
}

/** Turns driver failures into StoreUnavailableError (after `deadlineMs`, too); anything else is a bug and is rethrown. */
async function guarded<T>(what: string, run: () => Promise<T>, deadlineMs = OPERATION_DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreUnavailableError(`store ${what} did not answer within ${Math.round(deadlineMs / 1000)} s`)), deadlineMs);
    });
    return await Promise.race([run(), deadline]);
  } catch (error) {
    if (error instanceof StoreUnavailableError) throw error;
    // Duplicate keys only: the server answered and an insert lost a race, which write() reports as a conflict.
    const writeErrors = (error as { writeErrors?: Array<{ code?: number }> })?.writeErrors;
    if (Array.isArray(writeErrors) && writeErrors.length > 0 && writeErrors.every((e) => e.code === 11000)) throw error;
    // Anything the driver or mongoose raised (network, server selection, a server's refusal) is the store's
    // failure: retried by the caller. Anything else is a bug and is rethrown as it is.
    if (error instanceof mongoose.mongo.MongoError || error instanceof mongoose.Error) {
      throw new StoreUnavailableError(`store ${what} failed: ${error.message}`, { cause: error });
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
    // Above every operation deadline (a bulk write's grows with its size): the deadline decides, not the socket.
    socketTimeoutMS: OPERATION_DEADLINE_MS + MAX_STATEMENTS_PER_COMMAND * DEADLINE_PER_STATEMENT_MS + 5_000,
    // Fail fast instead of queueing every operation in memory while the store is down.
    bufferCommands: false,
    maxPoolSize: 20,
    // On a replica set a write interrupted by a failover is sent once more to the new primary, which applies it
    // at most once (a standalone server, like the test server, has no retryable writes). Status changes are
    // majority-acknowledged on top of this: see write().
    retryWrites: true,
  });
  connection.on('error', () => {
    /* surfaced by the failing operation; never crash on the event */
  });
  await guarded('connect', () => connection.asPromise());
  const Nodes: Model<NodeDocument> = connection.model<NodeDocument>('Node', nodeSchema);
  const history: HistorySettings = { points: options.historyPoints, resolutionMs: options.historyResolutionMs ?? 30_000 };
  const record = (doc: NodeDocument) => toRecord(doc);
  const State: Model<StateDocument> = connection.model<StateDocument>('OrchestratorState', stateSchema);
  const History = connection.collection<HistoryDocument>('node_history');
  /**
   * The newest history step this process stored per node. A heartbeat whose step is not newer has nothing to
   * add (one point per step), so a fleet beating every few seconds writes a point per node per step, not per beat.
   */
  const storedSteps = new Map<string, number>();
  /** The bulk commands of every caller of this store: COMMANDS_IN_FLIGHT at once. */
  const command = pLimit(COMMANDS_IN_FLIGHT);
  /**
   * Runs `run` for every piece through the store's command slots; once one fails, the pieces not yet sent are
   * skipped and the call rejects (its caller retries the whole operation).
   */
  async function everyPiece<T>(pieces: readonly T[], run: (piece: T) => Promise<void>): Promise<void> {
    let failed = false;
    await Promise.all(
      pieces.map((piece) =>
        command(async () => {
          if (failed) return;
          await run(piece).catch((error: unknown) => {
            failed = true;
            throw error;
          });
        }),
      ),
    );
  }
  /** Whether the server expires history documents (TTL index): otherwise writers delete what leaves the window. */
  let historyExpires = false;

  async function ensureIndexes(): Promise<void> {
    await guarded('createCollection', async () => {
      for (const model of [Nodes, State]) {
        await model.createCollection().catch((error: { code?: number; codeName?: string }) => {
          if (error?.code !== 48 && error?.codeName !== 'NamespaceExists') throw error;
        });
      }
      await connection.createCollection('node_history').catch((error: { code?: number; codeName?: string }) => {
        if (error?.code !== 48 && error?.codeName !== 'NamespaceExists') throw error;
      });
      // A point no reader shows any more (older than the window, plus a step) expires on its own.
      const expireAfterSeconds = Math.ceil(((history.points + 1) * history.resolutionMs) / 1000);
      historyExpires = await History.createIndex({ t: 1 }, { name: 't_ttl', expireAfterSeconds }).then(
        () => true,
        (error: { code?: number; codeName?: string }) => {
          // IndexOptionsConflict: the window changed since the index was made; writers prune meanwhile.
          if (error?.code === 238 || error?.codeName === 'NotImplemented' || error?.code === 85 || error?.codeName === 'IndexOptionsConflict') return false;
          throw error;
        },
      );
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

  /**
   * Stores the history points of applied writes: one insert of the steps this process has not stored yet (a step
   * stored already, by another ingest, keeps its first point), and without a TTL index one delete of the steps
   * that leave those nodes' windows. Returns the round trips used.
   */
  async function storeHistory(points: Array<{ nodeId: string; point: HistoryPoint }>): Promise<number> {
    if (history.points <= 0) return 0;
    const fresh = points
      .map(({ nodeId, point }) => ({ nodeId, point, step: historyStep(point.t.getTime(), history) }))
      .filter(({ nodeId, step }) => step > (storedSteps.get(nodeId) ?? -Infinity));
    if (!fresh.length) return 0;
    const docs = fresh.map(({ nodeId, point, step }) => ({ _id: historyId(nodeId, step), t: point.t, cpu: point.cpu, mem: point.mem }));
    try {
      await command(() => guarded('write history', () => History.insertMany(docs, { ordered: false }), deadlineFor(docs.length)));
    } catch (error) {
      const writeErrors = (error as { writeErrors?: Array<{ code?: number }> | { code?: number } }).writeErrors;
      const codes = Array.isArray(writeErrors) ? writeErrors.map((e) => e.code) : [writeErrors?.code ?? (error as { code?: number }).code];
      if (!codes.length || codes.some((code) => code !== 11000)) throw error;
    }
    let trips = 1;
    if (!historyExpires) {
      const leaving = fresh.map(({ nodeId, step }) => historyId(nodeId, step - history.points));
      await command(() => guarded('prune history', () => History.deleteMany({ _id: { $in: leaving } })));
      trips++;
    }
    if (storedSteps.size > MAX_REMEMBERED_STEPS) storedSteps.clear();
    for (const { nodeId, step } of fresh) storedSteps.set(nodeId, step);
    return trips;
  }

  /** The bulk-write operation of one write; a refresh or late stats get a token (`refreshId`) so a read-back can tell whether it applied. */
  function toOp(w: NodeWrite, refreshId: string) {
    if (w.kind === 'insert') {
      return { insertOne: { document: toDocument(w.record) } };
    }
    if (w.kind === 'late') {
      const filter: Record<string, unknown> = { _id: w.nodeId, status: 'ONLINE' };
      // $lt matches numbers only: a node without a baseline (null) is decided by a read.
      if (w.clockSkewBelowMs !== undefined) filter.clockSkewMs = { $lt: w.clockSkewBelowMs };
      if (w.credentialHash !== undefined) filter.credentialHash = w.credentialHash;
      return { updateOne: { filter, update: { $set: { refreshId }, $max: forwardOnly(null, w.stats) } } };
    }
    if (w.kind === 'refresh') {
      const filter: Record<string, unknown> = { _id: w.nodeId, status: 'ONLINE' };
      if (w.minClockSkewMs !== undefined) filter.clockSkewMs = { $gte: w.minClockSkewMs };
      if (w.credentialHash !== undefined) filter.credentialHash = w.credentialHash;
      // The pace this ingest assumes (null matches a missing field: documents of nodes that never had one).
      const timeoutMs = w.pace?.timeoutMs ?? null;
      Object.assign(filter, { intervalMs: w.pace?.intervalMs ?? null, timeoutMs, pendingTimeoutMs: null });
      const max: Record<string, unknown> = forwardOnly(w.lastHeartbeat, w.stats);
      if (timeoutMs !== null) max.expiresAt = new Date(w.lastHeartbeat.getTime() + timeoutMs);
      const update: Record<string, unknown> = { $set: { refreshId }, $max: max };
      if (w.clockSkewMs !== undefined) update.$min = { clockSkewMs: w.clockSkewMs };
      return { updateOne: { filter, update } };
    }
    const { lastHeartbeat, stats, expiresAt, ...rest } = w.set;
    // prevRev lets a writer that lost sight of its write (read back after a later writer) recognise it.
    const update: Record<string, unknown> = {
      $set: { ...rest, ...(expiresAt === null ? { expiresAt: null } : {}), rev: w.newRev, prevRev: w.expectedRev },
      $unset: LEGACY_HISTORY_FIELDS,
    };
    // Like lastHeartbeat, a deadline only moves forward (a refresh may have moved it since the read), unless the
    // node goes back to the default timeout (null above).
    const max: Record<string, unknown> = forwardOnly(lastHeartbeat, stats);
    if (expiresAt) max.expiresAt = expiresAt;
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
      const doc = await guarded('get', () => Nodes.collection.findOne({ _id: nodeId } as never, { projection: NODE_PROJECTION }));
      return doc ? record(doc as unknown as NodeDocument) : null;
    },
    async getMany(nodeIds: string[]) {
      const found = new Map<string, NodeRecord>();
      // In reads of a command's size, each with a deadline that grows with it: one read of a whole batch's nodes
      // on a slow store would miss a fixed deadline again at every retry.
      await everyPiece(inPieces(nodeIds), async (ids) => {
        const docs = await guarded('getMany', () => Nodes.collection.find({ _id: { $in: ids } } as never, { projection: NODE_PROJECTION }).toArray(), deadlineFor(ids.length));
        for (const d of docs as unknown as NodeDocument[]) found.set(d._id, record(d));
      });
      return found;
    },
    async list(filter: { status?: NodeStatus } = {}) {
      const query = filter.status ? { status: filter.status } : {};
      const docs = await guarded('list', () =>
        Nodes.collection
          .find(query as never, { projection: NODE_PROJECTION })
          .sort({ _id: 1 })
          .toArray(),
      );
      return (docs as unknown as NodeDocument[]).map(record);
    },
    async histories(nodeIds: string[], until: Date) {
      const found = new Map<string, HistoryPoint[]>(nodeIds.map((id) => [id, []]));
      if (!nodeIds.length || history.points <= 0) return found;
      const { first } = historyWindow(until.getTime(), history);
      // By _id only (every step of the window of every node asked for): indexed reads on MongoDB and on the test
      // server, of at most MAX_IDS_PER_READ ids each.
      const perRead = Math.max(1, Math.floor(MAX_IDS_PER_READ / history.points));
      const byNode = new Map<string, HistoryPoint[]>();
      for (let i = 0; i < nodeIds.length; i += perRead) {
        const ids = nodeIds.slice(i, i + perRead).flatMap((nodeId) => Array.from({ length: history.points }, (_, k) => historyId(nodeId, first + k)));
        const docs = await guarded('histories', () => History.find({ _id: { $in: ids } }).toArray());
        for (const doc of docs) {
          const nodeId = doc._id.slice(0, doc._id.lastIndexOf('|'));
          byNode.set(nodeId, [...(byNode.get(nodeId) ?? []), { t: doc.t, cpu: doc.cpu, mem: doc.mem }]);
        }
      }
      for (const [nodeId, points] of byNode) found.set(nodeId, historyView(points, until.getTime(), history));
      return found;
    },
    async write(writes: NodeWrite[]): Promise<WriteResult> {
      if (writes.length === 0) return { conflicts: [], roundTrips: 0 };
      const tokens = writes.map(() => randomUUID());
      const ops = writes.map((w, i) => toOp(w, tokens[i]!));
      let commands = 0;
      // The writes of the commands that did not apply all their statements: only those can hold conflicts.
      const shortfall: NodeWrite[] = [];
      // Commands of up to MAX_STATEMENTS_PER_COMMAND statements (so that no command outlasts its deadline), up to
      // COMMANDS_IN_FLIGHT of this store's at once (unordered: the server works on one while it reads the next), through
      // the driver without mongoose casting: field order as built here.
      const writePieces = inPieces(writes);
      const chunks = inPieces(ops).map((chunk, i) => ({ ops: chunk, writes: writePieces[i]! }));
      await everyPiece(chunks, async (chunk) => {
        const deadlineMs = deadlineFor(chunk.ops.length);
        commands++;
        try {
          const result = await guarded('write', () => Nodes.collection.bulkWrite(chunk.ops as never, { ordered: false, ...writeConcernFor(chunk.writes, deadlineMs) }), deadlineMs);
          if ((result.insertedCount ?? 0) + (result.matchedCount ?? 0) < chunk.ops.length) shortfall.push(...chunk.writes);
        } catch (error) {
          const writeErrors = (error as { writeErrors?: Array<{ code?: number; err?: { code?: number } }> }).writeErrors;
          const codes = Array.isArray(writeErrors) ? writeErrors.map((e) => e.code ?? e.err?.code) : [(error as { code?: number }).code];
          if (!codes.length || codes.some((code) => code !== 11000)) throw error;
          shortfall.push(...chunk.writes); // an insert raced another writer's insert: resolved below like any conflict
        }
      });
      const id = (w: NodeWrite) => (w.kind === 'insert' ? w.record.nodeId : w.nodeId);
      const pointsOf = (applies: (w: NodeWrite) => boolean) =>
        writes.flatMap((w) => ((w.kind === 'refresh' || w.kind === 'update') && w.historyPoint && applies(w) ? [{ nodeId: w.nodeId, point: w.historyPoint }] : []));
      if (!shortfall.length) return { conflicts: [], roundTrips: commands + (await storeHistory(pointsOf(() => true))) };
      // Some writes did not apply. The bulk result has no per-operation counts, so read back which documents
      // of the commands that fell short carry what this batch wrote: the rev of an insert or update, the
      // token of a refresh. In reads of a command's size, each with a deadline that grows with it.
      const current: unknown[] = [];
      for (const piece of inPieces(shortfall)) {
        const ids = piece.map(id);
        commands++;
        current.push(
          ...(await command(() =>
            guarded(
              'write (reading back)',
              () => Nodes.collection.find({ _id: { $in: ids } } as never, { projection: { rev: 1, prevRev: 1, refreshId: 1 } }).toArray(),
              deadlineFor(ids.length),
            ),
          )),
        );
      }
      const byId = new Map((current as unknown as Array<Pick<NodeDocument, '_id' | 'rev' | 'prevRev' | 'refreshId'>>).map((d) => [d._id, d]));
      const tokenOf = new Map(writes.map((w, i) => [w, tokens[i]]));
      const conflicts = shortfall
        .filter((w) => {
          const found = byId.get(id(w));
          if (w.kind === 'refresh' || w.kind === 'late') return found?.refreshId !== tokenOf.get(w);
          const expected = w.kind === 'insert' ? w.record.rev : w.newRev;
          return found?.rev !== expected && found?.prevRev !== expected;
        })
        .map(id);
      const conflicting = new Set(conflicts);
      return { conflicts, roundTrips: commands + (await storeHistory(pointsOf((w) => !conflicting.has(id(w))))) };
    },
    findExpired(query: ExpiryQuery, pageSize: number) {
      // One query, each clause of its $or answered from its index on MongoDB (expiryFilter), the expired nodes
      // sorted in memory; the pages are the cursor's batches, so a sweep pays for one query however many pages it reads.
      // maxTimeMS: a query the deadline gives up on is stopped on the server too, so the next sweep's does not queue behind it.
      const cursor = Nodes.collection
        .find(expiryFilter(query) as never, { projection: NODE_PROJECTION })
        .sort({ lastHeartbeat: 1 })
        .batchSize(pageSize)
        .maxTimeMS(OPERATION_DEADLINE_MS);
      return pagesOf('findExpired', cursor, pageSize);
    },
    scan(pageSize: number) {
      return pagesOf('scan', Nodes.collection.find({} as never, { projection: NODE_PROJECTION }).batchSize(pageSize), pageSize);
    },
    async countExpired(query: ExpiryQuery) {
      return guarded('countExpired', () => Nodes.collection.countDocuments(expiryFilter(query) as never, { maxTimeMS: OPERATION_DEADLINE_MS }));
    },
    async countByStatus() {
      // One $group (one $sum: all the SQLite-backed test server's $group takes). The $match on the indexed
      // status lets MongoDB answer it from the {status, lastHeartbeat} index alone.
      const groups = await guarded('countByStatus', () =>
        Nodes.collection
          .aggregate<{ _id: NodeStatus; n: number }>([{ $match: { status: { $in: ['ONLINE', 'OFFLINE'] } } }, { $group: { _id: '$status', n: { $sum: 1 } } }], {
            maxTimeMS: OPERATION_DEADLINE_MS,
          })
          .toArray(),
      );
      const counts: Record<NodeStatus, number> = { ONLINE: 0, OFFLINE: 0 };
      for (const g of groups) counts[g._id] = g.n;
      return counts;
    },
    async countOnline(upTo?: number) {
      // With a limit the server stops at `upTo` matches (an index range on MongoDB, an early stop of the scan on
      // the test server) instead of counting the fleet.
      return guarded('countOnline', () =>
        Nodes.collection.countDocuments({ status: 'ONLINE' } as never, { maxTimeMS: OPERATION_DEADLINE_MS, ...(upTo === undefined ? {} : { limit: upTo }) }),
      );
    },
    async findWithOutbox(limit: number) {
      // On the indexed field: the sparse outbox.eventId index holds only nodes with pending events, so on
      // MongoDB this reads those and nothing else ('outbox.0' would scan the collection).
      const docs = await guarded('findWithOutbox', () =>
        Nodes.collection
          .find({ 'outbox.eventId': { $exists: true } } as never, { projection: NODE_PROJECTION })
          .limit(limit)
          .maxTimeMS(OPERATION_DEADLINE_MS)
          .toArray(),
      );
      return (docs as unknown as NodeDocument[]).map(record);
    },
    async removeFromOutbox(entries: OutboxRemoval[]) {
      // One whole-value $pull per event (portable to servers whose $pull takes no conditions), all in one bulk write.
      const ops = entries.flatMap(({ nodeId, events }) => events.map((event) => ({ updateOne: { filter: { _id: nodeId }, update: { $pull: { outbox: event } } } })));
      if (!ops.length) return;
      for (const chunk of inPieces(ops)) {
        await command(() => guarded('removeFromOutbox', () => Nodes.collection.bulkWrite(chunk as never, { ordered: false }), deadlineFor(chunk.length)));
      }
    },
    async delete(nodeId: string) {
      const result = await guarded('delete', () => Nodes.deleteOne({ _id: nodeId }).exec());
      storedSteps.delete(nodeId);
      // An anchored prefix of _id: an index range on MongoDB (an operator's reset, rare).
      await guarded('delete history', () => History.deleteMany({ _id: historyOf(nodeId) } as never));
      return result.deletedCount > 0;
    },
    async deleteAll() {
      await guarded('deleteAll', async () => {
        await Nodes.deleteMany({}).exec();
        await History.deleteMany({});
        storedSteps.clear();
        await State.deleteMany({}).exec();
      });
    },
    async canaries(): Promise<CanaryRecord[]> {
      const docs = (await guarded('canaries', () => State.collection.find({ kind: 'canary' } as never).toArray())) as unknown as StateDocument[];
      return docs.map((d) => ({
        senderId: d._id.slice(CANARY_PREFIX.length),
        kind: d.senderKind ?? 'sweeper',
        intervalMs: d.intervalMs ?? 1000,
        firstAliveAt: d.firstAliveAt ?? d.aliveAt ?? new Date(0),
        aliveAt: d.aliveAt ?? new Date(0),
        sentAt: d.sentAt ?? null,
        pathSince: d.pathSince ?? null,
      }));
    },
    async recordCanarySender(report: CanarySenderReport) {
      await guarded('recordCanarySender', () =>
        State.collection.updateOne(
          { _id: CANARY_PREFIX + report.senderId } as never,
          {
            $set: { kind: 'canary', senderKind: report.kind, intervalMs: report.intervalMs, aliveAt: report.aliveAt },
            $setOnInsert: { firstAliveAt: report.aliveAt, sentAt: null, pathSince: null },
          } as never,
          { upsert: true },
        ),
      );
    },
    async recordCanaryArrival(arrival: CanaryArrival) {
      await guarded('recordCanaryArrival', () =>
        State.collection.updateOne(
          { _id: CANARY_PREFIX + arrival.senderId } as never,
          {
            $max: { sentAt: arrival.sentAt },
            $set: { kind: 'canary', senderKind: arrival.kind, intervalMs: arrival.intervalMs, pathSince: arrival.pathSince },
            $setOnInsert: { firstAliveAt: arrival.sentAt, aliveAt: arrival.sentAt },
          } as never,
          { upsert: true },
        ),
      );
    },
    async removeCanarySender(senderId: string) {
      await guarded('removeCanarySender', () => State.collection.deleteOne({ _id: CANARY_PREFIX + senderId } as never));
    },
    async guardState(): Promise<ClusterGuardState> {
      const doc = await guarded('guardState', () => State.findById(GUARD_ID).lean<StateDocument>().exec());
      return { heldSince: doc?.heldSince ?? null, eventId: doc?.eventId ?? null };
    },
    async setGuardState(state: ClusterGuardState) {
      await guarded('setGuardState', () =>
        State.updateOne({ _id: GUARD_ID }, { $set: { kind: 'guard', heldSince: state.heldSince, eventId: state.eventId } }, { upsert: true }).exec(),
      );
    },
    async fleetPace(): Promise<FleetPace | null> {
      const doc = (await guarded('fleetPace', () => State.collection.findOne({ _id: PACE_ID } as never))) as unknown as Partial<
        Record<(typeof PACE_FIELDS)[number], number>
      > | null;
      if (!doc || PACE_FIELDS.some((field) => typeof doc[field] !== 'number')) return null;
      return Object.fromEntries(PACE_FIELDS.map((field) => [field, doc[field]])) as unknown as FleetPace;
    },
    async setFleetPace(pace: FleetPace) {
      const fields = Object.fromEntries(PACE_FIELDS.map((field) => [field, pace[field]]));
      await guarded('setFleetPace', () => State.collection.updateOne({ _id: PACE_ID } as never, { $set: { kind: 'pace', ...fields } } as never, { upsert: true }));
    },
    async takeSweepLease(holder: string, now: Date, until: Date) {
      // Matches when free, expired or the caller's; otherwise the upsert's insert of the same _id fails (E11000).
      const filter = { _id: SWEEP_LEASE_ID, $or: [{ holder }, { until: { $lte: now } }] };
      try {
        await guarded('takeSweepLease', () =>
          State.collection.updateOne(filter as never, { $set: { kind: 'lease', holder, until } } as never, { upsert: true, writeConcern: { w: 'majority' } }),
        );
        return true;
      } catch (error) {
        // Another holder's lease: the server refused the insert of the same _id (E11000), which guarded() wraps.
        const cause = (error as { cause?: { code?: number } }).cause;
        if (cause?.code === 11000 || (error as { code?: number }).code === 11000) return false;
        throw error;
      }
    },
    async releaseSweepLease(holder: string) {
      await guarded('releaseSweepLease', () =>
        State.collection.updateOne({ _id: SWEEP_LEASE_ID, holder } as never, { $set: { until: new Date(0) } } as never, { writeConcern: { w: 'majority' } }),
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
      // Closing the store: a connection already lost needs no closing.
      await connection.close().catch(() => undefined);
    },
  };
  return store;
}

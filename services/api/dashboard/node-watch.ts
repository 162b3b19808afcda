import type { Logger } from '../../../shared/logger.js';
import { createOutageLog } from '../../../shared/outage-log.js';
import type { NodeEvent } from '../../../shared/messages/index.js';
import type { HistoryPoint, NodeRecord } from '../../../shared/store/node-record.js';
import type { NodeStore } from '../../../shared/store/node-store.js';
import { createFleetIndex, summarize, type FleetIndex } from './fleet-index.js';

/** Nodes per page of the full read of the fleet. */
const SCAN_PAGE = 2000;

export interface NodeWatchOptions {
  store: Pick<NodeStore, 'scan' | 'getMany' | 'histories'>;
  log: Logger;
  now: () => number;
  /** A record read this recently may be served again instead of reading it anew (default 5 s). */
  maxAgeMs?: number;
  /** A history read this recently is served again (default 30 s: it grows by a point per HISTORY_RESOLUTION_MS). */
  historyMaxAgeMs?: number;
  /**
   * Full re-read of the fleet at most this often, and only while somebody watches (default 10 min): picks up
   * what no event announces for nodes nobody looks at (host name changes, deletions, container counts).
   */
  resyncMs?: number;
  /** Called (synchronously, often in bursts: debounce it) when a node was added, removed or changed in the index. */
  onIndexChange(): void;
}

/** A node as a page shows it: its record and its sparkline history. */
export type ShownNode = NodeRecord & { history: HistoryPoint[] };

export interface NodeWatch {
  readonly index: FleetIndex;
  /** Resolves true once the index holds the fleet, false if that took longer than `timeoutMs`. */
  whenLoaded(timeoutMs: number): Promise<boolean>;
  /**
   * The stored records of these nodes: read by `_id` (one `getMany` per READ_CHUNK ids), or served from a read
   * of at most `maxAgeMs` ago unless `fresh`. The index follows what was read; a node the store no longer has
   * is absent from the result and removed from the index. Each comes with its history, read again when the
   * one held is `historyMaxAgeMs` old.
   */
  read(nodeIds: string[], fresh: boolean): Promise<Map<string, ShownNode>>;
  /** A node.events message: its status goes into the index at once; a node the index lacks is read. */
  applyEvent(event: NodeEvent): void;
  /** Resolves once the nodes that events announced so far are in the index (a new page then shows them). */
  settled(): Promise<void>;
  /** Events may have been missed (the subscription was re-established): re-read the fleet soon. */
  resyncSoon(): void;
  /** Somebody watches: resyncs run (when due) only then. */
  setWatched(watched: boolean): void;
  close(): void;
}

/**
 * After a failed full read, wait at least this long: a read that timed out on our side may still run on the
 * store's, and a retry at once would only add a second scan to it.
 */
const RETRY_FIRST_MS = 10_000;
/** Most ids in one `getMany`. */
const READ_CHUNK = 500;
/** Nodes whose histories one `histories` call reads. */
const HISTORY_CHUNK = 50;
/** Records kept for pages that open on rows another page just read. */
const MAX_CACHED = 2000;
/** Nodes announced by events within this long are read together. */
const UNKNOWN_BATCH_MS = 20;
const RETRY_MAX_MS = 60_000;
/** A resync asked for by resyncSoon() waits at least this long after the previous one. */
const MIN_RESYNC_GAP_MS = 30_000;

/**
 * Keeps the dashboard's in-memory fleet index fresh without reading the fleet over and over:
 * - one full `list()` when the api starts (and a resync every `resyncMs` while pages are open, or after the
 *   event subscription was lost, since events may have been missed then);
 * - status changes from node.events as they arrive (the sweeper and the ingest publish one per change);
 *   a node the index does not know (node.registered) is read by `_id`;
 * - the rows pages show are re-read by `_id` (`getMany`, indexed on MongoDB and on the test server) by the
 *   caller, every few seconds, and whatever those reads show goes into the index too.
 * Only the rare full reads scan the collection.
 */
export function createNodeWatch(options: NodeWatchOptions): NodeWatch {
  const { store, log, now } = options;
  const resyncMs = options.resyncMs ?? 10 * 60_000;
  const index = createFleetIndex();
  const maxAgeMs = options.maxAgeMs ?? 5000;
  const cache = new Map<string, { record: NodeRecord; at: number }>();
  const historyCache = new Map<string, { points: HistoryPoint[]; at: number }>();
  const historyMaxAgeMs = options.historyMaxAgeMs ?? 30_000;
  let loaded = false;
  let closed = false;
  let watched = false;
  let generation = 0;
  let syncing: Promise<void> | null = null;
  let lastSync = 0;
  const readOutage = createOutageLog({
    log,
    what: 'Dashboard cannot read the fleet from the node store, retrying',
    now,
    recoveredLine: () => 'Dashboard reads the node store again',
  });
  let retryMs = RETRY_FIRST_MS;
  let timer: NodeJS.Timeout | null = null;
  /** Events that arrived before the first full read finished: applied after it (their status may be newer). */
  let early: NodeEvent[] = [];
  let waiters: Array<(loaded: boolean) => void> = [];
  const unknown = new Set<string>();
  let unknownTimer: NodeJS.Timeout | null = null;
  /** Settles when the nodes announced so far that the index lacked have been read. */
  let unknownRead: Promise<void> | null = null;
  let releaseUnknown: (() => void) | null = null;

  function changed(): void {
    if (!closed) options.onIndexChange();
  }

  async function sync(): Promise<void> {
    const gen = ++generation;
    const started = now();
    let records: NodeRecord[];
    try {
      // Page by page: one query, but no single call long enough to run into the store's deadline at fleet size.
      records = [];
      for await (const page of store.scan(SCAN_PAGE)) records.push(...page);
    } catch (error) {
      if (closed) return;
      readOutage.failed(error);
      schedule(retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      return;
    }
    if (closed) return;
    readOutage.recovered();
    retryMs = RETRY_FIRST_MS;
    lastSync = started;
    let touched = false;
    for (const record of records) touched = index.upsert(summarize(record), gen) || touched;
    // Nodes read by _id while the list ran carry this generation too, so only nodes really gone are removed.
    touched = index.removeUnseen(gen).length > 0 || touched;
    if (!loaded) {
      loaded = true;
      log.debug(`Dashboard fleet index holds ${index.size} nodes (read in ${now() - started} ms)`);
      const pending = early;
      early = [];
      for (const event of pending) applyEvent(event);
      for (const resolve of waiters.splice(0)) resolve(true);
    }
    if (touched) changed();
    schedule(resyncMs);
  }

  function runSync(): Promise<void> {
    syncing ??= sync().finally(() => {
      syncing = null;
    });
    return syncing;
  }

  /** The next full read: the first one and its retries always run; later ones only while watched. */
  function schedule(delayMs: number): void {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      // sync logs and reschedules its own failures.
      if (!loaded || watched) void runSync();
    }, delayMs);
    timer.unref();
  }

  function absorb(records: Map<string, NodeRecord>, asked: string[]): void {
    let touched = false;
    for (const record of records.values()) touched = index.upsert(summarize(record), generation) || touched;
    for (const nodeId of asked) if (!records.has(nodeId)) touched = index.remove(nodeId) || touched;
    if (touched) changed();
  }

  function pruneCache(): void {
    if (cache.size <= MAX_CACHED) return;
    const cutoff = now() - maxAgeMs;
    for (const [nodeId, entry] of cache) if (entry.at < cutoff) cache.delete(nodeId);
    if (cache.size > MAX_CACHED) cache.clear();
  }

  /** The records with their histories: those not read within `historyMaxAgeMs` are read now. */
  async function withHistories(records: Map<string, NodeRecord>): Promise<Map<string, ShownNode>> {
    const at = now();
    const stale = [...records.keys()].filter((nodeId) => {
      const held = historyCache.get(nodeId);
      return !held || at - held.at >= historyMaxAgeMs;
    });
    for (let i = 0; i < stale.length; i += HISTORY_CHUNK) {
      const chunk = stale.slice(i, i + HISTORY_CHUNK);
      const found = await store.histories(chunk, new Date(at));
      for (const nodeId of chunk) historyCache.set(nodeId, { points: found.get(nodeId) ?? [], at });
    }
    if (historyCache.size > MAX_CACHED) {
      for (const [nodeId, held] of historyCache) if (at - held.at >= historyMaxAgeMs) historyCache.delete(nodeId);
    }
    return new Map([...records].map(([nodeId, record]) => [nodeId, { ...record, history: historyCache.get(nodeId)?.points ?? [] }]));
  }

  async function read(nodeIds: string[], fresh: boolean): Promise<Map<string, ShownNode>> {
    const unique = [...new Set(nodeIds)];
    const at = now();
    const records = new Map<string, NodeRecord>();
    const wanted: string[] = [];
    for (const nodeId of unique) {
      const hit = cache.get(nodeId);
      if (!fresh && hit && at - hit.at < maxAgeMs) records.set(nodeId, hit.record);
      else wanted.push(nodeId);
    }
    for (let i = 0; i < wanted.length; i += READ_CHUNK) {
      const chunk = wanted.slice(i, i + READ_CHUNK);
      const found = await store.getMany(chunk);
      for (const nodeId of chunk) {
        const record = found.get(nodeId);
        if (record) {
          records.set(nodeId, record);
          cache.set(nodeId, { record, at });
        } else cache.delete(nodeId);
      }
    }
    pruneCache();
    if (!closed && loaded) absorb(records, unique);
    return withHistories(records);
  }

  function applyEvent(event: NodeEvent): void {
    if (closed) return;
    if (!loaded) {
      early.push(event);
      return;
    }
    cache.delete(event.nodeId);
    if (index.has(event.nodeId)) {
      if (index.applyStatus(event.nodeId, event.status, event.statusVersion)) changed();
      return;
    }
    // A node this index has not seen yet (node.registered, or one added while the last full read ran):
    // read with the others announced within the same moment, in one store call.
    unknown.add(event.nodeId);
    if (unknownTimer) return;
    let done: () => void = () => undefined;
    const settledNow = new Promise<void>((resolve) => (done = resolve));
    unknownRead = settledNow;
    releaseUnknown = done;
    unknownTimer = setTimeout(() => {
      unknownTimer = null;
      const nodeIds = [...unknown];
      unknown.clear();
      read(nodeIds, true)
        .catch((error: Error) => log.debug(`Dashboard could not read ${nodeIds.length} new nodes: ${error.message}`))
        .finally(() => {
          if (unknownRead === settledNow) unknownRead = null;
          done();
        });
    }, UNKNOWN_BATCH_MS);
  }

  schedule(0);

  return {
    index,
    whenLoaded(timeoutMs) {
      if (loaded) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const done = (ok: boolean) => {
          clearTimeout(timeout);
          resolve(ok);
        };
        const timeout = setTimeout(() => {
          waiters = waiters.filter((w) => w !== done);
          resolve(false);
        }, timeoutMs);
        waiters.push(done);
      });
    },
    read,
    applyEvent,
    async settled() {
      // A read that fails leaves them out until the next event or resync: never wait for more than the one read.
      await unknownRead;
    },
    resyncSoon() {
      if (!loaded || closed) return;
      schedule(Math.max(0, lastSync + MIN_RESYNC_GAP_MS - now()));
    },
    setWatched(next) {
      const was = watched;
      watched = next;
      // The first page after a quiet spell gets a resync if one is overdue (served from the index meanwhile).
      if (next && !was && loaded && !syncing && now() - lastSync >= resyncMs) schedule(0);
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = null;
      if (unknownTimer) clearTimeout(unknownTimer);
      unknownTimer = null;
      unknown.clear();
      releaseUnknown?.();
      cache.clear();
      for (const resolve of waiters.splice(0)) resolve(false);
    },
  };
}

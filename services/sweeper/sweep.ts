import { randomUUID } from 'node:crypto';
import type { Bus } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import type { OrchestratorConfig } from '../../shared/config.js';
import { expireNode, type ExpiringNode, type Expiry } from '../../shared/domain/expire-node.js';
import { decideMassSilence, onlineCountNeeded } from '../../shared/domain/mass-silence.js';
import { offlineQuery, pathCoverage, type PathCoverage } from '../../shared/domain/path-coverage.js';
import type { EventPublisher, PublishOutcome } from '../../shared/events/event-publisher.js';
import type { Logger } from '../../shared/logger.js';
import { createOutageLog } from '../../shared/outage-log.js';
import type { ClusterEvent } from '../../shared/messages/index.js';
import type { Metrics } from '../../shared/metrics.js';
import type { ClusterGuardState, ExpiryQuery, NodeRecord } from '../../shared/store/node-record.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { ROUTING } from '../../shared/topology.js';

export interface SweepDeps {
  store: NodeStore;
  bus: Bus;
  events: EventPublisher;
  nodeEventsExchange: string;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  config: Pick<OrchestratorConfig, 'timeoutMs' | 'sweep'>;
  /** Told the heartbeat path's coverage at each sweep (metrics, readiness). */
  onCoverage?: (coverage: PathCoverage) => void;
  /** Test hook: runs after nodes are marked OFFLINE and before their events are published. */
  afterMark?: (nodeIds: string[]) => Promise<void>;
}

/** Outbox events younger than this are still being published by the process that stored them. */
const OUTBOX_GRACE_MS = 5000;
/** Nodes with pending events one outbox drain reads. */
const OUTBOX_DRAIN_NODES = 1000;
/** Longest time between two outbox drains (the timeout, when that is shorter). */
const OUTBOX_DRAIN_EVERY_MS = 30_000;
/**
 * With the mass-silence guard on, a sweep whose first page of expired nodes is full reads on to count them
 * exactly before marking any, keeping of each only what the transition needs (about 200 bytes). Beyond this
 * many it asks the store for the count instead.
 */
const READ_AHEAD_NODES = 10_000;

export type SweepOutcome = { kind: 'marked'; nodeIds: string[] } | { kind: 'held'; reason: 'path-down' | 'path-recovering' | 'mass-silence'; silent?: number };

/** Where a sweep's time went (ms), for its debug line. */
interface Timing {
  read: number;
  count: number;
  write: number;
  publish: number;
}

const slim = (n: NodeRecord): ExpiringNode => ({
  nodeId: n.nodeId,
  status: n.status,
  statusVersion: n.statusVersion,
  rev: n.rev,
  lastHeartbeat: n.lastHeartbeat,
  ...(n.timeoutMs != null ? { timeoutMs: n.timeoutMs } : {}),
});

/**
 * One timeout sweep. Checks that the ingest path has been recording heartbeats for a whole timeout, then marks
 * OFFLINE each ONLINE node silent for longer than the timeout with a conditional write (still ONLINE, still the
 * same rev, still silent), so a heartbeat stored meanwhile wins; then, now and then, publishes events left in
 * the outbox. Store work per sweep: one query for the expired nodes (read a page at a time), one bulk write and
 * one bulk outbox clear per page; the fleet is counted only when the mass-silence guard could trip, and only
 * as far as the decision needs.
 */
export function createSweep(deps: SweepDeps) {
  const { store, bus, events, log, clock, metrics, config } = deps;
  const drainEveryMs = Math.min(OUTBOX_DRAIN_EVERY_MS, config.timeoutMs);
  let lastHold: string | null = null;
  // Logged when the heartbeat path breaks and when it heals, whatever the sweeps decide meanwhile.
  const pathLog = createOutageLog({ log, what: 'Heartbeat path down: nodes silent since then are held ONLINE', now: () => clock.now() });
  // The first sweep of a process drains: a sweeper or ingest that died may have left events behind.
  let nextDrainAt = -Infinity;

  function hold(reason: 'path-down' | 'path-recovering' | 'mass-silence', message: string, silent?: number): SweepOutcome {
    metrics.sweepsSkipped.inc({ reason });
    // A path that is down is logged by pathLog when it breaks and when it heals.
    if (lastHold !== reason && reason !== 'path-down') {
      // Once per state change, not once per sweep.
      if (reason === 'path-recovering') log.info(message, { reason });
      else log.warn(message, { reason });
      lastHold = reason;
    }
    return { kind: 'held', reason, silent };
  }

  /** `silent`: the exact number of expired nodes. Counts the fleet only as far as the decision needs, then acts on it. */
  async function massSilence(silent: number, state: ClusterGuardState, now: number): Promise<'proceed' | 'hold'> {
    const guard = config.sweep.massSilence;
    const needed = onlineCountNeeded(silent, guard);
    const online = needed ? await store.countOnline(needed) : 0;
    const decision = decideMassSilence(silent, online, state, now, guard);
    if (decision.action === 'proceed') {
      if (decision.release) {
        await store.setGuardState({ heldSince: null, eventId: null });
        metrics.clusterDegraded.set(0);
        log.info('Mass-silence guard released');
      }
      return 'proceed';
    }
    metrics.clusterDegraded.set(1);
    if (decision.trip) {
      const { heldSince, heldUntil } = decision.trip;
      const eventId = randomUUID();
      await store.setGuardState({ heldSince, eventId });
      log.error(
        `${silent} of ${online} ONLINE nodes went silent at once: likely a fault on the orchestrator's side or the network; holding them ONLINE for ${Math.round(guard.holdMs / 1000)} s`,
      );
      const event: ClusterEvent = {
        eventId,
        type: 'cluster.degraded',
        version: 1,
        occurredAt: heldSince.toISOString(),
        silentNodes: silent,
        onlineNodes: online,
        heldUntil: heldUntil.toISOString(),
        reason: `more than ${Math.round(guard.share * 100)}% of ONLINE nodes silent at once`,
      };
      await bus
        .publish(deps.nodeEventsExchange, ROUTING.clusterDegraded, event, { messageId: eventId })
        .catch((error: Error) => log.warn(`cluster.degraded event not published: ${error.message}`));
    }
    return 'hold';
  }

  /** Marks one page OFFLINE with one bulk write; returns the transitions that applied. */
  async function markPage(page: ExpiringNode[], now: number, query: ExpiryQuery, timing: Timing): Promise<Expiry[]> {
    // Each node against its own timeout: silent since before (proven time − its timeout).
    const cutoffOf = (node: ExpiringNode) => query.coveredUntil.getTime() - (node.timeoutMs ?? query.defaultTimeoutMs);
    const expiries = page.map((node) => expireNode(node, now, cutoffOf(node))).filter((e): e is Expiry => e !== null);
    const t = performance.now();
    const { conflicts } = expiries.length ? await store.write(expiries.map((e) => e.write)) : { conflicts: [] };
    timing.write += performance.now() - t;
    const lost = new Set(conflicts); // a heartbeat was stored meanwhile: it wins
    const done = expiries.filter((e) => !lost.has(e.write.nodeId));
    for (const e of done) {
      log.info(`Node ${e.write.nodeId} missed heartbeat, marking as OFFLINE`, {
        nodeId: e.write.nodeId,
        event: e.event.type,
        statusVersion: e.event.statusVersion,
        reason: e.event.reason,
      });
    }
    await deps.afterMark?.(done.map((e) => e.write.nodeId));
    return done;
  }

  /**
   * Publishes a page's events with pipelined confirms and clears them from the outbox in one bulk write. Never
   * rejects (a store failure comes back as `error`), so it can run while the next page is written.
   */
  function publishPage(done: Expiry[], timing: Timing): Promise<{ outcome: PublishOutcome } | { error: Error }> {
    const t = performance.now();
    return events.publishMany(done.map((e) => ({ nodeId: e.write.nodeId, events: [e.event] }))).then(
      (outcome) => {
        timing.publish += performance.now() - t;
        return { outcome };
      },
      (error: Error) => ({ error }),
    );
  }

  async function markExpired(): Promise<SweepOutcome> {
    const now = clock.now();
    const guard = config.sweep.massSilence;
    const [canaries, state] = await Promise.all([store.canaries(), guard.enabled ? store.guardState() : null]);
    // Only silence within time the canaries proved counts: no node goes OFFLINE for time in which the
    // orchestrator itself could not record heartbeats (docs/architecture.md).
    const coverage = pathCoverage(canaries, now);
    deps.onCoverage?.(coverage);
    if (coverage.state === 'down') pathLog.failed(new Error(coverage.reason ?? 'down'));
    else pathLog.recovered();
    const decision = offlineQuery(coverage, config.timeoutMs);
    if ('held' in decision) {
      return hold(
        decision.held,
        decision.held === 'path-down' ? `Marking no node OFFLINE: heartbeats cannot be shown to be recorded (${decision.reason})` : `Heartbeat path back: ${decision.reason}`,
      );
    }
    const { query } = decision;

    const pageSize = config.sweep.batchSize;
    const timing: Timing = { read: 0, count: 0, write: 0, publish: 0 };
    const pages = store.findExpired(query, pageSize)[Symbol.asyncIterator]();
    let more = true;
    const seen = new Set<string>();
    async function nextPage(): Promise<ExpiringNode[] | null> {
      if (!more) return null;
      const t = performance.now();
      const next = await pages.next();
      timing.read += performance.now() - t;
      if (next.done || next.value.length < pageSize) more = false;
      // A node the query hands out twice (it moved in the index while being read) is marked once.
      const page = next.done ? [] : next.value.filter((n) => !seen.has(n.nodeId)).map(slim);
      for (const n of page) seen.add(n.nodeId);
      return page.length || more ? page : null;
    }
    try {
      // The first page; with the guard on, the rest too (up to the read-ahead) unless the first was short.
      const ahead: ExpiringNode[][] = [];
      let read = 0;
      do {
        const page = await nextPage();
        if (!page) break;
        ahead.push(page);
        read += page.length;
      } while (state && more && read < READ_AHEAD_NODES);
      if (state) {
        const t = performance.now();
        // The first page was short (or every page fitted in the read-ahead): `read` is the exact count.
        const silent = more ? Math.max(read, await store.countExpired(query)) : read;
        const decision = await massSilence(silent, state, now);
        timing.count += performance.now() - t;
        if (decision === 'hold') return hold('mass-silence', `Holding ${silent} silent nodes ONLINE (mass-silence guard)`, silent);
      }
      lastHold = null;

      const marked: string[] = [];
      const failed: PublishOutcome['failed'] = [];
      // A page's events are published and cleared while the next page is written (at most one page in flight).
      let publishing: ReturnType<typeof publishPage> | null = null;
      const published = async () => {
        const result = await publishing;
        publishing = null;
        if (result && 'error' in result) throw result.error;
        if (result) failed.push(...result.outcome.failed);
      };
      for (let page = ahead.shift() ?? (await nextPage()); page; page = ahead.shift() ?? (await nextPage())) {
        const done = await markPage(page, now, query, timing);
        marked.push(...done.map((e) => e.write.nodeId));
        await published();
        publishing = publishPage(done, timing);
      }
      await published();
      if (failed.length) {
        // Once per sweep: the events stay in the outbox, and the drain publishes them once they are due.
        log.warn(`node.offline of ${failed.length} nodes left in the outbox, to be published again: ${failed[0]!.error.message}`);
        nextDrainAt = Math.min(nextDrainAt, now + OUTBOX_GRACE_MS);
      }
      if (seen.size) {
        const ms = (x: number) => Math.round(x);
        log.debug(
          `Sweep: ${seen.size} expired nodes read in ${ms(timing.read)} ms, guard ${ms(timing.count)} ms, ${marked.length} marked OFFLINE in ${ms(timing.write)} ms, their events published and cleared in ${ms(timing.publish)} ms`,
          { expired: seen.size, marked: marked.length, durationMs: ms(timing.read + timing.count + timing.write + timing.publish) },
        );
      }
      return { kind: 'marked', nodeIds: marked };
    } finally {
      await pages.return?.();
    }
  }

  /**
   * Publishes events left in the outbox (a writer died, or the broker refused, between storing and publishing):
   * at the first sweep, then at least every `drainEveryMs`, and sooner when this process saw a publish fail or
   * the last drain left events behind. After marking, so it never delays a node's detection.
   */
  async function drainOutbox(): Promise<void> {
    // The injected clock, like occurredAt of the stored events: Date.now() would skip the grace period under a fake clock.
    const now = clock.now();
    if (now < nextDrainAt) return;
    nextDrainAt = now + drainEveryMs;
    try {
      const drained = await events.drain(OUTBOX_DRAIN_NODES, OUTBOX_GRACE_MS, now);
      if (drained.failed.length) log.warn(`Outbox events of ${drained.failed.length} nodes not published yet: ${drained.failed[0]!.error.message}`);
      if (drained.failed.length || drained.more) nextDrainAt = now;
      else if (drained.nextDueAt !== null) nextDrainAt = Math.min(nextDrainAt, drained.nextDueAt);
    } catch (error) {
      nextDrainAt = now;
      log.warn(`Outbox events not published yet: ${(error as Error).message}`);
    }
  }

  return async function sweep(): Promise<SweepOutcome> {
    const started = performance.now();
    try {
      const outcome = await markExpired();
      await drainOutbox();
      return outcome;
    } catch (error) {
      nextDrainAt = -Infinity; // it may have marked nodes without publishing their events
      throw error;
    } finally {
      metrics.sweepDuration.observe((performance.now() - started) / 1000);
    }
  };
}

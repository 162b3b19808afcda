import { randomUUID } from 'node:crypto';
import type { Bus } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import type { OrchestratorConfig } from '../../shared/config.js';
import { newDraft } from '../../shared/domain/apply-message.js';
import { draftToWrite } from '../../shared/domain/draft-write.js';
import { nodeEvent } from '../../shared/domain/node-events.js';
import type { EventPublisher } from '../../shared/events/event-publisher.js';
import type { Logger } from '../../shared/logger.js';
import type { ClusterEvent } from '../../shared/messages/index.js';
import type { Metrics } from '../../shared/metrics.js';
import type { NodeWrite } from '../../shared/store/node-record.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { ROUTING } from '../../shared/topology.js';
import { ingestCoverage } from './ingest-coverage.js';

export interface SweepDeps {
  store: NodeStore;
  bus: Bus;
  events: EventPublisher;
  nodeEventsExchange: string;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  config: Pick<OrchestratorConfig, 'timeoutMs' | 'sweep'> & { ingestLivenessMs: number };
  /** Test hook: runs after nodes are marked OFFLINE and before their events are published. */
  afterMark?: (nodeIds: string[]) => Promise<void>;
}

/** Outbox events younger than this are still being published by the process that stored them. */
const OUTBOX_GRACE_MS = 5000;

export type SweepOutcome =
  | { kind: 'marked'; nodeIds: string[] }
  | { kind: 'held'; reason: 'ingest-down' | 'ingest-recovering' | 'mass-silence'; silent?: number };

/**
 * One timeout sweep. Publishes events left in the outbox, checks that the ingest path has been recording
 * heartbeats for a whole timeout, then marks OFFLINE each ONLINE node silent for longer than the timeout
 * with a conditional write (still ONLINE, still the same rev), so a heartbeat stored meanwhile wins.
 * Reads only expired nodes, a batch at a time.
 */
export function createSweep(deps: SweepDeps) {
  const { store, bus, events, log, clock, metrics, config } = deps;
  const staleMs = Math.max(3 * config.ingestLivenessMs, 1000);
  let lastHold: string | null = null;

  function hold(reason: 'ingest-down' | 'ingest-recovering' | 'mass-silence', message: string, silent?: number): SweepOutcome {
    metrics.sweepsSkipped.inc({ reason });
    if (lastHold !== reason) {
      // Once per state change, not once per sweep.
      if (reason === 'ingest-recovering') log.info(message);
      else log.warn(message);
      lastHold = reason;
    }
    return { kind: 'held', reason, silent };
  }

  async function massSilence(silent: number, now: number): Promise<'proceed' | 'hold'> {
    const guard = config.sweep.massSilence;
    if (!guard.enabled) return 'proceed';
    const state = await store.guardState();
    if (silent === 0 && !state.heldSince) return 'proceed'; // the common sweep: no count of the fleet needed
    const online = (await store.countByStatus()).ONLINE;
    const massive = online >= guard.minNodes && silent / online > guard.share;
    if (!massive) {
      if (state.heldSince) {
        await store.setGuardState({ heldSince: null, eventId: null });
        metrics.clusterDegraded.set(0);
        log.info('Mass-silence guard released');
      }
      return 'proceed';
    }
    if (!state.heldSince) {
      const heldSince = new Date(now);
      const eventId = randomUUID();
      await store.setGuardState({ heldSince, eventId });
      metrics.clusterDegraded.set(1);
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
        heldUntil: new Date(now + guard.holdMs).toISOString(),
        reason: `more than ${Math.round(guard.share * 100)}% of ONLINE nodes silent at once`,
      };
      await bus.publish(deps.nodeEventsExchange, ROUTING.clusterDegraded, event, { messageId: eventId }).catch((error: Error) =>
        log.warn(`cluster.degraded event not published: ${error.message}`),
      );
      return 'hold';
    }
    metrics.clusterDegraded.set(1);
    return now - state.heldSince.getTime() >= guard.holdMs ? 'proceed' : 'hold';
  }

  return async function sweep(): Promise<SweepOutcome> {
    const started = performance.now();
    try {
      // The injected clock, like occurredAt of the stored events: Date.now() would skip the grace period under a fake clock.
      await events.drain(1000, OUTBOX_GRACE_MS, clock.now()).catch((error: Error) => log.warn(`Outbox events not published yet: ${error.message}`));
      const now = clock.now();
      const coverage = ingestCoverage(await store.ingestLiveness(), now, staleMs);
      if (!coverage.healthy || coverage.seenUntil === null || coverage.healthySince === null) {
        return hold('ingest-down', 'No ingest is recording heartbeats: marking no node OFFLINE until one is back and a full timeout has passed');
      }
      const cutoff = coverage.seenUntil - config.timeoutMs;
      if (coverage.healthySince > cutoff) {
        return hold('ingest-recovering', 'Ingest recording heartbeats again: every node gets a full timeout before it can be marked OFFLINE');
      }
      const silent = await store.countExpired(new Date(cutoff));
      if ((await massSilence(silent, now)) === 'hold') return hold('mass-silence', `Holding ${silent} silent nodes ONLINE (mass-silence guard)`, silent);
      lastHold = null;
      if (silent === 0) return { kind: 'marked', nodeIds: [] };

      const marked: string[] = [];
      const seen = new Set<string>();
      for (;;) {
        const expired = (await store.findExpired(new Date(cutoff), config.sweep.batchSize)).filter((n) => !seen.has(n.nodeId));
        if (!expired.length) break;
        const writes: NodeWrite[] = [];
        const drafts = expired.map((node) => {
          seen.add(node.nodeId);
          const draft = newDraft(node);
          const n = draft.node!;
          n.status = 'OFFLINE';
          n.statusVersion += 1;
          n.statusChangedAt = new Date(now);
          draft.events.push(nodeEvent(n, 'ONLINE', 'timeout', now));
          const write = draftToWrite(draft)!;
          // Still ONLINE and still silent when the write lands: a heartbeat stored meanwhile wins.
          writes.push(write.kind === 'update' ? { ...write, silentBefore: new Date(cutoff) } : write);
          return draft;
        });
        const { conflicts } = await store.write(writes);
        const lost = new Set(conflicts); // a heartbeat was stored meanwhile: it wins
        const done = drafts.filter((d) => !lost.has(d.node!.nodeId));
        for (const d of done) log.info(`Node ${d.node!.nodeId} missed heartbeat, marking as OFFLINE`);
        marked.push(...done.map((d) => d.node!.nodeId));
        await deps.afterMark?.(done.map((d) => d.node!.nodeId));
        for (const d of done) {
          await events.publishFor(d.node!.nodeId, d.events).catch((error: Error) => log.warn(`node.offline for ${d.node!.nodeId} left in the outbox: ${error.message}`));
        }
        if (expired.length < config.sweep.batchSize) break;
      }
      return { kind: 'marked', nodeIds: marked };
    } finally {
      metrics.sweepDuration.observe((performance.now() - started) / 1000);
    }
  };
}

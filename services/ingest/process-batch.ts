import type { Bus, Delivery } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import type { LogLevel } from '../../shared/config.js';
import { applyMessage, newDraft, type MessageOutcome, type NodeDraft, type ReceivedMessage } from '../../shared/domain/apply-message.js';
import { draftToWrite } from '../../shared/domain/draft-write.js';
import { planHeartbeatRefresh, planLateHeartbeats } from '../../shared/domain/heartbeat-refresh.js';
import { canaryArrived, stalledAfterMs } from '../../shared/domain/path-coverage.js';
import type { NodePace, NodePaceFields } from '../../shared/domain/heartbeat-pace.js';
import type { FleetPaceReader } from '../../shared/fleet-pace-reader.js';
import type { CanaryMessage, ControlMessage, SettingsControlMessage } from '../../shared/messages/index.js';
import type { EventPublisher, NodeEvents } from '../../shared/events/event-publisher.js';
import type { Logger } from '../../shared/logger.js';
import { createLogThrottle } from '../../shared/log-throttle.js';
import type { Metrics } from '../../shared/metrics.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import type { NodeRecord, NodeWrite } from '../../shared/store/node-record.js';
import { HEADERS, ROUTING, type BrokerNames } from '../../shared/topology.js';
import { parseDelivery } from './parse-delivery.js';
import type { Authenticator } from './authenticator.js';

export interface BatchDeps {
  bus: Bus;
  store: NodeStore;
  names: BrokerNames;
  events: EventPublisher;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  timeoutMs: number;
  history: { points: number; resolutionMs: number };
  heartbeatLogLevel: LogLevel;
  /** Runs a store call until the store answers (see store-retry.ts). */
  retry: <T>(what: string, run: () => Promise<T>) => Promise<T>;
  authenticator?: Authenticator;
  /** The fleet's heartbeat pace (absent: adaptation off): what AMQP agents that declared their interval are told. */
  fleetPace?: FleetPaceReader;
  /** Test hook: called after the batch is stored and before anything is acknowledged. */
  afterStore?: () => Promise<void>;
}

interface Item {
  delivery: Delivery;
  received: ReceivedMessage;
}

const MAX_CONFLICT_ROUNDS = 8;
const REREGISTER_MIN_GAP_MS = 1000;
/** An agent that keeps beating at its old pace while a shorter timeout waits is told again at most this often. */
const REMIND_MIN_GAP_MS = 60_000;
/** Nodes whose stored pace this process remembers (one small entry a node); past it the memory starts again. */
const MAX_KNOWN_PACES = 500_000;
type KnownPace = Pick<NodePaceFields, 'declaredIntervalMs' | 'intervalMs' | 'timeoutMs'>;

/**
 * Applies one batch of agent messages: validate, group by node, apply every message of a node to one
 * working copy, write all changed nodes in one bulk operation (retrying nodes another writer changed
 * first), and only then acknowledge. Refused messages go to the dead-letter queue with the reason.
 */
export function createBatchProcessor(deps: BatchDeps) {
  const { bus, store, names, events, log, clock, metrics } = deps;
  const askedAt = new Map<string, number>();
  const remindedAt = new Map<string, number>();
  /**
   * The pace this process last saw stored per node (learned from its reads and writes, as a refresh must assume
   * it: shared/domain/heartbeat-refresh.ts). A node it has not seen is assumed to have none; when it has one, the
   * first refresh does not apply and the read teaches it.
   */
  const knownPaces = new Map<string, KnownPace>();
  function learnPace(nodeId: string, node: NodeRecord | null): void {
    if (!node || node.declaredIntervalMs == null) {
      knownPaces.delete(nodeId);
      return;
    }
    if (knownPaces.size >= MAX_KNOWN_PACES) knownPaces.clear();
    knownPaces.set(nodeId, { declaredIntervalMs: node.declaredIntervalMs, intervalMs: node.intervalMs ?? null, timeoutMs: node.timeoutMs ?? null });
  }
  /**
   * The clock baseline this process last saw stored per node (from its reads, and the refreshes it wrote): only to
   * choose between a refresh and a late write while behind; the store checks the real one.
   */
  const knownSkews = new Map<string, number>();
  function learnSkew(nodeId: string, skew: number | null | undefined): void {
    if (skew == null) {
      knownSkews.delete(nodeId);
      return;
    }
    if (knownSkews.size >= MAX_KNOWN_PACES) knownSkews.clear();
    knownSkews.set(nodeId, skew);
  }
  const stalledAfter = stalledAfterMs(deps.timeoutMs);
  /** The one credential condition all of a node's messages share, null when there is none, undefined when auth is off. */
  function credentialCondition(items: Item[]): string | null | undefined {
    const auth = deps.authenticator;
    if (!auth) return undefined;
    const hashes = new Set(items.map((i) => auth.credentialCondition(i.received.message)));
    return hashes.size === 1 ? [...hashes][0]! : null;
  }
  // A flood of bad messages must not become a flood of log lines: 5 a minute, then one summary.
  const refusalLog = createLogThrottle({
    log,
    level: 'warn',
    burst: 5,
    windowMs: 60_000,
    now: () => clock.now(),
    summary: (n) => `... and ${n} more agent messages refused and dead-lettered in the last minute (see ${names.queues.deadLetter})`,
  });

  async function deadLetter(delivery: Delivery, reason: string): Promise<void> {
    try {
      await bus.publish(names.exchanges.deadLetter, delivery.routingKey, delivery.body, {
        messageId: delivery.messageId,
        headers: { ...delivery.headers, [HEADERS.refusalReason]: reason, [HEADERS.refusedBy]: 'ingest', [HEADERS.originalRoutingKey]: delivery.routingKey },
        contentType: 'application/octet-stream',
      });
      delivery.ack();
      metrics.deadLettered.inc({ reason: reason.split(':')[0]!.slice(0, 40) });
    } catch {
      // Not dead-lettered: leave it to the broker (redelivered once the channel reopens).
      delivery.requeue();
    }
  }

  async function askToReregister(nodeId: string, reason: string): Promise<void> {
    const now = clock.now();
    const last = askedAt.get(nodeId);
    if (last !== undefined && now - last < REREGISTER_MIN_GAP_MS) return;
    if (askedAt.size > 50_000) askedAt.clear();
    askedAt.set(nodeId, now);
    const message: ControlMessage = { id: crypto.randomUUID(), type: 'control.reregister', version: 1, sentAt: new Date(now).toISOString(), nodeId, reason };
    // Useless later: an agent that is not listening now will re-register on its own path.
    await bus.publish(names.exchanges.agentControl, ROUTING.control(nodeId), message, { persistent: false, expirationMs: 60_000 }).catch(() => undefined);
  }

  /**
   * Tells an AMQP agent the pace just stored for it (write before telling: the node has its longer deadline
   * before its agent can slow down). Not persistent: an agent not listening now is told at its re-registration.
   */
  async function tellPace(nodeId: string, pace: NodePace): Promise<void> {
    const now = clock.now();
    const message: SettingsControlMessage = {
      id: crypto.randomUUID(),
      type: 'control.settings',
      version: 1,
      sentAt: new Date(now).toISOString(),
      nodeId,
      heartbeatInterval: pace.heartbeatInterval,
      timeout: pace.timeout,
      fleetSize: pace.fleetSize,
    };
    await bus.publish(names.exchanges.agentControl, ROUTING.control(nodeId), message, { persistent: false, expirationMs: 60_000 }).catch(() => undefined);
  }

  /** Records the newest canary of each sender in the batch (docs/architecture.md, "The heartbeat path and its canary"). */
  async function storeCanaries(received: CanaryMessage[]): Promise<void> {
    const records = new Map((await store.canaries()).map((r) => [r.senderId, r]));
    const arrivedAt = clock.now();
    const newest = new Map<string, CanaryMessage>();
    const broke = new Set<string>();
    for (const c of received) {
      const sentAt = Date.parse(c.sentAt);
      const stored = records.get(c.senderId)?.sentAt?.getTime() ?? -Infinity;
      if (sentAt <= stored) continue; // a redelivery
      const kept = newest.get(c.senderId);
      if (!kept || sentAt > Date.parse(kept.sentAt)) newest.set(c.senderId, c);
      // Any canary of the batch that failed before, or stalled, breaks the run, not only the newest.
      if (c.failedSince || arrivedAt - sentAt > stalledAfter) broke.add(c.senderId);
    }
    for (const c of newest.values()) {
      const arrival = canaryArrived(records.get(c.senderId) ?? null, { sentAt: Date.parse(c.sentAt), arrivedAt, failedBefore: broke.has(c.senderId) }, stalledAfter);
      if (arrival) await store.recordCanaryArrival({ senderId: c.senderId, kind: c.kind, intervalMs: c.intervalMs, sentAt: arrival.sentAt!, pathSince: arrival.pathSince });
    }
  }

  /**
   * `behind()`: more than one batch holds is waiting or being written besides this batch (asked as the batch starts
   * and once it is stored; the ingest's batches run side by side). Messages then look late or name nodes whose
   * registration is still queued behind them, and asking their agents to register again would only add to the
   * backlog; so late heartbeats are written without a read (their stats only), one statement a node however many
   * of its messages the batch holds, and the backlog drains faster than it grew.
   */
  async function processBatch(deliveries: Delivery[], options: { behind?: () => boolean } = {}): Promise<void> {
    metrics.batchSize.observe(deliveries.length);
    const groups = new Map<string, Item[]>();
    const refusals: Array<{ delivery: Delivery; reason: string }> = [];
    const canaries: Array<{ delivery: Delivery; canary: CanaryMessage }> = [];
    for (const delivery of deliveries) {
      const parsed = parseDelivery(delivery);
      if (!parsed.ok) {
        refusals.push({ delivery, reason: parsed.reason });
        continue;
      }
      if ('canary' in parsed) {
        canaries.push({ delivery, canary: parsed.canary });
        continue;
      }
      const item = { delivery, received: { message: parsed.message, deliveredAt: delivery.deliveredAt } };
      const group = groups.get(parsed.message.nodeId);
      if (group) group.push(item);
      else groups.set(parsed.message.nodeId, [item]);
    }

    const outcomes = new Map<Delivery, MessageOutcome>();
    const drafts = new Map<string, NodeDraft>();
    let pending = [...groups.keys()];
    // The fleet's pace is read (from its cache) only for batches that may need it: nodes with a pace, declaring registrations.
    const paceNeeded = (nodeIds: string[], read?: Map<string, NodeRecord>) =>
      nodeIds.some(
        (id) =>
          knownPaces.has(id) ||
          read?.get(id)?.declaredIntervalMs != null ||
          groups.get(id)!.some((i) => i.received.message.type === 'agent.register' && i.received.message.payload.heartbeatInterval !== undefined),
      );
    let fleetPace: Awaited<ReturnType<FleetPaceReader['current']>> | undefined;
    const readPace = async () => (fleetPace ??= (await deps.fleetPace?.current()) ?? null);
    for (let round = 0; pending.length && round < MAX_CONFLICT_ROUNDS; round++) {
      const now = clock.now();
      if (paceNeeded(pending)) await readPace();
      const ctx = { now, timeoutMs: deps.timeoutMs, history: deps.history, fleetPace: fleetPace ?? null };
      const writes: NodeWrite[] = [];
      // First round: heartbeats of nodes that stay ONLINE are written without a read; the store applies them
      // only while the node is ONLINE and the messages are on time (or, while the ingest is behind, all late),
      // and reports the others as conflicts, which the next round reads and decides one message at a time.
      const toRead: string[] = [];
      const behindNow = round === 0 && (options.behind?.() ?? false);
      for (const nodeId of pending) {
        const items = groups.get(nodeId)!;
        const messages = items.map((i) => i.received);
        const credentialHash = credentialCondition(items);
        const knownClockSkewMs = knownSkews.get(nodeId);
        const plan =
          round === 0
            ? ((behindNow ? planLateHeartbeats(nodeId, messages, ctx, { credentialHash, knownClockSkewMs }) : null) ??
              planHeartbeatRefresh(nodeId, messages, ctx, { credentialHash, knownClockSkewMs, knownPace: knownPaces.get(nodeId) }))
            : null;
        if (!plan) {
          toRead.push(nodeId);
          continue;
        }
        items.forEach((item, i) => outcomes.set(item.delivery, plan.outcomes[i]!));
        writes.push(plan.write);
      }
      const current = toRead.length ? await deps.retry('read', () => store.getMany(toRead)) : new Map<string, NodeRecord>();
      if (fleetPace === undefined && paceNeeded(toRead, current)) ctx.fleetPace = await readPace();
      for (const nodeId of toRead) {
        const draft = newDraft(current.get(nodeId) ?? null);
        let accepted = false;
        for (const item of groups.get(nodeId)!) {
          const auth = deps.authenticator?.check(draft, item.received.message) ?? { ok: true };
          const outcome: MessageOutcome = auth.ok ? applyMessage(draft, item.received, ctx) : { kind: 'refused', reason: auth.reason };
          if (outcome.kind === 'applied' && auth.ok && auth.bindCredentialHash && draft.node) draft.node.credentialHash = auth.bindCredentialHash;
          outcomes.set(item.delivery, outcome);
          if (outcome.kind === 'applied' || outcome.kind === 'late') accepted = true;
        }
        drafts.set(nodeId, draft);
        // Only refused messages: nothing to store (a flood of forged messages causes no writes).
        const write = accepted ? draftToWrite(draft) : null;
        if (write) writes.push(write);
      }
      const result = await deps.retry('write', () => store.write(writes));
      metrics.storeWrites.inc(result.roundTrips > 0 ? 1 : 0);
      metrics.nodeWrites.inc(writes.length);
      if (result.conflicts.length) metrics.storeConflicts.inc(result.conflicts.length);
      pending = result.conflicts;
      const lost = new Set(pending);
      for (const nodeId of toRead) {
        if (lost.has(nodeId)) continue;
        const node = drafts.get(nodeId)?.node ?? null;
        learnPace(nodeId, node);
        learnSkew(nodeId, node?.clockSkewMs);
      }
      for (const w of writes) {
        if (w.kind === 'refresh' && w.clockSkewMs !== undefined && !lost.has(w.nodeId)) learnSkew(w.nodeId, Math.min(knownSkews.get(w.nodeId) ?? Infinity, w.clockSkewMs));
      }
    }
    // After the agents' messages of the batch: a canary that arrives proves that what was sent before it is stored.
    if (canaries.length) await deps.retry('write', () => storeCanaries(canaries.map((c) => c.canary)));
    await deps.afterStore?.();

    // Everything below happens only once the batch is durable.
    for (const { delivery } of canaries) delivery.ack();
    const storedAt = clock.now();
    for (const nodeId of pending) {
      // Lost the race too often (a hot node written by several ingests): let the broker redeliver.
      for (const item of groups.get(nodeId)!) item.delivery.requeue();
      drafts.delete(nodeId);
    }
    const unresolved = new Set(pending);
    let behind: boolean | undefined;
    // Dead-letters are confirmed concurrently: one at a time, a flood of bad messages would drain at the
    // pace of the broker's disk syncs and hold up the good ones behind it.
    const deadLetters: Array<Promise<void>> = [];
    // Paces stored by this batch, told to their AMQP agents with pipelined confirms, never before the write.
    const tells: Array<Promise<void>> = [];
    for (const [nodeId, items] of groups) {
      if (unresolved.has(nodeId)) continue;
      for (const { delivery, received } of items) {
        const outcome = outcomes.get(delivery)!;
        const type = received.message.type;
        metrics.messagesIngested.inc({ type, outcome: outcome.kind });
        if (outcome.kind === 'applied' || outcome.kind === 'late') {
          delivery.ack();
          const age = outcome.kind === 'late' ? outcome.ageMs : (outcome.ageMs ?? 0);
          const waited = Math.max(storedAt - delivery.deliveredAt, age);
          metrics.ingestLag.observe(waited / 1000);
          if (type === 'agent.heartbeat' && outcome.kind === 'applied') log.log(deps.heartbeatLogLevel, `Node stats updated successfully for ${nodeId}`);
          if (outcome.kind === 'late') {
            log.debug(`Late ${type} for ${nodeId} (${Math.round(outcome.ageMs / 1000)} s old): stored stats only, liveness unchanged`, { nodeId, ageMs: outcome.ageMs });
          }
        } else if (outcome.kind === 'unknown-node') {
          deadLetters.push(deadLetter(delivery, `unknown node: ${nodeId} is not registered`));
        } else {
          deadLetters.push(deadLetter(delivery, outcome.reason));
        }
      }
      const draft = drafts.get(nodeId);
      if (draft?.tell) tells.push(tellPace(nodeId, draft.tell));
      else if (draft?.remind && storedAt - (remindedAt.get(nodeId) ?? -Infinity) >= REMIND_MIN_GAP_MS) {
        if (remindedAt.size >= MAX_KNOWN_PACES) remindedAt.clear();
        remindedAt.set(nodeId, storedAt);
        tells.push(tellPace(nodeId, draft.remind));
      }
      if (draft?.askReregister && !(behind ??= options.behind?.() ?? false))
        await askToReregister(nodeId, draft.node ? 'heartbeat clock baseline is stale' : 'node is not registered');
    }
    for (const { delivery, reason } of refusals) {
      metrics.messagesIngested.inc({ type: 'invalid', outcome: 'refused' });
      refusalLog.log(`Refused agent message on ${delivery.routingKey.slice(0, 120)}: ${reason.slice(0, 300)}`, {
        routingKey: delivery.routingKey.slice(0, 120),
        reason: reason.slice(0, 300),
      });
      deadLetters.push(deadLetter(delivery, reason));
    }
    await Promise.all(deadLetters);
    await Promise.all(tells);

    const toPublish: NodeEvents[] = [];
    for (const [nodeId, draft] of drafts) {
      for (const e of draft.events) {
        const fields = { nodeId, event: e.type, statusVersion: e.statusVersion, reason: e.reason };
        if (e.type === 'node.registered') log.info(`Node ${nodeId} registered`, fields);
        else if (e.type === 'node.online') log.info(`Node ${nodeId} is ONLINE again (${e.reason})`, fields);
        else log.info(`Node ${nodeId} announced shutdown, marking as OFFLINE`, fields);
      }
      if (draft.events.length) toPublish.push({ nodeId, events: draft.events });
    }
    if (!toPublish.length) return;
    // Stored in the outbox with the changes; all of the batch's go out with pipelined confirms and leave the
    // outboxes in one bulk write (a registration flood is not published one node at a time). What the broker
    // does not take, or the store does not clear, the sweeper's outbox drain publishes later.
    try {
      const { failed } = await events.publishMany(toPublish);
      if (failed.length) log.warn(`Node events of ${failed.length} node(s) left in the outbox: ${failed[0]!.error.message}`);
    } catch (error) {
      log.warn(`Node events of ${toPublish.length} node(s) left in the outbox: ${(error as Error).message}`);
    }
  }
  return processBatch;
}

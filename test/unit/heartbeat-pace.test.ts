import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { applyMessage, newDraft, type ApplyContext, type ReceivedMessage } from '../../shared/domain/apply-message.js';
import { planHeartbeatRefresh } from '../../shared/domain/heartbeat-refresh.js';
import { fleetInterval, nextFleetPace, nodePace, paceCountDue, type FleetPace, type PaceSettings } from '../../shared/domain/heartbeat-pace.js';
import { offlineQuery, type PathCoverage } from '../../shared/domain/path-coverage.js';
import { manualClock } from '../../shared/clock.js';
import type { HeartbeatMessage, RegisterMessage } from '../../shared/messages/index.js';
import type { NodeRecord } from '../../shared/store/node-record.js';

const SETTINGS: PaceSettings = { maxRate: 100, minChangeMs: 60_000 };
const TIMEOUT = 180_000;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();

/** The fleet pace after counts of `online` nodes at the clock's times. */
function paceAfter(counts: Array<[advanceMs: number, online: number]>, settings = SETTINGS): FleetPace | null {
  const clock = manualClock(T0);
  let pace: FleetPace | null = null;
  for (const [advanceMs, online] of counts) {
    clock.advance(advanceMs);
    pace = nextFleetPace(pace, online, clock.now(), settings);
  }
  return pace;
}

function register(nodeId: string, at: number, heartbeatInterval?: number, told?: { heartbeatInterval: number; timeout: number }): ReceivedMessage {
  const message: RegisterMessage = {
    id: randomUUID(),
    version: 1,
    sentAt: iso(at),
    nodeId,
    type: 'agent.register',
    payload: { nodeId, hostname: `${nodeId}.example`, ipAddress: '10.0.0.7', maxServers: 20, ...(heartbeatInterval === undefined ? {} : { heartbeatInterval }) },
    ...(told ? { receivedAt: iso(at), told } : {}),
  };
  return { message, deliveredAt: at };
}

function heartbeat(nodeId: string, at: number, over: 'amqp' | 'http' = 'amqp', told?: { heartbeatInterval: number; timeout: number }): ReceivedMessage {
  const message: HeartbeatMessage = {
    id: randomUUID(),
    version: 1,
    sentAt: iso(at),
    nodeId,
    type: 'agent.heartbeat',
    payload: { cpuUsage: 10, memoryUsage: 20, diskUsage: 30, containerCount: 2, timestamp: iso(at) },
    ...(over === 'http' ? { receivedAt: iso(at) } : {}),
    ...(told ? { told } : {}),
  };
  return { message, deliveredAt: at };
}

const fleetOf = (intervalSeconds: number, fleetSize: number): FleetPace => ({ intervalSeconds, fleetSize, changedAt: T0, onlineNodes: fleetSize, countedAt: T0 });
const ctx = (now: number, fleetPace: FleetPace | null): ApplyContext => ({ now, timeoutMs: TIMEOUT, history: { points: 0, resolutionMs: 30_000 }, fleetPace });

/** Applies messages one batch each, as the ingest's read path would, to the node as stored after the last. */
function applyAll(stored: NodeRecord | null, messages: Array<[ReceivedMessage, FleetPace | null]>) {
  let node = stored;
  const tells: Array<number | null> = [];
  for (const [received, fleet] of messages) {
    const draft = newDraft(node);
    expect(applyMessage(draft, received, ctx(received.deliveredAt, fleet)).kind).to.equal('applied');
    node = draft.node;
    tells.push(draft.tell?.heartbeatInterval ?? null);
  }
  return { node: node!, tells };
}

describe('heartbeat pace', () => {
  describe('the formula', () => {
    it('asks for ceil(ONLINE nodes / HEARTBEAT_MAX_RATE) seconds, none for an empty fleet or with adaptation off', () => {
      expect(fleetInterval(12_000, 100)).to.equal(120);
      expect(fleetInterval(40, 5)).to.equal(8);
      expect(fleetInterval(41, 5)).to.equal(9);
      expect(fleetInterval(50, 100)).to.equal(1);
      expect(fleetInterval(0, 100)).to.equal(0);
      expect(fleetInterval(12_000, 0)).to.equal(0);
    });

    it('never asks for more than 10 minutes', () => {
      expect(fleetInterval(1_000_000, 100)).to.equal(600);
    });

    it('tells a node max(declared, the fleet interval) and max(TIMEOUT_MINUTES, 3 × interval)', () => {
      expect(nodePace(1, fleetOf(8, 40), TIMEOUT)).to.deep.equal({ heartbeatInterval: 8, timeout: 180, fleetSize: 40 });
      expect(nodePace(1, fleetOf(120, 12_000), TIMEOUT)).to.deep.equal({ heartbeatInterval: 120, timeout: 360, fleetSize: 12_000 });
      expect(nodePace(300, fleetOf(120, 12_000), TIMEOUT), 'a slower agent keeps its own').to.deep.equal({ heartbeatInterval: 300, timeout: 900, fleetSize: 12_000 });
      expect(nodePace(10, null, TIMEOUT), 'no fleet pace yet').to.deep.equal({ heartbeatInterval: 10, timeout: 180, fleetSize: 0 });
    });
  });

  describe('hysteresis', () => {
    it('sets the first pace at once', () => {
      expect(paceAfter([[0, 12_000]])).to.include({ intervalSeconds: 120, fleetSize: 12_000, changedAt: T0 });
    });

    it('does not move for a change of 20% or less, however long it lasts', () => {
      const pace = paceAfter([
        [0, 10_000],
        [600_000, 12_000],
        [600_000, 8_000],
      ]);
      expect(pace).to.include({ intervalSeconds: 100, fleetSize: 10_000, changedAt: T0, onlineNodes: 8_000 });
    });

    it('moves past 20%, but not within a minute of the last move, in both directions', () => {
      const within = paceAfter([
        [0, 10_000],
        [59_000, 13_000],
      ]);
      expect(within).to.include({ intervalSeconds: 100, onlineNodes: 13_000 });
      const up = paceAfter([
        [0, 10_000],
        [60_000, 13_000],
      ]);
      expect(up).to.include({ intervalSeconds: 130, fleetSize: 13_000, changedAt: T0 + 60_000 });
      const down = paceAfter([
        [0, 10_000],
        [60_000, 13_000],
        [30_000, 5_000],
        [30_000, 5_000],
      ]);
      expect(down).to.include({ intervalSeconds: 50, fleetSize: 5_000, changedAt: T0 + 120_000 });
    });

    it('counts the fleet at most once per minimum change interval, and not at all with adaptation off', () => {
      const pace = paceAfter([[0, 100]])!;
      expect(paceCountDue(pace, T0 + 59_999, SETTINGS)).to.equal(false);
      expect(paceCountDue(pace, T0 + 60_000, SETTINGS)).to.equal(true);
      expect(paceCountDue(null, T0, SETTINGS)).to.equal(true);
      expect(paceCountDue(null, T0, { ...SETTINGS, maxRate: 0 })).to.equal(false);
    });
  });

  describe('deadline changes', () => {
    it('stores the timeout told at registration, and tells an AMQP agent after the write', () => {
      const { node, tells } = applyAll(null, [[register('n', T0, 1), fleetOf(120, 12_000)]]);

      expect(node).to.include({ declaredIntervalMs: 1000, intervalMs: 120_000, timeoutMs: 360_000, pendingTimeoutMs: null });
      expect(node.expiresAt).to.deep.equal(new Date(T0 + 360_000));
      expect(tells).to.deep.equal([120]);
    });

    it('stores over HTTP exactly the pace the api told, and tells nothing more', () => {
      const { node, tells } = applyAll(null, [[register('n', T0, 1, { heartbeatInterval: 60, timeout: 180 }), fleetOf(120, 12_000)]]);

      expect(node).to.include({ intervalMs: 60_000, timeoutMs: 180_000 });
      expect(tells).to.deep.equal([null]);
    });

    it('gives a node told a longer interval its longer deadline with the write that precedes the telling', () => {
      const { node, tells } = applyAll(null, [
        [register('n', T0, 1), fleetOf(1, 40)],
        [heartbeat('n', T0 + 1000), fleetOf(1, 40)],
        [heartbeat('n', T0 + 2000), fleetOf(8, 40)],
      ]);

      expect(tells).to.deep.equal([1, null, 8]);
      expect(node).to.include({ intervalMs: 8000, timeoutMs: 180_000, pendingTimeoutMs: null });
      // TIMEOUT_MINUTES is longer than 3 × 8 s here; with a fleet of 12,000 the timeout grows at once:
      const large = applyAll(node, [[heartbeat('n', T0 + 3000), fleetOf(120, 12_000)]]).node;
      expect(large).to.include({ intervalMs: 120_000, timeoutMs: 360_000, pendingTimeoutMs: null });
      expect(large.expiresAt).to.deep.equal(new Date(T0 + 3000 + 360_000));
    });

    it('keeps the longer deadline of a node told a shorter interval until its first heartbeat at the new pace', () => {
      const slow = applyAll(null, [[register('n', T0, 1), fleetOf(120, 12_000)]]).node;

      const told = applyAll(slow, [[heartbeat('n', T0 + 120_000), fleetOf(60, 6_000)]]);
      expect(told.tells).to.deep.equal([60]);
      expect(told.node, 'told, not yet beating faster').to.include({ intervalMs: 60_000, timeoutMs: 360_000, pendingTimeoutMs: 180_000 });
      expect(told.node.expiresAt).to.deep.equal(new Date(T0 + 120_000 + 360_000));

      const stillSlow = applyAll(told.node, [[heartbeat('n', T0 + 240_000), fleetOf(60, 6_000)]]).node;
      expect(stillSlow, 'a beat at the old pace leaves it pending').to.include({ timeoutMs: 360_000, pendingTimeoutMs: 180_000 });

      const fast = applyAll(stillSlow, [[heartbeat('n', T0 + 300_000), fleetOf(60, 6_000)]]).node;
      expect(fast, 'the first beat at the new pace applies it').to.include({ timeoutMs: 180_000, pendingTimeoutMs: null });
      expect(fast.expiresAt).to.deep.equal(new Date(T0 + 300_000 + 180_000));
    });

    it('keeps the default timeout for an agent that declares nothing, and tells it nothing', () => {
      const { node, tells } = applyAll(null, [
        [register('legacy', T0), fleetOf(120, 12_000)],
        [heartbeat('legacy', T0 + 60_000), fleetOf(120, 12_000)],
      ]);

      expect(tells).to.deep.equal([null, null]);
      expect(node.timeoutMs ?? null).to.equal(null);
      expect(node.expiresAt ?? null).to.equal(null);
    });

    it('takes the heartbeat path without a read only while the node holds the pace this process knows', () => {
      const known = { declaredIntervalMs: 1000, intervalMs: 8000, timeoutMs: 180_000 };
      const plan = planHeartbeatRefresh('n', [heartbeat('n', T0)], ctx(T0, fleetOf(8, 40)), { knownPace: known });
      expect(plan?.write.pace).to.deep.equal({ intervalMs: 8000, timeoutMs: 180_000 });

      expect(planHeartbeatRefresh('n', [heartbeat('n', T0)], ctx(T0, fleetOf(20, 100)), { knownPace: known }), 'the fleet moved: tell, after a read').to.equal(null);
      expect(planHeartbeatRefresh('n', [heartbeat('n', T0, 'http', { heartbeatInterval: 20, timeout: 180 })], ctx(T0, fleetOf(20, 100)), { knownPace: known })).to.equal(null);
      expect(planHeartbeatRefresh('legacy', [heartbeat('legacy', T0)], ctx(T0, fleetOf(20, 100)))?.write.pace).to.deep.equal({ intervalMs: null, timeoutMs: null });
    });

    it('gives every node a full timeout of its own after a break of the heartbeat path', () => {
      const coverage: PathCoverage = { state: 'up', reason: null, coveredUntil: T0 + 400_000, since: T0, senders: 1 };

      const decision = offlineQuery(coverage, TIMEOUT);

      expect(decision).to.deep.equal({ query: { coveredUntil: new Date(T0 + 400_000), defaultTimeoutMs: TIMEOUT, maxTimeoutMs: 400_000 } });
    });
  });
});

import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { applyMessage, newDraft, type ApplyContext, type ReceivedMessage } from '../../shared/domain/apply-message.js';
import { planHeartbeatRefresh, planLateHeartbeats } from '../../shared/domain/heartbeat-refresh.js';
import type { HeartbeatMessage, RegisterMessage } from '../../shared/messages/index.js';
import type { NodeRecord } from '../../shared/store/node-record.js';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const TIMEOUT = 180_000;
const iso = (ms: number) => new Date(ms).toISOString();
const ctx = (now: number): ApplyContext => ({ now, timeoutMs: TIMEOUT, history: { points: 120, resolutionMs: 30_000 } });

function heartbeat(nodeId: string, deliveredAt: number, agentTime: number, receivedAt?: number): ReceivedMessage {
  const message: HeartbeatMessage = {
    id: randomUUID(),
    version: 1,
    sentAt: iso(agentTime),
    nodeId,
    ...(receivedAt !== undefined ? { receivedAt: iso(receivedAt) } : {}),
    type: 'agent.heartbeat',
    payload: { cpuUsage: 10, memoryUsage: 20, diskUsage: 30, containerCount: 2, timestamp: iso(agentTime) },
  };
  return { message, deliveredAt };
}

function onlineNode(clockSkewMs: number | null): NodeRecord {
  return {
    nodeId: 'node-1',
    hostname: 'node-1.example',
    ipAddress: '10.0.0.7',
    maxServers: 20,
    status: 'ONLINE',
    registeredAt: new Date(T0 - 3_600_000),
    lastHeartbeat: new Date(T0 - 60_000),
    statusChangedAt: new Date(T0 - 3_600_000),
    statusVersion: 1,
    rev: randomUUID(),
    stats: null,
    outbox: [],
    clockSkewMs,
    reregisterRequestedAt: null,
    credentialHash: null,
  };
}

describe('heartbeat refresh plan', () => {
  it('plans one conditional write for the heartbeats of a node: the newest stats, the latest receive time, the lowest clock offset', () => {
    const beats = [heartbeat('node-1', T0 + 100, T0 + 5_050), heartbeat('node-1', T0 + 200, T0 + 5_120), heartbeat('node-1', T0 + 300, T0 + 5_100)];

    const plan = planHeartbeatRefresh('node-1', beats, ctx(T0 + 400))!;

    expect(plan.write).to.deep.include({ kind: 'refresh', nodeId: 'node-1', lastHeartbeat: new Date(T0 + 300), clockSkewMs: -4_950 });
    expect(plan.write.stats!.reportedAt).to.deep.equal(new Date(T0 + 5_120));
    expect(plan.write.minClockSkewMs, 'the highest offset + wait − timeout of the batch').to.equal(-4_950 + 300 - TIMEOUT);
    expect(plan.outcomes.map((o) => o.kind)).to.deep.equal(['applied', 'applied', 'applied']);
  });

  it('needs a read for anything but heartbeats, for a late HTTP heartbeat, for one late against the same batch, and for a message without a usable credential', () => {
    const register: ReceivedMessage = {
      message: {
        id: randomUUID(),
        version: 1,
        sentAt: iso(T0),
        nodeId: 'node-1',
        type: 'agent.register',
        payload: { nodeId: 'node-1', hostname: 'h', ipAddress: '10.0.0.1', maxServers: 1 },
      } satisfies RegisterMessage,
      deliveredAt: T0,
    };
    expect(planHeartbeatRefresh('node-1', [heartbeat('node-1', T0, T0), register], ctx(T0))).to.equal(null);
    expect(planHeartbeatRefresh('node-1', [heartbeat('node-1', T0, T0, T0 - TIMEOUT - 1)], ctx(T0)), 'late over HTTP').to.equal(null);
    const live = heartbeat('node-1', T0, T0);
    const backlogged = heartbeat('node-1', T0 + 1, T0 - TIMEOUT - 10_000);
    expect(planHeartbeatRefresh('node-1', [live, backlogged], ctx(T0 + 1)), 'late against the batch').to.equal(null);
    expect(planHeartbeatRefresh('node-1', [live], ctx(T0), { credentialHash: null })).to.equal(null);
    expect(planHeartbeatRefresh('node-1', [live], ctx(T0), { credentialHash: 'sha256:x' })!.write.credentialHash).to.equal('sha256:x');
  });

  it('applies exactly when applying the same messages one by one to the stored node would call none of them late, and leaves the same baseline', () => {
    const offset = fc.integer({ min: -600_000, max: 600_000 });
    fc.assert(
      fc.property(
        fc.option(offset, { nil: null }),
        fc.array(fc.record({ offset, deliveryGap: fc.integer({ min: 0, max: 5_000 }), http: fc.boolean(), httpAge: fc.integer({ min: 0, max: 2 * TIMEOUT }) }), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.integer({ min: 0, max: 2 * TIMEOUT }),
        (storedSkew, specs, processingDelay) => {
          let deliveredAt = T0;
          const messages = specs.map((m) => {
            deliveredAt += m.deliveryGap;
            return m.http ? heartbeat('node-1', deliveredAt, deliveredAt + m.offset, deliveredAt - m.httpAge) : heartbeat('node-1', deliveredAt, deliveredAt - m.offset);
          });
          const now = deliveredAt + processingDelay;
          const plan = planHeartbeatRefresh('node-1', messages, ctx(now));
          const draft = newDraft(onlineNode(storedSkew));
          const outcomes = messages.map((m) => applyMessage(draft, m, ctx(now)).kind);
          if (!plan) return; // decided by a read: nothing to compare
          const w = plan.write;
          const storeApplies = w.minClockSkewMs === undefined || (storedSkew !== null && storedSkew >= w.minClockSkewMs);
          expect(storeApplies, `store condition vs ${outcomes.join(',')}`).to.equal(
            outcomes.every((o) => o === 'applied') && (w.minClockSkewMs === undefined || storedSkew !== null),
          );
          if (!storeApplies) return;
          expect(draft.events).to.deep.equal([]);
          const before = onlineNode(null).lastHeartbeat!.getTime();
          expect(draft.node!.lastHeartbeat!.getTime(), 'lastHeartbeat after $max').to.equal(Math.max(before, w.lastHeartbeat.getTime()));
          const stored = storedSkew === null || w.clockSkewMs === undefined ? storedSkew : Math.min(storedSkew, w.clockSkewMs);
          expect(stored, 'baseline after the write').to.equal(draft.node!.clockSkewMs);
        },
      ),
      { numRuns: 2000 },
    );
  });

  describe('late heartbeats, written without a read while the ingest is behind', () => {
    it('plans a write of the newest stats for heartbeats that are all late, and none when one is on time or the baseline is unknown', () => {
      const old = [heartbeat('node-1', T0 + 100, T0 - TIMEOUT - 5_000), heartbeat('node-1', T0 + 200, T0 - TIMEOUT - 4_000)];
      const plan = planLateHeartbeats('node-1', old, ctx(T0 + 300), { knownClockSkewMs: 0 })!;
      expect(plan.write).to.deep.include({ kind: 'late', nodeId: 'node-1', clockSkewBelowMs: TIMEOUT + 4_200 + 100 - TIMEOUT });
      expect(plan.write.stats.reportedAt).to.deep.equal(new Date(T0 - TIMEOUT - 4_000));
      expect(plan.outcomes.map((o) => o.kind)).to.deep.equal(['late', 'late']);

      expect(planLateHeartbeats('node-1', [...old, heartbeat('node-1', T0 + 250, T0 + 250)], ctx(T0 + 300), { knownClockSkewMs: 0 }), 'one on time').to.equal(null);
      expect(planLateHeartbeats('node-1', old, ctx(T0 + 300)), 'no baseline known').to.equal(null);
      expect(planLateHeartbeats('node-1', old, ctx(T0 + 300), { knownClockSkewMs: 0, credentialHash: null })).to.equal(null);
      const http = planLateHeartbeats('node-1', [heartbeat('node-1', T0, T0, T0 - TIMEOUT - 1)], ctx(T0))!;
      expect(http.write.clockSkewBelowMs, 'over HTTP the receive time decides, not the baseline').to.equal(undefined);
    });

    it('applies exactly when applying the same messages one by one to the stored ONLINE node would call all of them late and keep its baseline, and changes what that changes', () => {
      const offset = fc.integer({ min: -600_000, max: 600_000 });
      fc.assert(
        fc.property(
          fc.option(offset, { nil: null }),
          offset,
          fc.array(fc.record({ offset, deliveryGap: fc.integer({ min: 0, max: 5_000 }), http: fc.boolean(), httpAge: fc.integer({ min: 0, max: 2 * TIMEOUT }) }), {
            minLength: 1,
            maxLength: 6,
          }),
          fc.integer({ min: 0, max: 2 * TIMEOUT }),
          fc.option(fc.integer({ min: -600_000, max: 600_000 }), { nil: null }),
          (storedSkew, knownSkew, specs, processingDelay, storedReportedAt) => {
            let deliveredAt = T0;
            const messages = specs.map((m) => {
              deliveredAt += m.deliveryGap;
              return m.http ? heartbeat('node-1', deliveredAt, deliveredAt + m.offset, deliveredAt - m.httpAge) : heartbeat('node-1', deliveredAt, deliveredAt - m.offset);
            });
            const now = deliveredAt + processingDelay;
            const plan = planLateHeartbeats('node-1', messages, ctx(now), { knownClockSkewMs: knownSkew });
            const node = onlineNode(storedSkew);
            if (storedReportedAt !== null) node.stats = { cpuUsage: 1, memoryUsage: 1, diskUsage: 1, containerCount: 1, reportedAt: new Date(T0 + storedReportedAt) };
            const draft = newDraft(node);
            const outcomes = messages.map((m) => applyMessage(draft, m, ctx(now)).kind);
            if (!plan) return; // decided by a read
            const w = plan.write;
            const storeApplies = w.clockSkewBelowMs === undefined || (storedSkew !== null && storedSkew < w.clockSkewBelowMs);
            // Late, as the rules judge them, and leaving the baseline as it is (a message below it, or the first
            // of a node without one, moves it: only a read can write that).
            const lateOnly = outcomes.every((o) => o === 'late') && draft.node!.clockSkewMs === storedSkew;
            expect(storeApplies, `store condition vs ${outcomes.join(',')}`).to.equal(lateOnly);
            if (!storeApplies) return;
            expect(draft.events).to.deep.equal([]);
            expect(draft.node!.lastHeartbeat, 'liveness unchanged').to.deep.equal(node.lastHeartbeat);
            const stored = node.stats?.reportedAt.getTime();
            const after = stored === undefined || w.stats.reportedAt.getTime() > stored ? w.stats.reportedAt : node.stats!.reportedAt;
            expect(draft.node!.stats!.reportedAt, 'stats after $max').to.deep.equal(after);
          },
        ),
        { numRuns: 3000 },
      );
    });
  });
});

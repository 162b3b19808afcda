import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { applyMessage, newDraft, type ApplyContext, type MessageOutcome, type NodeDraft, type ReceivedMessage } from '../../shared/domain/apply-message.js';
import { draftToWrite } from '../../shared/domain/draft-write.js';
import type { HeartbeatMessage, RegisterMessage, ShutdownMessage } from '../../shared/messages/index.js';
import type { NodeRecord } from '../../shared/store/node-record.js';

const TIMEOUT = 60_000;
const MINUTE = 60_000;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const iso = (ms: number) => new Date(ms).toISOString();

interface Sent {
  /** Orchestrator clock: when the ingest took the message off the broker. */
  deliveredAt: number;
  /** The agent's clock when it sent the message. */
  agentTime?: number;
  /** Set by the api gateway for messages that came over HTTP (orchestrator clock). */
  receivedAt?: number;
}

function envelope(nodeId: string, sent: Sent) {
  const agentTime = sent.agentTime ?? sent.deliveredAt;
  return { id: randomUUID(), version: 1 as const, sentAt: iso(agentTime), nodeId, ...(sent.receivedAt !== undefined ? { receivedAt: iso(sent.receivedAt) } : {}) };
}

function register(nodeId: string, sent: Sent, payload: Partial<RegisterMessage['payload']> = {}): ReceivedMessage {
  const message: RegisterMessage = {
    ...envelope(nodeId, sent),
    type: 'agent.register',
    payload: { nodeId, hostname: `${nodeId}.example`, ipAddress: '10.0.0.7', maxServers: 20, ...payload },
  };
  return { message, deliveredAt: sent.deliveredAt };
}

function heartbeat(nodeId: string, sent: Sent, stats: Partial<Omit<HeartbeatMessage['payload'], 'timestamp'>> = {}): ReceivedMessage {
  const agentTime = sent.agentTime ?? sent.deliveredAt;
  const message: HeartbeatMessage = {
    ...envelope(nodeId, sent),
    type: 'agent.heartbeat',
    payload: { cpuUsage: 10, memoryUsage: 20, diskUsage: 30, containerCount: 2, timestamp: iso(agentTime), ...stats },
  };
  return { message, deliveredAt: sent.deliveredAt };
}

function shutdown(nodeId: string, sent: Sent): ReceivedMessage {
  const message: ShutdownMessage = { ...envelope(nodeId, sent), type: 'agent.shutdown', payload: {} };
  return { message, deliveredAt: sent.deliveredAt };
}

const context = (now: number, history = { points: 120, resolutionMs: 30_000 }): ApplyContext => ({ now, timeoutMs: TIMEOUT, history });

/** Applies one message as one ingest batch would: to a working copy of what the store holds. */
function apply(stored: NodeRecord | null, received: ReceivedMessage, now = received.deliveredAt, history?: ApplyContext['history']) {
  const draft = newDraft(stored);
  const outcome = applyMessage(draft, received, context(now, history));
  return { draft, outcome, node: draft.node, events: draft.events };
}

/** What the store holds after the draft was written (a new rev, no outbox: the events were published). */
function persisted(draft: NodeDraft): NodeRecord {
  return { ...structuredClone(draft.node!), rev: randomUUID(), outbox: [] };
}

/** A registered node as stored, with the given agent clock offset (agent time = orchestrator time + offset). */
function registeredNode(nodeId = 'node-1', offsetMs = 0, at = T0): NodeRecord {
  return persisted(apply(null, register(nodeId, { deliveredAt: at, agentTime: at + offsetMs })).draft);
}

/** The same node after the sweeper marked it OFFLINE. */
function offline(node: NodeRecord, at: number): NodeRecord {
  return { ...node, status: 'OFFLINE', statusVersion: node.statusVersion + 1, statusChangedAt: new Date(at), rev: randomUUID() };
}

const applied: MessageOutcome = { kind: 'applied' };

describe('applyMessage', () => {
  describe('register', () => {
    it('creates an ONLINE node at the receive time and a node.registered event with statusVersion 1', () => {
      const { outcome, node, events } = apply(null, register('node-1', { deliveredAt: T0, agentTime: T0 - 250 }), T0 + 20);

      expect(outcome).to.include(applied);
      expect(node).to.deep.include({ nodeId: 'node-1', hostname: 'node-1.example', ipAddress: '10.0.0.7', maxServers: 20, status: 'ONLINE', statusVersion: 1, stats: null });
      expect(node!.registeredAt).to.deep.equal(new Date(T0));
      expect(node!.lastHeartbeat).to.deep.equal(new Date(T0));
      expect(node!.clockSkewMs, 'receive minus send: the clock baseline').to.equal(250);
      expect(events).to.have.length(1);
      expect(events[0]).to.deep.include({
        type: 'node.registered',
        nodeId: 'node-1',
        status: 'ONLINE',
        previousStatus: null,
        statusVersion: 1,
        reason: 'registered',
        lastHeartbeat: iso(T0),
      });
    });

    it('keeps registeredAt and statusVersion on re-registration, updates the host details, and publishes nothing', () => {
      const stored = registeredNode('node-1');

      const { outcome, node, events } = apply(stored, register('node-1', { deliveredAt: T0 + 10 * MINUTE }, { hostname: 'renamed', maxServers: 5 }));

      expect(outcome).to.include(applied);
      expect(node!.registeredAt).to.deep.equal(new Date(T0));
      expect(node).to.deep.include({ hostname: 'renamed', maxServers: 5, status: 'ONLINE', statusVersion: 1 });
      expect(node!.lastHeartbeat).to.deep.equal(new Date(T0 + 10 * MINUTE));
      expect(events).to.deep.equal([]);
    });

    it('makes an OFFLINE node ONLINE again with one node.online event', () => {
      const stored = offline(registeredNode('node-1'), T0 + 2 * MINUTE);

      const { node, events } = apply(stored, register('node-1', { deliveredAt: T0 + 5 * MINUTE }));

      expect(node).to.deep.include({ status: 'ONLINE', statusVersion: 3 });
      expect(events.map((e) => [e.type, e.reason, e.previousStatus, e.statusVersion])).to.deep.equal([['node.online', 'registered', 'OFFLINE', 3]]);
    });
  });

  describe('heartbeat', () => {
    it("sets lastHeartbeat to the orchestrator's receive time and keeps the agent's timestamp as stats.reportedAt", () => {
      const stored = registeredNode('node-1', 3 * MINUTE);
      const received = T0 + 30_000;

      const { outcome, node } = apply(stored, heartbeat('node-1', { deliveredAt: received, agentTime: received + 3 * MINUTE }, { cpuUsage: 77 }), received + 40);

      expect(outcome).to.include(applied);
      expect(node!.lastHeartbeat).to.deep.equal(new Date(received));
      expect(node!.stats).to.deep.equal({ cpuUsage: 77, memoryUsage: 20, diskUsage: 30, containerCount: 2, reportedAt: new Date(received + 3 * MINUTE) });
    });

    it('takes the api gateway receive time for a heartbeat that came over HTTP', () => {
      const stored = registeredNode('node-1');
      const receivedAt = T0 + 30_000;

      const { node } = apply(stored, heartbeat('node-1', { receivedAt, deliveredAt: receivedAt + 200, agentTime: receivedAt - 7 * MINUTE }), receivedAt + 300);

      expect(node!.lastHeartbeat).to.deep.equal(new Date(receivedAt));
    });

    it('never takes a gateway receive time later than the delivery (a forged receivedAt cannot make a message fresher)', () => {
      const stored = registeredNode('node-1');

      const { node } = apply(stored, heartbeat('node-1', { receivedAt: T0 + 10 * MINUTE, deliveredAt: T0 + 30_000 }), T0 + 30_100);

      expect(node!.lastHeartbeat).to.deep.equal(new Date(T0 + 30_000));
    });

    it('makes an OFFLINE node ONLINE on a fresh heartbeat with node.online, reason heartbeat, statusVersion one higher', () => {
      const stored = offline(registeredNode('node-1'), T0 + 2 * MINUTE);

      const { outcome, node, events } = apply(stored, heartbeat('node-1', { deliveredAt: T0 + 3 * MINUTE }));

      expect(outcome).to.include(applied);
      expect(node).to.deep.include({ status: 'ONLINE', statusVersion: 3 });
      expect(node!.statusChangedAt).to.deep.equal(new Date(T0 + 3 * MINUTE));
      expect(events).to.have.length(1);
      expect(events[0]).to.deep.include({
        type: 'node.online',
        status: 'ONLINE',
        previousStatus: 'OFFLINE',
        statusVersion: 3,
        reason: 'heartbeat',
        lastHeartbeat: iso(T0 + 3 * MINUTE),
      });
    });

    it('publishes nothing for a heartbeat of a node that is already ONLINE', () => {
      const { events, node } = apply(registeredNode('node-1'), heartbeat('node-1', { deliveredAt: T0 + 10_000 }));

      expect(events).to.deep.equal([]);
      expect(node!.statusVersion).to.equal(1);
    });

    it('never revives an OFFLINE node with a heartbeat the api received longer than the timeout ago', () => {
      const stored = offline(registeredNode('node-1'), T0 + 2 * MINUTE);
      const now = T0 + 10 * MINUTE;

      const { outcome, node, events } = apply(stored, heartbeat('node-1', { receivedAt: now - TIMEOUT - 1000, deliveredAt: now - 5 }), now);

      expect(outcome).to.deep.include({ kind: 'late' });
      expect(node).to.deep.include({ status: 'OFFLINE', statusVersion: 2 });
      expect(node!.lastHeartbeat).to.deep.equal(stored.lastHeartbeat);
      expect(events).to.deep.equal([]);
    });

    for (const [clock, offset] of [
      ['in step', 0],
      ['10 minutes ahead', 10 * MINUTE],
      ['10 minutes behind', -10 * MINUTE],
    ] as const) {
      it(`never revives an OFFLINE node with a heartbeat that sat in a broker backlog longer than the timeout (agent clock ${clock})`, () => {
        const stored = offline(registeredNode('node-1', offset), T0 + 2 * MINUTE);
        const sent = T0 + 30_000;
        const delivered = sent + TIMEOUT + 5000;

        const { outcome, node, events, draft } = apply(stored, heartbeat('node-1', { deliveredAt: delivered, agentTime: sent + offset }));

        expect(outcome).to.deep.include({ kind: 'late' });
        expect((outcome as { ageMs: number }).ageMs).to.be.closeTo(TIMEOUT + 5000, 10);
        expect(node).to.deep.include({ status: 'OFFLINE', statusVersion: 2 });
        expect(node!.lastHeartbeat).to.deep.equal(stored.lastHeartbeat);
        expect(events).to.deep.equal([]);
        expect(draft.askReregister, 'the agent is asked to re-register to reset its baseline').to.equal(true);
      });

      it(`treats a live agent whose clock is ${clock} like any other: not late, ONLINE, OFFLINE -> ONLINE on time`, () => {
        let stored = registeredNode('node-1', offset);
        for (let beat = 1; beat <= 30; beat++) {
          const delivered = T0 + beat * 10_000;
          const { outcome, draft } = apply(stored, heartbeat('node-1', { deliveredAt: delivered - 15, agentTime: delivered - 15 - 40 + offset }), delivered);
          expect(outcome, `beat ${beat}`).to.include(applied);
          expect(draft.node!.lastHeartbeat).to.deep.equal(new Date(delivered - 15));
          stored = persisted(draft);
        }
        stored = offline(stored, T0 + 10 * MINUTE);

        const revived = apply(stored, heartbeat('node-1', { deliveredAt: T0 + 11 * MINUTE, agentTime: T0 + 11 * MINUTE + offset }));

        expect(revived.outcome).to.include(applied);
        expect(revived.node!.status).to.equal('ONLINE');
        expect(revived.events.map((e) => e.reason)).to.deep.equal(['heartbeat']);
      });
    }

    it('takes the first heartbeat as the clock baseline when the node registered over HTTP', () => {
      const stored = persisted(apply(null, register('node-1', { receivedAt: T0, deliveredAt: T0 })).draft);
      expect(stored.clockSkewMs).to.equal(null);

      const first = apply(stored, heartbeat('node-1', { deliveredAt: T0 + 10_000, agentTime: T0 + 10_000 - 10 * MINUTE }));

      expect(first.outcome).to.include(applied);
      expect(first.node!.clockSkewMs).to.equal(10 * MINUTE);
    });

    for (const order of ['newer first', 'older first'] as const) {
      it(`keeps the newest stats of a batch whatever order its heartbeats come in (${order})`, () => {
        const draft = newDraft(registeredNode('node-1'));
        const newer = heartbeat('node-1', { deliveredAt: T0 + 20_000 }, { cpuUsage: 90 });
        const older = heartbeat('node-1', { deliveredAt: T0 + 20_001, agentTime: T0 + 10_000 }, { cpuUsage: 5 });

        for (const received of order === 'newer first' ? [newer, older] : [older, newer]) applyMessage(draft, received, context(T0 + 20_010));

        expect(draft.node!.stats).to.deep.include({ cpuUsage: 90, reportedAt: new Date(T0 + 20_000) });
        expect(draft.node!.lastHeartbeat).to.deep.equal(new Date(T0 + 20_001));
      });
    }

    it('never lets a late heartbeat overwrite newer stats or move lastHeartbeat', () => {
      const fresh = apply(registeredNode('node-1'), heartbeat('node-1', { deliveredAt: T0 + 5 * MINUTE }, { cpuUsage: 90 }));
      const stored = persisted(fresh.draft);

      const late = apply(stored, heartbeat('node-1', { deliveredAt: T0 + 5 * MINUTE + 100, agentTime: T0 + 30_000 }, { cpuUsage: 5 }));

      expect(late.outcome).to.deep.include({ kind: 'late' });
      expect(late.node!.stats).to.deep.include({ cpuUsage: 90 });
      expect(late.node!.lastHeartbeat).to.deep.equal(new Date(T0 + 5 * MINUTE));
    });

    it('answers unknown-node for a node the store does not hold and asks the agent to re-register', () => {
      const { outcome, node, events, draft } = apply(null, heartbeat('ghost', { deliveredAt: T0 }));

      expect(outcome).to.deep.equal({ kind: 'unknown-node' });
      expect(node).to.equal(null);
      expect(events).to.deep.equal([]);
      expect(draft.askReregister).to.equal(true);
      expect(draftToWrite(draft), 'nothing is written').to.equal(null);
    });
  });

  describe('shutdown', () => {
    it('marks an ONLINE node OFFLINE at once with node.offline, reason shutdown', () => {
      const { outcome, node, events } = apply(registeredNode('node-1'), shutdown('node-1', { deliveredAt: T0 + 30_000 }));

      expect(outcome).to.include(applied);
      expect(node).to.deep.include({ status: 'OFFLINE', statusVersion: 2 });
      expect(events).to.have.length(1);
      expect(events[0]).to.deep.include({ type: 'node.offline', status: 'OFFLINE', previousStatus: 'ONLINE', statusVersion: 2, reason: 'shutdown' });
    });

    it('publishes nothing for a node that is already OFFLINE', () => {
      const { node, events } = apply(offline(registeredNode('node-1'), T0 + 2 * MINUTE), shutdown('node-1', { deliveredAt: T0 + 3 * MINUTE }));

      expect(node).to.deep.include({ status: 'OFFLINE', statusVersion: 2 });
      expect(events).to.deep.equal([]);
    });

    it('answers unknown-node for a node the store does not hold', () => {
      expect(apply(null, shutdown('ghost', { deliveredAt: T0 })).outcome).to.deep.equal({ kind: 'unknown-node' });
    });
  });

  describe('stats history', () => {
    const history = { points: 4, resolutionMs: 30_000 };

    it('gives each applied heartbeat a sparkline point at its receive time', () => {
      let stored = registeredNode('node-1');
      for (let beat = 1; beat <= 3; beat++) {
        const at = T0 + beat * 10_000;
        const { draft } = apply(stored, heartbeat('node-1', { deliveredAt: at }, { cpuUsage: beat, memoryUsage: 100 - beat }), at, history);
        const write = draftToWrite(draft)!;
        expect(write.kind).to.equal('update');
        if (write.kind === 'update') expect(write.historyPoint).to.deep.equal({ t: new Date(at), cpu: beat, mem: 100 - beat });
        stored = persisted(draft);
      }
    });

    it('keeps the newest point of the messages applied to one draft', () => {
      const draft = newDraft(registeredNode('node-1'));
      const ctx = context(T0 + 20_000, history);
      applyMessage(draft, heartbeat('node-1', { deliveredAt: T0 + 20_000 }, { cpuUsage: 2 }), ctx);
      applyMessage(draft, heartbeat('node-1', { deliveredAt: T0 + 10_000 }, { cpuUsage: 1 }), ctx);

      expect(draft.historyPoint).to.deep.include({ t: new Date(T0 + 20_000), cpu: 2 });
    });

    it('adds no point for a late heartbeat', () => {
      const stored = registeredNode('node-1');

      const { draft } = apply(stored, heartbeat('node-1', { deliveredAt: T0 + 5 * MINUTE, agentTime: T0 + 10_000 }), T0 + 5 * MINUTE, history);

      expect(draft.historyPoint).to.equal(null);
    });

    it('keeps no history when configured with zero points', () => {
      const { draft } = apply(registeredNode('node-1'), heartbeat('node-1', { deliveredAt: T0 + 10_000 }), T0 + 10_000, { points: 0, resolutionMs: 0 });

      expect(draft.historyPoint).to.equal(null);
    });
  });
});

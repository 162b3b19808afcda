import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type { Delivery } from '../../shared/bus/bus.js';
import { HEADERS, ROUTING } from '../../shared/topology.js';
import { eventually, requireServices } from '../support/services.js';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';

async function post(url: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const res = await fetch(url, { method: 'POST', headers, body });
  return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, unknown> | null };
}

/** The stored nodes as clients see them (the outbox is the publisher's bookkeeping, drained meanwhile). */
function snapshot(h: Harness) {
  return h.store.list().then((nodes) => JSON.stringify(nodes.map(({ outbox, ...node }) => (void outbox, node))));
}

describe('refusals and unknown nodes @int', function () {
  this.timeout(30000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness;
  beforeEach(async () => {
    // A long timeout: these tests compare stored nodes before and after, so no sweep may change them.
    h = await startOrchestrator({ env: { TIMEOUT_MINUTES: '1' } });
    await h.publishAgent('agent.register', 'node-1', registerBody('node-1'));
    await h.publishAgent('agent.heartbeat', 'node-1', statsBody());
    await eventually(async () => (await h.store.get('node-1'))?.stats);
  });
  afterEach(async () => {
    await h?.stop();
  });

  it('answers 4xx over HTTP to malformed, mistyped, out-of-range, injected and oversized input, keeps serving, and changes no node', async () => {
    const before = await snapshot(h);
    const stats = `${h.url}/api/nodes/node-1/stats`;
    const register = `${h.url}/api/nodes/register`;
    const cases: Array<[string, string, string, number]> = [
      ['malformed JSON', stats, '{"cpuUsage": 12,', 400],
      ['wrong types', stats, JSON.stringify({ ...statsBody(), cpuUsage: 'high' }), 400],
      ['out-of-range usage', stats, JSON.stringify({ ...statsBody(), memoryUsage: 140 }), 400],
      ['negative container count', stats, JSON.stringify({ ...statsBody(), containerCount: -1 }), 400],
      ['fractional container count', stats, JSON.stringify({ ...statsBody(), containerCount: 1.5 }), 400],
      ['operator injection as nodeId', register, JSON.stringify({ ...registerBody('x'), nodeId: { $gt: '' } }), 400],
      ['operator injection in a stat', stats, JSON.stringify({ ...statsBody(), cpuUsage: { $gt: 0 } }), 400],
      ['unknown field', stats, JSON.stringify({ ...statsBody(), $set: { status: 'OFFLINE' } }), 400],
      ['array body', stats, '[1,2,3]', 400],
      ['1 MiB body', stats, JSON.stringify({ ...statsBody(), pad: 'x'.repeat(1024 * 1024) }), 413],
    ];
    for (const [label, url, body, status] of cases) {
      const res = await post(url, body);
      expect(res.status, label).to.equal(status);
      expect(res.body, label).to.have.property('error');
    }
    const injectedPath = await post(`${h.url}/api/nodes/${encodeURIComponent('{"$gt":""}')}/stats`, JSON.stringify(statsBody()));
    expect(injectedPath.status).to.equal(400);
    const invalid = await post(stats, JSON.stringify({ ...statsBody(), cpuUsage: 'high', diskUsage: 101 }));
    expect(invalid.body!.invalid).to.include.members(['cpuUsage', 'diskUsage']);
    // Still serving, and nothing changed.
    expect((await fetch(`${h.url}/healthz`)).status).to.equal(200);
    await new Promise((r) => setTimeout(r, 300));
    expect(await snapshot(h)).to.equal(before);
  });

  it('dead-letters bad AMQP messages with the reason, keeps consuming, and changes no node', async () => {
    const before = await snapshot(h);
    const dead: Delivery[] = [];
    const consumer = await h.bus.consume(
      h.names.queues.deadLetter,
      (d) => {
        dead.push(d);
        d.ack();
      },
      { prefetch: 100 },
    );
    const raw = (key: string, body: string) => h.bus.publish(h.names.exchanges.agentInbound, key, Buffer.from(body), { messageId: randomUUID() });
    const envelope = (over: Record<string, unknown>) =>
      JSON.stringify({ id: randomUUID(), type: 'agent.heartbeat', version: 1, sentAt: new Date().toISOString(), nodeId: 'node-1', payload: statsBody(), ...over });
    await raw(ROUTING.heartbeat('node-1'), '{not json');
    await raw(ROUTING.heartbeat('node-1'), envelope({ payload: { ...statsBody(), cpuUsage: 'high' } }));
    await raw(ROUTING.heartbeat('node-1'), envelope({ payload: { ...statsBody(), diskUsage: 250 } }));
    await raw(ROUTING.heartbeat('node-1'), envelope({ nodeId: { $gt: '' } }));
    await raw(ROUTING.heartbeat('node-2'), envelope({})); // routing key names another node
    await raw(ROUTING.heartbeat('node-1'), envelope({ payload: { ...statsBody(), pad: 'x'.repeat(1024 * 1024) } }));
    await raw(ROUTING.heartbeat('ghost'), envelope({ nodeId: 'ghost' })); // unknown node
    await eventually(() => dead.length === 7, 5000);
    // The dead letters of one batch are published concurrently: their order is not promised.
    const reasons = dead.map((d) => String(d.headers[HEADERS.refusalReason]));
    expect(reasons).to.include('malformed JSON');
    expect(reasons.some((r) => r.includes('cpuUsage'))).to.equal(true);
    expect(reasons.some((r) => r.includes('diskUsage'))).to.equal(true);
    expect(reasons.some((r) => r.includes('nodeId'))).to.equal(true);
    expect(reasons.some((r) => r.includes('routing key'))).to.equal(true);
    expect(reasons.some((r) => r.includes('too large'))).to.equal(true);
    expect(reasons.some((r) => r.includes('unknown node'))).to.equal(true);
    await consumer.cancel();
    // Still consuming: a valid heartbeat goes through.
    await h.publishAgent('agent.heartbeat', 'node-1', statsBody({ cpuUsage: 33 }));
    await eventually(async () => (await h.store.get('node-1'))!.stats!.cpuUsage === 33);
    const after = JSON.parse(await snapshot(h)) as Array<Record<string, unknown>>;
    const original = JSON.parse(before) as Array<Record<string, unknown>>;
    expect(after.map((n) => n.nodeId)).to.deep.equal(original.map((n) => n.nodeId));
  });

  it('answers 404 over HTTP for a heartbeat of an unknown node', async () => {
    const res = await post(`${h.url}/api/nodes/never-registered/stats`, JSON.stringify(statsBody()));
    expect(res.status).to.equal(404);
    expect(await h.store.get('never-registered')).to.equal(null);
  });

  it('asks an AMQP agent it does not know to re-register, and the node is ONLINE once it does', async () => {
    const control = `${h.namespace}.control.forgotten`;
    await h.bus.declareQueue({
      name: control,
      exclusive: true,
      autoDelete: true,
      bindings: [{ exchange: h.names.exchanges.agentControl, routingKey: ROUTING.control('forgotten') }],
    });
    const requests: Array<Record<string, unknown>> = [];
    const consumer = await h.bus.consume(
      control,
      (d) => {
        requests.push(JSON.parse(d.body.toString()) as Record<string, unknown>);
        d.ack();
        // The test plays the agent: re-register on request.
        void h.publishAgent('agent.register', 'forgotten', registerBody('forgotten'));
      },
      { prefetch: 10 },
    );
    await h.publishAgent('agent.heartbeat', 'forgotten', statsBody());
    await eventually(async () => (await h.store.get('forgotten'))?.status === 'ONLINE', 5000);
    expect(requests[0]).to.include({ type: 'control.reregister', nodeId: 'forgotten' });
    await consumer.cancel();
    await h.bus.deleteQueue(control).catch(() => undefined);
  });
});

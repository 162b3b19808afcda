import { expect } from 'chai';
import { BusUnavailableError, type Bus } from '../../shared/bus/bus.js';
import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import { createEventPublisher } from '../../shared/events/event-publisher.js';
import { createMemoryLogger } from '../../shared/logger.js';
import type { NodeEvent } from '../../shared/messages/index.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import type { NodeStore, OutboxRemoval } from '../../shared/store/node-store.js';
import { at, insert, nodeEventFor, nodeRecord } from '../contract/node-fixtures.js';

/** A publish waiting for its confirm, settled by the test. */
interface Pending {
  event: NodeEvent;
  confirm(): void;
  refuse(): void;
}

/** A bus whose confirms the test hands out one by one, and a store that records its outbox clears. */
async function setup() {
  const sent: Pending[] = [];
  const bus: Bus = {
    ...createMemoryBus(),
    publish(_exchange, _routingKey, body) {
      return new Promise<void>((resolve, reject) => {
        sent.push({ event: body as NodeEvent, confirm: resolve, refuse: () => reject(new BusUnavailableError('broker refused the message (test)')) });
      });
    },
  };
  const memory = createMemoryNodeStore({ historyPoints: 10 });
  const clears: OutboxRemoval[][] = [];
  const store: NodeStore = {
    ...memory,
    async removeFromOutbox(entries) {
      clears.push(entries);
      return memory.removeFromOutbox(entries);
    },
  };
  const events = createEventPublisher({ bus, store, exchange: 'node.events', log: createMemoryLogger('debug') });
  return { sent, store: memory, clears, events };
}

/** Lets the publisher's promise chains run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

const versions = (pending: Pending[]) => pending.map((p) => `${p.event.nodeId}@${p.event.statusVersion}`);

describe('event publisher', () => {
  it('sends the first event of every node at once, and the next event of a node only after its previous one was confirmed', async () => {
    const { sent, events } = await setup();
    const [a2, a3, b2] = [nodeEventFor('a', 2), nodeEventFor('a', 3), nodeEventFor('b', 2)];

    const done = events.publishMany([
      { nodeId: 'a', events: [a3, a2] },
      { nodeId: 'b', events: [b2] },
    ]);
    await settle();
    const atOnce = versions(sent);
    sent[1]!.confirm(); // b@2
    await settle();
    const afterB = versions(sent);
    sent[0]!.confirm(); // a@2
    await settle();
    sent[2]!.confirm(); // a@3
    const outcome = await done;

    expect(atOnce).to.deep.equal(['a@2', 'b@2']);
    expect(afterB, "b's confirm does not release a's next event").to.deep.equal(['a@2', 'b@2']);
    expect(versions(sent)).to.deep.equal(['a@2', 'b@2', 'a@3']);
    expect(outcome).to.deep.equal({ published: ['a', 'b'], failed: [], events: 3 });
  });

  it("leaves a refused event and its node's later events in the outbox, and clears what was confirmed in one bulk write", async () => {
    const { sent, store, clears, events } = await setup();
    const [a2, a3, b2, c2] = [nodeEventFor('a', 2), nodeEventFor('a', 3), nodeEventFor('b', 2), nodeEventFor('c', 2)];
    await store.write([insert(nodeRecord('a', { outbox: [a2, a3] })), insert(nodeRecord('b', { outbox: [b2] })), insert(nodeRecord('c', { outbox: [c2] }))]);

    const done = events.publishMany([
      { nodeId: 'a', events: [a2, a3] },
      { nodeId: 'b', events: [b2] },
      { nodeId: 'c', events: [c2] },
    ]);
    await settle();
    sent[0]!.confirm(); // a@2
    sent[1]!.refuse(); // b@2
    sent[2]!.confirm(); // c@2
    await settle();
    sent[3]!.refuse(); // a@3
    const outcome = await done;

    expect(outcome.published).to.deep.equal(['c']);
    expect(outcome.failed.map((f) => f.nodeId)).to.deep.equal(['a', 'b']);
    expect(outcome.failed[0]!.error).to.be.instanceOf(BusUnavailableError);
    expect(outcome.events).to.equal(2);
    expect(clears).to.have.length(1);
    expect(clears[0]!.map((c) => [c.nodeId, c.events.map((e) => e.statusVersion)])).to.deep.equal([
      ['a', [2]],
      ['c', [2]],
    ]);
    expect((await store.get('a'))!.outbox).to.deep.equal([a3]);
    expect((await store.get('b'))!.outbox).to.deep.equal([b2]);
    expect((await store.get('c'))!.outbox).to.deep.equal([]);
  });

  it('drains only the events past their grace period, all nodes at once, and says what it left', async () => {
    const { sent, store, clears, events } = await setup();
    const old = (nodeId: string) => nodeEventFor(nodeId, 2, { occurredAt: at(0).toISOString() });
    const young = nodeEventFor('c', 3, { occurredAt: at(4000).toISOString() });
    const [a2, b2, c2] = [old('a'), old('b'), old('c')];
    await store.write([
      insert(nodeRecord('a', { outbox: [a2] })),
      insert(nodeRecord('b', { outbox: [b2] })),
      insert(nodeRecord('c', { outbox: [c2, young] })),
      insert(nodeRecord('d')),
    ]);

    const done = events.drain(10, 5000, at(5000).getTime());
    await settle();
    const inFlight = versions(sent).sort();
    for (const p of sent) p.confirm();
    const outcome = await done;

    expect(inFlight).to.deep.equal(['a@2', 'b@2', 'c@2']);
    expect(outcome).to.deep.include({ events: 3, notDue: 1, nextDueAt: at(9000).getTime(), more: false });
    expect(clears).to.have.length(1);
    expect((await store.get('c'))!.outbox).to.deep.equal([young]);
  });
});

import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { topicMatches } from '../shared/bus/topic-match.js';
import { brokerNames, EXCHANGES, INGEST_DELIVERY_LIMIT, QUEUES, ROUTING, topology } from '../shared/topology.js';

interface Definitions {
  vhosts: { name: string }[];
  exchanges: { name: string; vhost: string; type: string; durable: boolean; auto_delete: boolean; internal: boolean; arguments: Record<string, unknown> }[];
  queues: { name: string; vhost: string; durable: boolean; auto_delete: boolean; arguments: Record<string, unknown> }[];
  bindings: { source: string; vhost: string; destination: string; destination_type: string; routing_key: string; arguments: Record<string, unknown> }[];
  users?: unknown;
}

const definitions = JSON.parse(readFileSync(new URL('../rabbitmq/definitions.json', import.meta.url), 'utf8')) as Definitions;
const expected = topology(brokerNames());

/** One comparable line per entity, so both directions are a plain set difference. */
const exchangeKey = (e: { name: string; type: string; durable: boolean }) => JSON.stringify([e.name, e.type, e.durable]);
const queueKey = (q: { name: string; durable: boolean; arguments: Record<string, unknown> }) =>
  JSON.stringify([q.name, q.durable, Object.entries(q.arguments).sort(([a], [b]) => a.localeCompare(b))]);
const bindingKey = (b: { source: string; destination: string; routingKey: string }) => JSON.stringify([b.source, b.destination, b.routingKey]);

function missing(from: string[], inside: string[]): string[] {
  return from.filter((item) => !inside.includes(item));
}

describe('rabbitmq/definitions.json', () => {
  it('declares the one vhost "/" and no users (they come from the compose environment)', () => {
    expect(definitions.vhosts.map((v) => v.name)).to.deep.equal(['/']);
    expect(definitions.users).to.equal(undefined);
    const vhosts = [...definitions.exchanges, ...definitions.queues, ...definitions.bindings].map((item) => item.vhost);
    expect(new Set(vhosts)).to.deep.equal(new Set(['/']));
  });

  it('declares exactly the exchanges of topology(), with the same type and durability', () => {
    const declared = definitions.exchanges.map(exchangeKey);
    const wanted = expected.exchanges.map(exchangeKey);
    expect(missing(wanted, declared), 'in topology() but not in definitions.json').to.deep.equal([]);
    expect(missing(declared, wanted), 'in definitions.json but not in topology()').to.deep.equal([]);
    for (const exchange of definitions.exchanges) {
      expect(exchange, exchange.name).to.include({ auto_delete: false, internal: false });
      expect(exchange.arguments, exchange.name).to.deep.equal({});
    }
  });

  it('declares exactly the queues of topology(), with the same durability and arguments', () => {
    const declared = definitions.queues.map(queueKey);
    const wanted = expected.queues.map(queueKey);
    expect(missing(wanted, declared), 'in topology() but not in definitions.json').to.deep.equal([]);
    expect(missing(declared, wanted), 'in definitions.json but not in topology()').to.deep.equal([]);
    for (const queue of definitions.queues) expect(queue.auto_delete, queue.name).to.equal(false);
  });

  it('declares exactly the bindings of topology(), all to queues', () => {
    const declared = definitions.bindings.map((b) => bindingKey({ source: b.source, destination: b.destination, routingKey: b.routing_key }));
    const wanted = expected.bindings.map(bindingKey);
    expect(missing(wanted, declared), 'in topology() but not in definitions.json').to.deep.equal([]);
    expect(missing(declared, wanted), 'in definitions.json but not in topology()').to.deep.equal([]);
    for (const binding of definitions.bindings) {
      expect(binding.destination_type).to.equal('queue');
      expect(binding.arguments).to.deep.equal({});
    }
  });

  it('has no duplicate exchange, queue or binding', () => {
    for (const keys of [definitions.exchanges.map((e) => e.name), definitions.queues.map((q) => q.name)]) {
      expect(new Set(keys).size).to.equal(keys.length);
    }
    const bindings = definitions.bindings.map((b) => `${b.source}|${b.destination}|${b.routing_key}`);
    expect(new Set(bindings).size).to.equal(bindings.length);
  });

  it('routes every dead letter of the ingest queue to a declared exchange bound to the dead-letter queue', () => {
    const ingest = definitions.queues.find((q) => q.name === QUEUES.ingest);
    const dlx = ingest?.arguments['x-dead-letter-exchange'];
    expect(definitions.exchanges.map((e) => e.name)).to.include(dlx);
    expect(definitions.bindings.some((b) => b.source === dlx && b.destination === QUEUES.deadLetter)).to.equal(true);
  });

  it('declares the ingest queue as a durable quorum queue whose delivery limit dead-letters, at least once, into the dead-letter queue', () => {
    const ingest = definitions.queues.find((q) => q.name === QUEUES.ingest)!;
    expect(ingest).to.include({ durable: true, auto_delete: false });
    expect(ingest.arguments).to.include({ 'x-queue-type': 'quorum', 'x-delivery-limit': INGEST_DELIVERY_LIMIT, 'x-dead-letter-exchange': EXCHANGES.deadLetter });
    expect(Number.isInteger(INGEST_DELIVERY_LIMIT) && INGEST_DELIVERY_LIMIT >= 1, 'a whole number of redeliveries').to.equal(true);
    // RabbitMQ falls back to at-most-once dead-lettering unless the source queue also rejects publishes when full.
    expect(ingest.arguments).to.include({ 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' });
    // reject-publish must never refuse an agent's heartbeat: no length limit on the ingest queue.
    expect(ingest.arguments).not.to.have.any.keys('x-max-length', 'x-max-length-bytes');
  });

  it('gives its quorum queues only what quorum queues accept on RabbitMQ 3.10 (durable, not auto-deleted, their own arguments)', () => {
    const quorumArguments = [
      'x-queue-type',
      'x-delivery-limit',
      'x-dead-letter-exchange',
      'x-dead-letter-routing-key',
      'x-dead-letter-strategy',
      'x-overflow',
      'x-max-length',
      'x-max-length-bytes',
      'x-message-ttl',
      'x-expires',
      'x-max-in-memory-length',
      'x-max-in-memory-bytes',
      'x-quorum-initial-group-size',
      'x-single-active-consumer',
    ];
    const quorum = definitions.queues.filter((q) => q.arguments['x-queue-type'] === 'quorum');
    expect(quorum.map((q) => q.name)).to.include(QUEUES.ingest);
    for (const queue of quorum) {
      expect(queue, queue.name).to.include({ durable: true, auto_delete: false });
      expect(
        Object.keys(queue.arguments).filter((key) => !quorumArguments.includes(key)),
        queue.name,
      ).to.deep.equal([]);
      // reject-publish-dlx is a classic queues' overflow mode.
      if ('x-overflow' in queue.arguments) expect(['drop-head', 'reject-publish'], queue.name).to.include(queue.arguments['x-overflow']);
    }
  });

  it('declares node.events as a durable topic exchange (docs/reference.md)', () => {
    expect(definitions.exchanges.find((e) => e.name === 'node.events')).to.include({ type: 'topic', durable: true });
    expect(EXCHANGES.nodeEvents).to.equal('node.events');
  });
});

describe('routing keys', () => {
  const ingestBindings = expected.bindings.filter((b) => b.source === EXCHANGES.agentInbound && b.destination === QUEUES.ingest);
  const reachesIngest = (key: string) => ingestBindings.some((b) => topicMatches(b.routingKey, key));

  for (const nodeId of ['node-1', 'node.a-1', 'a.b.c_d', 'x'.repeat(64)]) {
    it(`routes register, heartbeat and shutdown of node "${nodeId.length > 20 ? `${nodeId.slice(0, 8)}…` : nodeId}" to the ingest queue`, () => {
      expect(reachesIngest(ROUTING.register(nodeId)), 'register').to.equal(true);
      expect(reachesIngest(ROUTING.heartbeat(nodeId)), 'heartbeat').to.equal(true);
      expect(reachesIngest(ROUTING.shutdown(nodeId)), 'shutdown').to.equal(true);
    });
  }

  it('keeps control messages and node events out of the ingest queue', () => {
    for (const key of [ROUTING.control('node.a-1'), ROUTING.nodeRegistered, ROUTING.nodeOnline, ROUTING.nodeOffline, ROUTING.clusterDegraded]) {
      expect(reachesIngest(key), key).to.equal(false);
    }
  });

  it("routes the agent preflight's probe publish nowhere, so the broker confirms and drops it", () => {
    const inboundBindings = expected.bindings.filter((b) => b.source === EXCHANGES.agentInbound);
    for (const nodeId of ['node-1', 'node.a-1', 'x'.repeat(64)]) {
      expect(
        inboundBindings.some((b) => topicMatches(b.routingKey, ROUTING.preflight(nodeId))),
        nodeId,
      ).to.equal(false);
    }
  });

  it('lets a subscriber bind node.offline alone', () => {
    expect(topicMatches(ROUTING.nodeOffline, ROUTING.nodeOffline)).to.equal(true);
    expect(topicMatches(ROUTING.nodeOffline, ROUTING.nodeOnline)).to.equal(false);
    expect(topicMatches('node.*', ROUTING.nodeRegistered)).to.equal(true);
  });

  it('addresses one agent with its control key even when node ids share a prefix', () => {
    expect(topicMatches(ROUTING.control('node.a'), ROUTING.control('node.a'))).to.equal(true);
    expect(topicMatches(ROUTING.control('node.a'), ROUTING.control('node.a.b'))).to.equal(false);
    expect(topicMatches(ROUTING.control('node'), ROUTING.control('node.a'))).to.equal(false);
  });
});

describe('topicMatches (the in-memory bus routes with it)', () => {
  const cases: [string, string, boolean][] = [
    ['a.b', 'a.b', true],
    ['a.b', 'a.c', false],
    ['a.*', 'a.b', true],
    ['a.*', 'a', false],
    ['a.*', 'a.b.c', false],
    ['a.#', 'a', true],
    ['a.#', 'a.b.c', true],
    ['a.#', 'b.a', false],
    ['#', '', true],
    ['#', 'a.b.c', true],
    ['#.c', 'a.b.c', true],
    ['#.c', 'a.b.d', false],
    ['a.#.d', 'a.d', true],
    ['a.#.d', 'a.b.c.d', true],
    ['*.#', 'a', true],
    ['*.*', 'a', false],
    ['a.*.#.z', 'a.b.z', true],
    ['a.*.#.z', 'a.z', false],
  ];
  for (const [pattern, key, matches] of cases) {
    it(`${matches ? 'matches' : 'does not match'} "${key}" with "${pattern}"`, () => {
      expect(topicMatches(pattern, key)).to.equal(matches);
    });
  }
});

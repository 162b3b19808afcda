import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import fc from 'fast-check';
import { formatJoinAuth, generateCredential } from '../../shared/auth/credentials.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { ROUTING } from '../../shared/topology.js';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';
import { eventually, requireServices } from '../support/services.js';
import { hostileBody, hostileValue, mutatedBody, withKey } from './hostile-inputs.js';
import { JOIN_TOKEN, readDeadLetters, snapshotNodes } from './support.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 5000);
const NODES = ['amqp-fuzz-a', 'amqp-fuzz-b', '__proto__', 'constructor'];
const TYPES = ['agent.register', 'agent.heartbeat', 'agent.shutdown'] as const;
type Type = (typeof TYPES)[number];
const ENVELOPE_KEYS = ['id', 'version', 'sentAt', 'nodeId', 'type', 'payload', 'auth', 'receivedAt'];
const REQUIRED = ['id', 'version', 'sentAt', 'nodeId', 'type', 'payload'];

interface Message {
  kind: string;
  routingKey: string;
  body: Buffer;
}

const routeOf = (type: Type, nodeId: string) =>
  type === 'agent.register' ? ROUTING.register(nodeId) : type === 'agent.heartbeat' ? ROUTING.heartbeat(nodeId) : ROUTING.shutdown(nodeId);

describe('hostile input over AMQP (fuzz) @int', function () {
  this.timeout(180_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  const log = createMemoryLogger('info');
  let h: Harness;
  const credentials = new Map<string, string>();

  const payloadOf = (type: Type, nodeId: string): Record<string, unknown> =>
    type === 'agent.register' ? registerBody(nodeId) : type === 'agent.heartbeat' ? statsBody() : { reason: 'maintenance' };
  /** A message the ingest would apply: the base every hostile one is made from. */
  function validMessage(type: Type, nodeId: string): Record<string, unknown> {
    const credential = credentials.get(nodeId)!;
    return {
      id: randomUUID(),
      version: 1,
      sentAt: new Date().toISOString(),
      nodeId,
      type,
      payload: payloadOf(type, nodeId),
      auth: type === 'agent.register' ? formatJoinAuth(JOIN_TOKEN, nodeId, credential) : credential,
    };
  }

  before(async () => {
    h = await startOrchestrator({ auth: { joinToken: JOIN_TOKEN }, sweepers: 0, env: { TIMEOUT_MINUTES: '10' }, log });
    for (const nodeId of NODES) {
      credentials.set(nodeId, generateCredential());
      const register = validMessage('agent.register', nodeId);
      await h.bus.publish(h.names.exchanges.agentInbound, ROUTING.register(nodeId), register);
      await eventually(async () => (await h.store.get(nodeId))?.credentialHash);
      await h.bus.publish(h.names.exchanges.agentInbound, ROUTING.heartbeat(nodeId), validMessage('agent.heartbeat', nodeId));
    }
    // Settled: stats stored and the registration events published (their outbox emptied), so that only the fuzz could change a node.
    await eventually(async () => {
      const nodes = await h.store.list();
      return nodes.filter((n) => n.stats && n.outbox.length === 0).length === NODES.length;
    }, 10_000);
  });
  after(async () => {
    await h?.stop();
  });

  function messages(): fc.Arbitrary<Message> {
    const node = fc.constantFrom(...NODES);
    const type = fc.constantFrom(...TYPES);
    const base = fc.tuple(type, node).map(([t, id]) => validMessage(t, id));
    const message = (kind: string, t: Type, id: string, body: string | Uint8Array | object): Message => ({
      kind,
      routingKey: routeOf(t, id),
      body: typeof body === 'string' ? Buffer.from(body, 'utf8') : body instanceof Uint8Array ? Buffer.from(body) : Buffer.from(JSON.stringify(body)),
    });
    const PAYLOAD_KEYS: Record<Type, string[]> = {
      'agent.register': ['nodeId', 'hostname', 'ipAddress', 'maxServers'],
      'agent.heartbeat': ['cpuUsage', 'memoryUsage', 'diskUsage', 'containerCount', 'timestamp'],
      'agent.shutdown': ['reason'],
    };
    const hostileAuth = fc.oneof(
      fc.string({ maxLength: 512 }),
      fc.constant(generateCredential()),
      node.map((id) => credentials.get(id)!),
      fc.tuple(node, node).map(([a, b]) => formatJoinAuth('not-the-join-token-0123', a, credentials.get(b)!)),
      fc.tuple(node).map(([a]) => `${credentials.get(a)}.${credentials.get(a)}`),
    );

    return fc.oneof(
      // A valid envelope around a hostile payload.
      fc.tuple(type, node).chain(([t, id]) =>
        hostileBody(mutatedBody(fc.constant(payloadOf(t, id)), PAYLOAD_KEYS[t], t === 'agent.shutdown' ? [] : PAYLOAD_KEYS[t]), fc.constant(payloadOf(t, id))).map((payload) => {
          const text = JSON.stringify({ ...validMessage(t, id), payload: '\u0000' }).replace('"\\u0000"', typeof payload === 'string' ? payload : '"bytes"');
          return message('payload', t, id, text);
        }),
      ),
      // A hostile envelope: a field replaced, an unknown or polluting key, a field missing, or wrapped.
      fc.tuple(base, mutatedBody(base, ENVELOPE_KEYS, REQUIRED)).map(([b, m]) => message('envelope', b.type as Type, b.nodeId as string, m)),
      fc
        .tuple(type, node, fc.constantFrom(...ENVELOPE_KEYS), hostileValue)
        .map(([t, id, key, value]) => message('envelope field', t, id, withKey(validMessage(t, id), key, value))),
      // Bytes that are no message at all: malformed, binary, oversized, deeply nested.
      fc.tuple(type, node).chain(([t, id]) => hostileBody(fc.constant([]), fc.constant(validMessage(t, id))).map((body) => message('raw', t, id, body))),
      // A well-formed message with a missing, wrong or other node's credential.
      fc
        .tuple(type, node, fc.option(hostileAuth, { nil: undefined }))
        .filter(([t, id, auth]) => auth !== validMessage(t, id).auth)
        .map(([t, id, auth]) => {
          const m = validMessage(t, id);
          if (auth === undefined) delete m.auth;
          else m.auth = auth;
          return message('auth', t, id, m);
        }),
      // A well-formed, authenticated message on another node's or type's routing key.
      fc
        .tuple(type, node, type, node, fc.constantFrom('', '.extra', '.#'))
        .filter(([t, id, t2, id2]) => t !== t2 || id !== id2)
        .map(([t, id, t2, id2, suffix]) => ({ ...message('routing key', t, id, validMessage(t2, id2)), routingKey: `${routeOf(t, id)}${suffix}` })),
    );
  }

  it(`dead-letters ${RUNS} generated hostile messages with a reason, keeps consuming and changes no stored node`, async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
    const before = await snapshotNodes(h);
    const deadLetter = h.names.queues.deadLetter;
    expect(await h.bus.queueDepth(deadLetter), 'the set-up was accepted').to.equal(0);
    const batch = fc.sample(messages(), { numRuns: RUNS, seed });
    const kinds = new Map<string, number>();
    for (const m of batch) kinds.set(m.kind, (kinds.get(m.kind) ?? 0) + 1);
    // Published with confirms, 200 at a time.
    for (let i = 0; i < batch.length; i += 200) {
      await Promise.all(
        batch.slice(i, i + 200).map((m, j) => h.bus.publish(h.names.exchanges.agentInbound, m.routingKey, m.body, { contentType: 'application/json', messageId: `fuzz-${i + j}` })),
      );
    }
    // Drained: nothing waiting, and the dead-letter count stopped growing (it must then be all of them).
    let lastCount = -1;
    await eventually(
      async () => {
        const [waiting, count] = [await h.bus.queueDepth(h.names.queues.ingest), await h.bus.queueDepth(deadLetter)];
        const settled = waiting === 0 && (count >= RUNS || count === lastCount);
        lastCount = count;
        return settled;
      },
      60_000,
      1000,
    );
    process.stdout.write(`      fuzz seed ${seed}: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}\n`);

    const count = await h.bus.queueDepth(deadLetter);
    const dlq = await readDeadLetters(h);
    await eventually(() => dlq.letters.length >= count, 30_000);
    await dlq.close();
    const lettered = new Set(dlq.letters.map((l) => l.messageId));
    const missing = batch.filter((_, i) => !lettered.has(`fuzz-${i}`)).map((m) => `${m.kind} ${m.routingKey} ${m.body.toString('utf8').slice(0, 400)}`);
    expect(missing, `seed ${seed}: every message dead-lettered, none applied (FUZZ_SEED=${seed} replays it)`).to.deep.equal([]);
    const unexplained = dlq.letters.filter((l) => !l.reason);
    expect(unexplained, 'every dead letter names its reason').to.deep.equal([]);
    const reasons = new Map<string, number>();
    for (const l of dlq.letters) {
      const reason = l.reason.split(/[:(]/)[0]!.split(' ').slice(0, 2).join(' ');
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    }
    process.stdout.write(`      reasons: ${[...reasons].map(([r, n]) => `${r} ${n}`).join(', ')}\n`);

    expect(await snapshotNodes(h), `seed ${seed}: no stored node changed`).to.deep.equal(before);
    expect(
      log.lines.filter((l) => /batch error|Unexpected/i.test(l)),
      'no batch failed',
    ).to.deep.equal([]);
    await h.bus.publish(h.names.exchanges.agentInbound, ROUTING.heartbeat('amqp-fuzz-a'), {
      ...validMessage('agent.heartbeat', 'amqp-fuzz-a'),
      payload: statsBody({ cpuUsage: 77 }),
    });
    await eventually(async () => (await h.store.get('amqp-fuzz-a'))?.stats?.cpuUsage === 77);
  });
});

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { formatJoinAuth, generateCredential, hashCredential } from '../../shared/auth/credentials.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { ROUTING } from '../../shared/topology.js';
import { startAgent, type InProcessAgent } from '../agent-int/support.js';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';
import { eventually, RABBITMQ_URL, requireServices } from '../support/services.js';
import { JOIN_TOKEN, readDeadLetters, type DeadLetter } from './support.js';

describe('authentication over AMQP @int', function () {
  this.timeout(30_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  const log = createMemoryLogger('debug');
  const secrets: string[] = [JOIN_TOKEN];
  let h: Harness;
  let dlq: Awaited<ReturnType<typeof readDeadLetters>>;

  function credential(): string {
    const c = generateCredential();
    secrets.push(c);
    return c;
  }
  const register = (nodeId: string, auth?: string) => h.publishAgent('agent.register', nodeId, registerBody(nodeId), auth === undefined ? {} : { auth });
  const heartbeat = (nodeId: string, auth?: string) => h.publishAgent('agent.heartbeat', nodeId, statsBody(), auth === undefined ? {} : { auth });
  async function registered(nodeId: string): Promise<string> {
    const cred = credential();
    await register(nodeId, formatJoinAuth(JOIN_TOKEN, nodeId, cred));
    await eventually(async () => (await h.store.get(nodeId))?.credentialHash === hashCredential(cred));
    return cred;
  }
  const deadLetterOn = (routingKey: string): Promise<DeadLetter> => eventually(() => dlq.letters.find((l) => l.routingKey === routingKey));

  before(async () => {
    h = await startOrchestrator({ auth: { joinToken: JOIN_TOKEN }, sweepers: 0, env: { TIMEOUT_MINUTES: '1' }, log });
    dlq = await readDeadLetters(h);
  });
  after(async () => {
    await dlq?.close();
    await h?.stop();
  });

  it('dead-letters a registration without a token', async () => {
    await register('amqp-none');
    expect((await deadLetterOn(ROUTING.register('amqp-none'))).reason).to.equal('unauthenticated: missing or malformed credential');
    expect(await h.store.get('amqp-none')).to.equal(null);
  });

  it('dead-letters a registration with a wrong join token', async () => {
    await register('amqp-wrong-join', formatJoinAuth('not-the-join-token-at-all', 'amqp-wrong-join', credential()));
    expect((await deadLetterOn(ROUTING.register('amqp-wrong-join'))).reason).to.equal('unauthenticated: invalid join token');
    expect(await h.store.get('amqp-wrong-join')).to.equal(null);
  });

  it('dead-letters a heartbeat without a credential', async () => {
    await registered('amqp-hb-none');
    await heartbeat('amqp-hb-none');
    expect((await deadLetterOn(ROUTING.heartbeat('amqp-hb-none'))).reason).to.equal('unauthenticated: missing or malformed credential');
  });

  it('dead-letters a heartbeat with a wrong credential', async () => {
    await registered('amqp-hb-wrong');
    await heartbeat('amqp-hb-wrong', credential());
    expect((await deadLetterOn(ROUTING.heartbeat('amqp-hb-wrong'))).reason).to.equal('forbidden: the credential is not the one of node amqp-hb-wrong');
  });

  it("dead-letters a heartbeat sent with another node's credential, leaving that node unchanged", async () => {
    await registered('amqp-victim');
    const attacker = await registered('amqp-attacker');
    const before = await h.store.get('amqp-victim');
    await heartbeat('amqp-victim', attacker);
    expect((await deadLetterOn(ROUTING.heartbeat('amqp-victim'))).reason).to.equal('forbidden: the credential is not the one of node amqp-victim');
    expect(await h.store.get('amqp-victim')).to.deep.equal(before);
  });

  it("dead-letters a registration replayed over an existing node id without that node's credential", async () => {
    const owner = await registered('amqp-taken');
    await register('amqp-taken', formatJoinAuth(JOIN_TOKEN, 'amqp-taken', credential()));
    expect((await deadLetterOn(ROUTING.register('amqp-taken'))).reason).to.equal(
      'forbidden: node amqp-taken is registered with another credential (an operator must reset it first)',
    );
    expect((await h.store.get('amqp-taken'))?.credentialHash).to.equal(hashCredential(owner));
  });

  it('dead-letters a shutdown with a wrong credential and keeps the node ONLINE', async () => {
    await registered('amqp-no-shutdown');
    await h.publishAgent('agent.shutdown', 'amqp-no-shutdown', {}, { auth: credential() });
    expect((await deadLetterOn(ROUTING.shutdown('amqp-no-shutdown'))).reason).to.match(/^forbidden: /);
    expect((await h.store.get('amqp-no-shutdown'))?.status).to.equal('ONLINE');
  });

  it("applies a heartbeat with the node's own credential", async () => {
    const cred = await registered('amqp-right');
    await heartbeat('amqp-right', cred);
    await eventually(async () => (await h.store.get('amqp-right'))?.stats?.cpuUsage === 12.5);
    expect(dlq.letters.some((l) => l.routingKey === ROUTING.heartbeat('amqp-right'))).to.equal(false);
  });

  it('never writes a token or credential into the logs or a refusal reason', async () => {
    expect(log.lines.length, 'the ingest logged').to.be.greaterThan(0);
    for (const line of [...log.lines, ...dlq.letters.map((l) => l.reason)]) for (const secret of secrets) expect(line).to.not.include(secret);
  });
});

describe('the real agent with AGENT_JOIN_TOKEN @int', function () {
  this.timeout(30_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness | undefined;
  let agent: InProcessAgent | undefined;
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agent-cred-'));
  });
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await h?.stop();
    h = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  for (const transport of ['amqp', 'http'] as const) {
    it(`registers and heartbeats over ${transport.toUpperCase()} with the credential it keeps in AGENT_CREDENTIAL_FILE`, async () => {
      h = await startOrchestrator({ auth: { joinToken: JOIN_TOKEN }, sweepers: 0, env: { TIMEOUT_MINUTES: '1' } });
      const harness = h;
      const file = join(dir, 'credential');
      agent = await startAgent({
        NODE_ID: `agent-${transport}`,
        ORCHESTRATOR_URL: h.url,
        ...(transport === 'amqp' ? { RABBITMQ_URL } : {}),
        BROKER_NAMESPACE: h.namespace,
        AGENT_JOIN_TOKEN: JOIN_TOKEN,
        AGENT_CREDENTIAL_FILE: file,
      });
      const node = await eventually(async () => {
        const n = await harness.store.get(`agent-${transport}`);
        return n?.status === 'ONLINE' && n.stats ? n : null;
      }, 10_000);
      const credential = (await readFile(file, 'utf8')).trim();
      expect(node.credentialHash).to.equal(hashCredential(credential));
      expect(agent.agent.status().lastTransport).to.equal(transport);
      for (const line of agent.lines) expect(line).to.not.include(credential).and.not.include(JOIN_TOKEN);
    });
  }
});

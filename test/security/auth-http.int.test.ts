import { expect } from 'chai';
import { formatJoinAuth, generateCredential, hashCredential } from '../../shared/auth/credentials.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';
import { eventually, requireServices } from '../support/services.js';
import { bearer, JOIN_TOKEN, OPERATOR_TOKEN, post } from './support.js';

describe('authentication over HTTP @int', function () {
  this.timeout(30_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  const log = createMemoryLogger('debug');
  const secrets: string[] = [JOIN_TOKEN, OPERATOR_TOKEN];
  let h: Harness;

  /** A credential this test made; every one is later looked for in the logs. */
  function credential(): string {
    const c = generateCredential();
    secrets.push(c);
    return c;
  }
  const registerAs = (nodeId: string, cred: string, joinToken = JOIN_TOKEN) =>
    post(`${h.url}/api/nodes/register`, registerBody(nodeId), bearer(formatJoinAuth(joinToken, nodeId, cred)));
  const stats = (nodeId: string, headers: Record<string, string> = {}) => post(`${h.url}/api/nodes/${nodeId}/stats`, statsBody(), headers);
  async function registered(nodeId: string): Promise<string> {
    const cred = credential();
    expect((await registerAs(nodeId, cred)).status).to.equal(201);
    await eventually(async () => (await h.store.get(nodeId))?.credentialHash === hashCredential(cred));
    return cred;
  }

  before(async () => {
    h = await startOrchestrator({ auth: { joinToken: JOIN_TOKEN, operatorToken: OPERATOR_TOKEN }, sweepers: 0, env: { TIMEOUT_MINUTES: '1' }, log });
  });
  after(async () => {
    await h?.stop();
  });

  it('refuses a registration without a token (401)', async () => {
    const response = await post(`${h.url}/api/nodes/register`, registerBody('no-token'));
    expect(response.status).to.equal(401);
    expect(response.headers.get('www-authenticate')).to.match(/^Bearer/);
    expect(await h.store.get('no-token')).to.equal(null);
  });

  it('refuses a registration with a wrong join token (401)', async () => {
    const response = await registerAs('wrong-join', credential(), 'not-the-join-token-at-all');
    expect(response.status).to.equal(401);
    expect(response.json.error).to.equal('INVALID_JOIN_TOKEN');
  });

  it('refuses a registration that sends only a credential, without the join token (401)', async () => {
    const response = await post(`${h.url}/api/nodes/register`, registerBody('cred-only'), bearer(credential()));
    expect(response.status).to.equal(401);
    expect(response.json.error).to.equal('JOIN_TOKEN_REQUIRED');
  });

  it('accepts a registration with the join token and stores only the hash of the node credential', async () => {
    const cred = await registered('joined');
    const node = await h.store.get('joined');
    expect(node?.status).to.equal('ONLINE');
    expect(JSON.stringify(node)).to.not.include(cred);
  });

  it('refuses stats without a credential (401)', async () => {
    await registered('hb-none');
    const response = await stats('hb-none');
    expect(response.status).to.equal(401);
  });

  it('refuses stats with a wrong credential (403)', async () => {
    await registered('hb-wrong');
    const response = await stats('hb-wrong', bearer(credential()));
    expect(response.status).to.equal(403);
    expect(response.json.error).to.equal('WRONG_CREDENTIAL');
  });

  it("refuses stats for a node sent with another node's credential (403)", async () => {
    await registered('victim');
    const attacker = await registered('attacker');
    const response = await stats('victim', bearer(attacker));
    expect(response.status).to.equal(403);
    expect((await h.store.get('victim'))?.stats).to.equal(null);
  });

  it("accepts stats with the node's own credential", async () => {
    const cred = await registered('hb-right');
    const response = await stats('hb-right', bearer(cred));
    expect(response.status).to.equal(200);
    await eventually(async () => (await h.store.get('hb-right'))?.stats?.cpuUsage === 12.5);
  });

  it("refuses a registration replayed over an existing node id without that node's credential (403)", async () => {
    const owner = await registered('taken');
    const response = await registerAs('taken', credential());
    expect(response.status).to.equal(403);
    expect(response.json.error).to.equal('NODE_ID_TAKEN');
    expect((await h.store.get('taken'))?.credentialHash).to.equal(hashCredential(owner));
    expect((await registerAs('taken', owner)).status, 'the owner itself may register again').to.equal(201);
  });

  it('refuses a shutdown with a wrong credential (403) and keeps the node ONLINE', async () => {
    await registered('no-shutdown');
    const response = await post(`${h.url}/api/nodes/no-shutdown/shutdown`, {}, bearer(credential()));
    expect(response.status).to.equal(403);
    expect((await h.store.get('no-shutdown'))?.status).to.equal('ONLINE');
  });

  it('lets only an operator reset a node, after which its id registers with a new credential', async () => {
    const old = await registered('reinstalled');
    const reset = (headers: Record<string, string>) => fetch(`${h.url}/api/nodes/reinstalled`, { method: 'DELETE', headers });
    expect((await reset({})).status).to.equal(401);
    expect((await reset(bearer(old))).status).to.equal(403);
    expect((await reset(bearer(OPERATOR_TOKEN))).status).to.equal(204);
    expect(await h.store.get('reinstalled')).to.equal(null);
    const fresh = await registered('reinstalled');
    expect((await stats('reinstalled', bearer(fresh))).status).to.equal(200);
    expect((await stats('reinstalled', bearer(old))).status, 'the old credential is dead').to.equal(403);
  });

  it('protects the read API and the dashboard stream with the operator token', async () => {
    await registered('readable');
    expect((await fetch(`${h.url}/api/nodes`)).status).to.equal(401);
    expect((await fetch(`${h.url}/api/nodes`, { headers: bearer('wrong-operator-token-0123') })).status).to.equal(403);
    expect((await fetch(`${h.url}/api/nodes/readable`)).status).to.equal(401);
    expect((await fetch(`${h.url}/api/nodes`, { headers: bearer(OPERATOR_TOKEN) })).status).to.equal(200);
    expect((await fetch(`${h.url}/api/nodes/readable?token=${OPERATOR_TOKEN}`)).status).to.equal(200);
    expect((await fetch(`${h.url}/api/stream`)).status).to.equal(401);
    const stream = new AbortController();
    const open = await fetch(`${h.url}/api/stream?token=${OPERATOR_TOKEN}`, { signal: stream.signal });
    expect(open.status).to.equal(200);
    stream.abort();
    expect((await fetch(`${h.url}/healthz`)).status, 'health stays open for probes').to.equal(200);
  });

  it('never writes a token or credential into the logs', async () => {
    expect(
      log.lines.some((l) => l.includes('Refused')),
      'refusals were logged',
    ).to.equal(true);
    for (const line of log.lines) for (const secret of secrets) expect(line).to.not.include(secret);
  });
});

describe('per-node rate limit @int', function () {
  this.timeout(30_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness;
  before(async () => {
    h = await startOrchestrator({ auth: { joinToken: JOIN_TOKEN }, sweepers: 0, env: { TIMEOUT_MINUTES: '1', RATE_LIMIT_PER_NODE_PER_MINUTE: '3' } });
  });
  after(async () => {
    await h?.stop();
  });

  it('answers 429 with Retry-After once a node exceeds its budget, without slowing other nodes', async () => {
    const cred = generateCredential();
    expect((await post(`${h.url}/api/nodes/register`, registerBody('flooder'), bearer(formatJoinAuth(JOIN_TOKEN, 'flooder', cred)))).status).to.equal(201);
    await eventually(async () => (await h.store.get('flooder'))?.credentialHash === hashCredential(cred));
    const send = () => post(`${h.url}/api/nodes/flooder/stats`, statsBody(), bearer(cred));
    expect((await send()).status).to.equal(200);
    expect((await send()).status).to.equal(200);
    const limited = await send();
    expect(limited.status).to.equal(429);
    // The rest of the node's one-minute window, which began with its registration a moment ago.
    expect(Number(limited.headers.get('retry-after'))).to.be.within(1, 60);
    const other = generateCredential();
    expect((await post(`${h.url}/api/nodes/register`, registerBody('quiet'), bearer(formatJoinAuth(JOIN_TOKEN, 'quiet', other)))).status).to.equal(201);
  });

  it("does not let requests without the node's credential spend its budget", async () => {
    const cred = generateCredential();
    expect((await post(`${h.url}/api/nodes/register`, registerBody('starved'), bearer(formatJoinAuth(JOIN_TOKEN, 'starved', cred)))).status).to.equal(201);
    await eventually(async () => (await h.store.get('starved'))?.credentialHash === hashCredential(cred));
    for (let i = 0; i < 5; i++) expect((await post(`${h.url}/api/nodes/starved/stats`, statsBody(), bearer(generateCredential()))).status).to.equal(403);
    expect((await post(`${h.url}/api/nodes/starved/stats`, statsBody(), bearer(cred))).status).to.equal(200);
  });
});

import { expect } from 'chai';
import { formatJoinAuth, generateCredential, hashCredential } from '../../shared/auth/credentials.js';
import { sleep } from '../support/fleet.js';
import { registerBody, startOrchestrator, statsBody, type EventCollector, type Harness } from '../support/orchestrator.js';
import { eventually, requireServices } from '../support/services.js';
import { bearer, JOIN_TOKEN, post, snapshotNodes } from './support.js';

const DRY_RUN = '/api/nodes/register?dryRun=true';

/** The stored nodes once the registration's own follow-up writes (its event outbox) are done. */
async function settledSnapshot(h: Harness): Promise<Record<string, unknown>> {
  let previous = await snapshotNodes(h);
  for (;;) {
    await sleep(300);
    const current = await snapshotNodes(h);
    if (JSON.stringify(current) === JSON.stringify(previous)) return current;
    previous = current;
  }
}

describe('dry-run registration (POST /api/nodes/register?dryRun=true) @int', function () {
  this.timeout(30_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));

  describe('with agent authentication on', () => {
    let h: Harness;
    let events: EventCollector;
    const joinAs = (nodeId: string, credential: string, joinToken = JOIN_TOKEN) => bearer(formatJoinAuth(joinToken, nodeId, credential));

    before(async () => {
      h = await startOrchestrator({ auth: { joinToken: JOIN_TOKEN }, sweepers: 0, env: { TIMEOUT_MINUTES: '0.5' } });
      events = await h.subscribe();
    });
    after(async () => {
      await h?.stop();
    });

    it('answers 200 with what a registration would meet, and stores, publishes and remembers nothing', async () => {
      const response = await post(`${h.url}${DRY_RUN}`, registerBody('dry-free'), joinAs('dry-free', generateCredential()));

      expect(response.status).to.equal(200);
      expect(response.json).to.deep.equal({ nodeId: 'dry-free', dryRun: true, accepted: true, auth: 'on', node: 'free', timeoutSeconds: 30 });
      await sleep(1000); // time for a registration, had one been sent, to reach the store
      expect(await h.store.get('dry-free')).to.equal(null);
      expect(events.events.filter((e) => e.nodeId === 'dry-free')).to.deep.equal([]);
      // The api did not take the node as registered either: its stats are refused as from an unknown node.
      expect((await post(`${h.url}/api/nodes/dry-free/stats`, statsBody(), bearer(generateCredential()))).status).to.equal(404);
    });

    it('refuses a wrong join token as a registration would (401), storing nothing', async () => {
      const response = await post(`${h.url}${DRY_RUN}`, registerBody('dry-wrong'), joinAs('dry-wrong', generateCredential(), 'not-the-join-token-0123456789'));

      expect(response.status).to.equal(401);
      expect(response.json.error).to.equal('INVALID_JOIN_TOKEN');
      expect(await h.store.get('dry-wrong')).to.equal(null);
    });

    it("says a node id is this host's when the credential is the node's, and refuses another credential (403), changing no stored node", async () => {
      const credential = generateCredential();
      expect((await post(`${h.url}/api/nodes/register`, registerBody('dry-held'), joinAs('dry-held', credential))).status).to.equal(201);
      await eventually(async () => (await h.store.get('dry-held'))?.credentialHash === hashCredential(credential));
      const before = await settledSnapshot(h);

      const own = await post(`${h.url}${DRY_RUN}`, registerBody('dry-held'), joinAs('dry-held', credential));
      const other = await post(`${h.url}${DRY_RUN}`, registerBody('dry-held'), joinAs('dry-held', generateCredential()));

      expect(own.status).to.equal(200);
      expect(own.json.node).to.equal('this-host');
      expect(other.status).to.equal(403);
      expect(other.json.error).to.equal('NODE_ID_TAKEN');
      await sleep(500);
      expect(await snapshotNodes(h)).to.deep.equal(before);
    });
  });

  describe('with agent authentication off', () => {
    let h: Harness;

    before(async () => {
      h = await startOrchestrator({ sweepers: 0, env: { TIMEOUT_MINUTES: '0.5' } });
    });
    after(async () => {
      await h?.stop();
    });

    it('tells the host that registered a node id from another host by the host name, changing nothing', async () => {
      expect((await post(`${h.url}/api/nodes/register`, registerBody('open-node'))).status).to.equal(201);
      await eventually(async () => (await h.store.get('open-node')) !== null);
      const before = await settledSnapshot(h);

      const same = await post(`${h.url}${DRY_RUN}`, registerBody('open-node'));
      const other = await post(`${h.url}${DRY_RUN}`, { ...registerBody('open-node'), hostname: 'another-host.example' });

      expect(same.status).to.equal(200);
      expect(same.json).to.include({ dryRun: true, auth: 'off', node: 'this-host' });
      expect(other.status).to.equal(200);
      expect(other.json).to.include({ dryRun: true, auth: 'off', node: 'taken' });
      await sleep(500);
      expect(await snapshotNodes(h)).to.deep.equal(before);
    });
  });
});

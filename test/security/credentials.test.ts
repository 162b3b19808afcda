import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { decideAgentAuth } from '../../shared/auth/agent-auth.js';
import { credentialMatches, formatJoinAuth, generateCredential, hashCredential, joinProof, parseAuth, secretEquals } from '../../shared/auth/credentials.js';
import { loadOrCreateCredential } from '../../services/agent/credential-store.js';
import { credentialAuth } from '../../services/agent/request-auth.js';

const JOIN = 'join-token-0123456789abcdef';

describe('agent credentials', () => {
  it('are 256-bit random strings that are never the same twice', () => {
    const a = generateCredential();
    const b = generateCredential();
    expect(a).to.match(/^[A-Za-z0-9_-]{43}$/);
    expect(a).to.not.equal(b);
  });

  it('are stored as a SHA-256 hash that matches only the same credential', () => {
    const credential = generateCredential();
    const hash = hashCredential(credential);
    expect(hash)
      .to.match(/^sha256:[0-9a-f]{64}$/)
      .and.not.include(credential);
    expect(credentialMatches(credential, hash)).to.equal(true);
    expect(credentialMatches(generateCredential(), hash)).to.equal(false);
  });

  it('compares secrets of different lengths without throwing', () => {
    expect(secretEquals('short', 'a much longer secret')).to.equal(false);
    expect(secretEquals('same', 'same')).to.equal(true);
  });

  it('parse a registration auth into the credential and the join proof, and refuse anything else', () => {
    const credential = generateCredential();
    expect(parseAuth(credential)).to.deep.equal({ kind: 'node', credential });
    expect(parseAuth(formatJoinAuth(JOIN, 'n1', credential))).to.deep.equal({ kind: 'join', credential, proof: joinProof(JOIN, 'n1', credential) });
    for (const bad of [undefined, '', 'short', { $gt: '' }, `${credential}.x`, `${credential}.${credential}.${credential}`, 'a'.repeat(600), 42]) {
      expect(parseAuth(bad), String(bad)).to.equal(null);
    }
  });
});

describe('decideAgentAuth', () => {
  const mine = generateCredential();
  const other = generateCredential();
  const decide = (action: 'register' | 'heartbeat' | 'shutdown', auth: unknown, storedHash: string | null | undefined) =>
    decideAgentAuth({ joinToken: JOIN, action, nodeId: 'n1', auth, storedHash });

  it('accepts a first registration with the join token and binds the node to its credential', () => {
    const decision = decide('register', formatJoinAuth(JOIN, 'n1', mine), undefined);
    expect(decision).to.deep.equal({ ok: true, credentialHash: hashCredential(mine) });
  });

  it('refuses a registration without the join token or with a wrong one (401)', () => {
    expect(decide('register', undefined, undefined)).to.include({ ok: false, status: 401 });
    expect(decide('register', mine, undefined)).to.include({ ok: false, status: 401, code: 'JOIN_TOKEN_REQUIRED' });
    expect(decide('register', formatJoinAuth('wrong-token-0123456789', 'n1', mine), undefined)).to.include({ ok: false, status: 401, code: 'INVALID_JOIN_TOKEN' });
  });

  it('refuses a join proof made for another node id (401)', () => {
    expect(decide('register', formatJoinAuth(JOIN, 'n2', mine), undefined)).to.include({ ok: false, status: 401, code: 'INVALID_JOIN_TOKEN' });
  });

  it("refuses a registration over an existing node without that node's credential (403)", () => {
    expect(decide('register', formatJoinAuth(JOIN, 'n1', other), hashCredential(mine))).to.include({ ok: false, status: 403, code: 'NODE_ID_TAKEN' });
    expect(decide('register', formatJoinAuth(JOIN, 'n1', mine), hashCredential(mine))).to.include({ ok: true });
  });

  it('lets a registration claim a node that has no credential yet (registered while auth was off)', () => {
    expect(decide('register', formatJoinAuth(JOIN, 'n1', mine), null)).to.include({ ok: true });
  });

  it("accepts heartbeats and shutdowns only with the node's own credential", () => {
    expect(decide('heartbeat', mine, hashCredential(mine))).to.include({ ok: true });
    expect(decide('shutdown', mine, hashCredential(mine))).to.include({ ok: true });
    expect(decide('heartbeat', undefined, hashCredential(mine))).to.include({ ok: false, status: 401 });
    expect(decide('heartbeat', other, hashCredential(mine))).to.include({ ok: false, status: 403, code: 'WRONG_CREDENTIAL' });
    expect(decide('heartbeat', mine, null)).to.include({ ok: false, status: 403, code: 'NO_CREDENTIAL_ON_RECORD' });
  });

  it('never puts a secret into a refusal reason', () => {
    const decisions = [decide('register', formatJoinAuth('wrong-token-0123456789', 'n1', mine), undefined), decide('heartbeat', other, hashCredential(mine))];
    for (const d of decisions) {
      expect(JSON.stringify(d)).to.not.include(mine).and.not.include(other).and.not.include(JOIN);
    }
  });
});

describe('agent credential store', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cred-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates the credential once, readable by its owner only, and reads the same one after a restart', async () => {
    const file = join(dir, 'state', 'credential');
    const first = await loadOrCreateCredential(file);
    expect(first).to.include({ created: true, persisted: true });
    expect((await stat(file)).mode & 0o777).to.equal(0o600);
    const again = await loadOrCreateCredential(file);
    expect(again).to.deep.equal({ credential: first.credential, created: false, persisted: true });
    expect((await readFile(file, 'utf8')).trim()).to.equal(first.credential);
  });

  it('refuses to start on a damaged credential file rather than silently replacing it', async () => {
    const file = join(dir, 'credential');
    await writeFile(file, 'not a credential');
    let error: Error | undefined;
    await loadOrCreateCredential(file).catch((e: Error) => (error = e));
    expect(error?.message).to.include('does not hold a credential').and.not.include('not a credential');
  });
});

describe('agent request auth', () => {
  const credential = generateCredential();
  const auth = credentialAuth({ nodeId: 'n1', joinToken: JOIN, credential });

  it('sends the credential with the join proof on registrations, and the credential alone otherwise', () => {
    expect(auth.httpHeaders('agent.register')).to.deep.equal({ authorization: `Bearer ${formatJoinAuth(JOIN, 'n1', credential)}` });
    expect(auth.httpHeaders('agent.heartbeat')).to.deep.equal({ authorization: `Bearer ${credential}` });
    expect(auth.envelopeAuth('agent.shutdown')).to.equal(credential);
  });

  it('never sends the join token itself', () => {
    for (const type of ['agent.register', 'agent.heartbeat', 'agent.shutdown'] as const) {
      expect(JSON.stringify(auth.httpHeaders(type)) + auth.envelopeAuth(type)).to.not.include(JOIN);
    }
  });
});

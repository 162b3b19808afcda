import { expect } from 'chai';
import fc from 'fast-check';
import { formatJoinAuth, generateCredential } from '../../shared/auth/credentials.js';
import { registerBody, startOrchestrator, statsBody, type Harness } from '../support/orchestrator.js';
import { eventually, requireServices } from '../support/services.js';
import { hostileBody, hostileValue, mutatedBody } from './hostile-inputs.js';
import { bearer, JOIN_TOKEN, post, snapshotNodes } from './support.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 5000);
const NODES = ['fuzz-a', 'fuzz-b', '__proto__', 'constructor'];

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

interface Case {
  kind: string;
  method: 'POST' | 'GET';
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
  /** Statuses this case may get; every case gets a 4xx at least. */
  expect?: number[];
}

describe('hostile input over HTTP (fuzz) @int', function () {
  this.timeout(120_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness;
  const credentials = new Map<string, string>();

  before(async () => {
    h = await startOrchestrator({ auth: { joinToken: JOIN_TOKEN }, sweepers: 0, env: { TIMEOUT_MINUTES: '10' } });
    for (const nodeId of NODES) {
      const credential = generateCredential();
      credentials.set(nodeId, credential);
      expect((await post(`${h.url}/api/nodes/register`, registerBody(nodeId), bearer(formatJoinAuth(JOIN_TOKEN, nodeId, credential)))).status, nodeId).to.equal(201);
      expect((await post(`${h.url}/api/nodes/${nodeId}/stats`, statsBody(), bearer(credential))).status, nodeId).to.equal(200);
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

  function cases(): fc.Arbitrary<Case> {
    const node = fc.constantFrom(...NODES);
    const json = { 'content-type': 'application/json' };
    const own = (nodeId: string) => bearer(credentials.get(nodeId)!);
    const registerBodies = hostileBody(
      mutatedBody(
        node.map((id) => registerBody(id)),
        ['nodeId', 'hostname', 'ipAddress', 'maxServers'],
        ['nodeId', 'hostname', 'ipAddress', 'maxServers'],
      ),
      node.map((id) => registerBody(id)),
    );
    const statsBodies = hostileBody(
      mutatedBody(
        fc.constant(statsBody()),
        ['cpuUsage', 'memoryUsage', 'diskUsage', 'containerCount', 'timestamp'],
        ['cpuUsage', 'memoryUsage', 'diskUsage', 'containerCount', 'timestamp'],
      ),
      fc.constant(statsBody()),
    );
    const shutdownBodies = hostileBody(mutatedBody(fc.constant({ reason: 'maintenance' }), ['reason'], []), fc.constant({ reason: 'maintenance' }));
    const hostileId = fc.oneof(
      fc.constantFrom('$gt', '%7B%22%24gt%22%3A%22%22%7D', '..', '%2e%2e', '%00', 'a'.repeat(65), 'x%2Fy', '%E0%A4%A', 'fuzz-a%20', 'FUZZ-A', 'prototype'),
      fc.string({ minLength: 1, maxLength: 80, unit: 'binary' }).map(encodeURIComponent),
    );
    const hostileAuth = fc.oneof(
      fc.constant(undefined),
      fc.string({ maxLength: 120 }).map((s) => `Bearer ${s}`),
      fc.constantFrom('Bearer {"$gt":""}', 'Bearer null', 'Basic Zm9vOmJhcg==', 'Bearer', 'bearer  ', `Bearer ${JOIN_TOKEN}`),
      hostileValue.map((v) => `Bearer ${JSON.stringify(v)}`.slice(0, 600)),
      fc.constant(generateCredential()).map((c) => `Bearer ${c}`),
      node.map((id) => `Bearer ${credentials.get(id)}`),
      fc.tuple(node, node).map(([a, b]) => `Bearer ${formatJoinAuth('not-the-join-token-0123', a, credentials.get(b)!)}`),
    );
    const withAuth = (auth: string | undefined) => ({ ...json, ...(auth ? { authorization: auth } : {}) });

    return fc.oneof(
      // Hostile bodies, sent with the right credentials so that only validation stands in the way.
      fc.tuple(node, registerBodies).map(([id, body]): Case => ({
        kind: 'register body',
        method: 'POST',
        path: '/api/nodes/register',
        headers: { ...json, ...bearer(formatJoinAuth(JOIN_TOKEN, id, credentials.get(id)!)) },
        body,
      })),
      fc
        .tuple(node, statsBodies)
        .map(([id, body]): Case => ({ kind: 'stats body', method: 'POST', path: `/api/nodes/${encodeURIComponent(id)}/stats`, headers: { ...json, ...own(id) }, body })),
      fc
        .tuple(node, shutdownBodies)
        .map(([id, body]): Case => ({ kind: 'shutdown body', method: 'POST', path: `/api/nodes/${encodeURIComponent(id)}/shutdown`, headers: { ...json, ...own(id) }, body })),
      // Hostile node ids in the path.
      fc
        .tuple(hostileId, fc.constantFrom('stats', 'shutdown'), statsBodies)
        .map(([id, action, body]): Case => ({ kind: 'path', method: 'POST', path: `/api/nodes/${id}/${action}`, headers: json, body })),
      // Valid bodies with a hostile, missing or other node's credential.
      fc
        .tuple(node, hostileAuth)
        .filter(([id, auth]) => auth !== `Bearer ${credentials.get(id)}`)
        .map(([id, auth]): Case => ({
          kind: 'stats auth',
          method: 'POST',
          path: `/api/nodes/${encodeURIComponent(id)}/stats`,
          headers: withAuth(auth),
          body: JSON.stringify(statsBody()),
          expect: [401, 403],
        })),
      fc
        .tuple(node, hostileAuth)
        .filter(([id, auth]) => auth !== `Bearer ${credentials.get(id)}`)
        .map(([id, auth]): Case => ({
          kind: 'shutdown auth',
          method: 'POST',
          path: `/api/nodes/${encodeURIComponent(id)}/shutdown`,
          headers: withAuth(auth),
          body: '{}',
          expect: [401, 403],
        })),
      fc.tuple(fc.oneof(node, fc.constantFrom('fuzz-new', 'fuzz-new-2')), hostileAuth).map(([id, auth]): Case => ({
        kind: 'register auth',
        method: 'POST',
        path: '/api/nodes/register',
        headers: withAuth(auth),
        body: JSON.stringify(registerBody(id)),
        expect: [401, 403],
      })),
      // A valid body with a content type the api does not parse as JSON.
      fc
        .tuple(node, fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x', 'application/xml'))
        .map(([id, type]): Case => ({
          kind: 'content type',
          method: 'POST',
          path: `/api/nodes/${encodeURIComponent(id)}/stats`,
          headers: { 'content-type': type, ...own(id) },
          body: JSON.stringify(statsBody()),
        })),
      // Reads with hostile queries and ids: any answer but a 5xx.
      fc.oneof(
        fc
          .tuple(fc.oneof(hostileId, node), fc.string({ maxLength: 60 }))
          .map(([id, query]): Case => ({ kind: 'read', method: 'GET', path: `/api/nodes/${id}?${encodeURIComponent(query)}=${encodeURIComponent(query)}`, headers: {} })),
        fc
          .constantFrom('status[$ne]=ONLINE', 'status=ONLINE&status=OFFLINE', 'status=%7B%22%24gt%22%3A%22%22%7D', '__proto__[polluted]=1', 'constructor[prototype][x]=1')
          .map((q): Case => ({ kind: 'read', method: 'GET', path: `/api/nodes?${q}`, headers: {} })),
      ),
    );
  }

  it(`answers ${RUNS} generated hostile requests with a 4xx, keeps serving and changes no stored node`, async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
    const before = await snapshotNodes(h);
    const kinds = new Map<string, number>();
    const failures: string[] = [];
    async function check(c: Case): Promise<void> {
      kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
      const response = await fetch(`${h.url}${c.path}`, { method: c.method, headers: c.headers, body: c.method === 'POST' ? c.body : undefined });
      const text = await response.text();
      const ok = c.method === 'GET' ? response.status < 500 : response.status >= 400 && response.status < 500 && (!c.expect || c.expect.includes(response.status)) && isJson(text);
      if (!ok)
        failures.push(
          `${c.kind} ${c.method} ${c.path} ${JSON.stringify(c.headers)} body ${JSON.stringify(String(c.body)).slice(0, 300)} -> ${response.status} ${text.slice(0, 200)}`,
        );
    }
    // Sent by 16 clients at once, as a fleet would: generated up front from the seed, so a failure replays.
    const queue = fc.sample(cases(), { numRuns: RUNS, seed });
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let c = queue.pop(); c; c = queue.pop()) await check(c);
      }),
    );
    expect(failures, `seed ${seed} (FUZZ_SEED=${seed} replays it)`).to.deep.equal([]);
    process.stdout.write(`      fuzz seed ${seed}: ${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}\n`);
    // Give anything that slipped through to the broker time to reach the store before comparing.
    await eventually(async () => (await h.bus.queueDepth(h.names.queues.ingest)) === 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await snapshotNodes(h), 'no stored node changed').to.deep.equal(before);
    expect((await fetch(`${h.url}/healthz`)).status).to.equal(200);
    const after = await post(`${h.url}/api/nodes/fuzz-a/stats`, statsBody({ cpuUsage: 77 }), bearer(credentials.get('fuzz-a')!));
    expect(after.status, 'a valid request still succeeds').to.equal(200);
    await eventually(async () => (await h.store.get('fuzz-a'))?.stats?.cpuUsage === 77);
  });
});

import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Parser, type Diagnostic } from '@asyncapi/parser';
import { compileErrors, dereference, validate } from '@readme/openapi-parser';
import { Ajv } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { expect } from 'chai';
import { parse } from 'yaml';
import { createApp, type ApiApp } from '../../services/api/app.js';
import { createApiGuard } from '../../services/api/auth/api-guard.js';
import { mountDashboard, type Dashboard } from '../../services/api/dashboard/dashboard-routes.js';
import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import { topicMatches } from '../../shared/bus/topic-match.js';
import { systemClock } from '../../shared/clock.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { NODE_EVENT_TYPES } from '../../shared/messages/index.js';
import { createMetrics } from '../../shared/metrics.js';
import { createMemoryRateLimiter } from '../../shared/rate-limit/memory-rate-limiter.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import { brokerNames, ROUTING, topology } from '../../shared/topology.js';
import { renderApiDescriptions } from '../../scripts/api-descriptions/render.js';
import { insert, nodeRecord } from '../contract/node-fixtures.js';

const root = new URL('../../', import.meta.url);
const committed = (path: string) => readFileSync(new URL(path, root), 'utf8');
const openapiText = () => committed('docs/openapi.yaml');
const asyncapiText = () => committed('docs/asyncapi.yaml');

/** Errors and warnings only: the parser also informs, e.g. that AsyncAPI 3.1 exists. */
function problems(diagnostics: Diagnostic[]): string[] {
  return diagnostics.filter((d) => d.severity <= 1).map((d) => `${d.code} at ${d.path.join('.')}: ${d.message}`);
}

describe('docs/openapi.yaml and docs/asyncapi.yaml', () => {
  describe('are what npm run docs:api generates', () => {
    for (const { path, text } of renderApiDescriptions(root)) {
      it(`${path} is the committed file, byte for byte`, () => {
        // A plain equality would print two 900-line strings: name the first line that differs instead.
        const want = text.split('\n');
        const have = committed(path).split('\n');
        const line = want.findIndex((l, i) => have[i] !== l);
        const where = line === -1 ? `the committed file has ${have.length - want.length} more lines` : `line ${line + 1}: ${JSON.stringify(have[line])} should be ${JSON.stringify(want[line])}`;
        expect(have.join('\n') === want.join('\n'), `${path} differs from the zod schemas (${where}); run npm run docs:api`).to.equal(true);
      });
    }

    it('generates the same bytes twice', () => {
      expect(renderApiDescriptions(root)).to.deep.equal(renderApiDescriptions(root));
    });
  });

  describe('OpenAPI', () => {
    it('docs/openapi.yaml is a valid OpenAPI 3.1 description, without warnings', async () => {
      const document = parse(openapiText());
      expect(document.openapi).to.equal('3.1.0');
      const result = await validate(document);
      expect(result.valid, result.valid ? '' : compileErrors(result)).to.equal(true);
      expect(result.warnings).to.deep.equal([]);
    });

    it('the validator refuses a description with a response that has no description (it checks, not just parses)', async () => {
      const document = parse(openapiText());
      delete document.paths['/healthz'].get.responses['200'].description;
      expect((await validate(document)).valid).to.equal(false);
    });
  });

  describe('AsyncAPI', () => {
    it('docs/asyncapi.yaml parses as AsyncAPI 3.0 with no error or warning', async () => {
      const { document, diagnostics } = await new Parser().parse(asyncapiText());
      expect(problems(diagnostics)).to.deep.equal([]);
      expect(document?.version()).to.equal('3.0.0');
      expect(document?.channels().length).to.be.greaterThan(0);
    });

    it('the parser refuses a description whose AMQP binding names an exchange type RabbitMQ has not (it checks, not just parses)', async () => {
      const document = parse(asyncapiText());
      document.channels.nodeOffline.bindings.amqp.exchange.type = 'sideways';
      const { diagnostics } = await new Parser().parse(document);
      expect(problems(diagnostics).join('\n')).to.include('nodeOffline.bindings.amqp.exchange.type');
    });

    it("every message example satisfies its message's payload and headers schemas as the file states them", async () => {
      const { document } = await new Parser().parse(asyncapiText());
      const ajv = new Ajv({ strict: false, allErrors: true });
      let checked = 0;
      for (const message of document!.allMessages().all()) {
        for (const example of message.examples().all()) {
          for (const [part, schema, value] of [
            ['payload', message.payload()?.json(), example.payload()],
            ['headers', message.headers()?.json(), example.headers()],
          ] as const) {
            if (!schema || value === undefined) continue;
            const check = ajv.compile(schema);
            expect(check(value), `${message.id()} example ${example.name()} ${part}: ${ajv.errorsText(check.errors)}`).to.equal(true);
            checked++;
          }
        }
      }
      // register, heartbeat, shutdown, canary, reregister, two node events with their headers, cluster.degraded
      expect(checked).to.equal(10);
    });

    it('has a channel for every routing key topology() binds and every node event, on the exchange that carries it', () => {
      const document = parse(asyncapiText());
      const channels = Object.values(document.channels) as Array<{ address: string; bindings: { amqp: { exchange?: { name: string }; queue?: { name: string } } } }>;
      // A parameter stands for one word: a node id or sender id is one word of a routing key.
      const keys = channels.map((c) => ({ key: c.address.replace(/\{[^}]+\}/g, 'node-1'), exchange: c.bindings.amqp.exchange?.name, queue: c.bindings.amqp.queue?.name }));
      const names = brokerNames();
      for (const binding of topology(names).bindings) {
        const described =
          binding.routingKey === ''
            ? keys.some((k) => k.queue === binding.destination)
            : keys.some((k) => k.exchange === binding.source && topicMatches(binding.routingKey, k.key));
        expect(described, `${binding.source} -> ${binding.destination} (${binding.routingKey || 'fanout'})`).to.equal(true);
      }
      for (const key of [...NODE_EVENT_TYPES, ROUTING.clusterDegraded]) {
        expect(keys.some((k) => k.exchange === names.exchanges.nodeEvents && k.key === key), key).to.equal(true);
      }
      expect(keys.some((k) => k.exchange === names.exchanges.agentControl && k.key === ROUTING.control('node-1')), 'control').to.equal(true);
    });
  });
});

interface Operation {
  responses: Record<string, { content?: Record<string, { schema?: object }>; headers?: Record<string, unknown> }>;
}

/** Agent requests per node per minute in these tests: enough for node-1's whole exchange, little enough to reach. */
const RATE_LIMIT = 5;

/** The api as the tests run it: memory adapters, the dashboard, an operator token and a small rate limit. */
async function startApi(options: { authMode: 'off' | 'on' }) {
  const names = brokerNames(`docs-${options.authMode}`);
  const bus = createMemoryBus();
  await bus.declareTopology(topology(names));
  const store = createMemoryNodeStore({ historyPoints: 0 });
  const log = createMemoryLogger('error');
  const guard = createApiGuard({
    config: { auth: { mode: options.authMode, joinToken: 'join-token-of-sixteen+', operatorToken: 'operator-token-0123456789' }, rateLimit: { perNodePerMinute: RATE_LIMIT } },
    store,
    rateLimiter: createMemoryRateLimiter({ limit: RATE_LIMIT }),
    clock: systemClock,
    log,
  });
  let dashboard: Dashboard | undefined;
  const app = createApp({
    bus,
    store,
    names,
    log,
    clock: systemClock,
    metrics: createMetrics(),
    guard,
    extend: (a) => {
      dashboard = mountDashboard(a, { store, bus, names, log, clock: systemClock, authorize: (req) => guard.operator(req) });
    },
  });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return {
    app,
    bus,
    store,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async stop() {
      await dashboard?.close();
      await app.stopBackground();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Every route the app serves, as `METHOD /path/{param}`. */
function servedRoutes(app: ApiApp): string[] {
  const stack = (app as unknown as { router: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> } }).router.stack;
  return stack.flatMap((layer) =>
    layer.route ? Object.keys(layer.route.methods).map((method) => `${method.toUpperCase()} ${layer.route!.path.replace(/:(\w+)/g, '{$1}')}`) : [],
  );
}

describe('docs/openapi.yaml against the api', () => {
  let api: Awaited<ReturnType<typeof startApi>>;
  let spec: { paths: Record<string, Record<string, Operation>> };
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  const operatorAuth = { authorization: 'Bearer operator-token-0123456789' };

  before(async () => {
    spec = (await dereference(parse(openapiText()))) as unknown as typeof spec;
  });
  beforeEach(async () => {
    api = await startApi({ authMode: 'off' });
  });
  afterEach(async () => {
    await api.stop();
  });

  /** Sends the request and checks its answer against the description of `METHOD template`: status, media type, headers, body. */
  async function answered(method: string, template: string, path: string, init: { body?: string | object; headers?: Record<string, string> } = {}) {
    const body = typeof init.body === 'object' ? JSON.stringify(init.body) : init.body;
    const res = await fetch(`${api.url}${path}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
      body,
      signal: AbortSignal.timeout(5000),
    });
    const operation = spec.paths[template]?.[method.toLowerCase()];
    expect(operation, `${method} ${template} is described`).to.not.equal(undefined);
    const described = operation!.responses[String(res.status)];
    expect(described, `${method} ${path} answered ${res.status}, which ${method} ${template} does not list`).to.not.equal(undefined);
    for (const header of Object.keys(described!.headers ?? {})) expect(res.headers.get(header), `${res.status} header ${header}`).to.not.equal(null);
    if (!described!.content) {
      expect(await res.text()).to.equal('');
      return { status: res.status, json: undefined };
    }
    const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    expect(Object.keys(described!.content), `${method} ${path} answered ${type}`).to.include(type);
    if (type !== 'application/json') return { status: res.status, json: undefined, text: await res.text() };
    const json = (await res.json()) as unknown;
    const check = ajv.compile(described!.content[type]!.schema!);
    expect(check(json), `${method} ${path} ${res.status} ${JSON.stringify(json)}: ${ajv.errorsText(check.errors)}`).to.equal(true);
    return { status: res.status, json };
  }

  it('describes every route the api serves (dashboard included), and no other', () => {
    const described = Object.entries(spec.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .filter((key) => ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'].includes(key))
        .map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect([...servedRoutes(api.app)].sort()).to.deep.equal([...described].sort());
  });

  it("the agent endpoints' answers, successes and refusals, are the described ones", async () => {
    const register = { nodeId: 'node-1', hostname: 'game-host-1', ipAddress: '10.0.0.5', maxServers: 20 };
    const stats = { cpuUsage: 12.5, memoryUsage: 40, diskUsage: 73.2, containerCount: 3, timestamp: new Date().toISOString() };
    const dryRun = await answered('POST', '/api/nodes/register', '/api/nodes/register?dryRun=true', { body: register });
    expect(dryRun.status).to.equal(200);
    expect(dryRun.json).to.include({ dryRun: true, node: 'free' });
    expect((await answered('POST', '/api/nodes/register', '/api/nodes/register', { body: register })).status).to.equal(201);
    expect((await answered('POST', '/api/nodes/{nodeId}/stats', '/api/nodes/node-1/stats', { body: stats })).status).to.equal(200);
    expect((await answered('POST', '/api/nodes/{nodeId}/shutdown', '/api/nodes/node-1/shutdown')).status).to.equal(200);

    const refusals: Array<[string, string, string, { body?: string | object }, number, string]> = [
      ['POST', '/api/nodes/register', '/api/nodes/register', { body: '{"nodeId":' }, 400, 'MALFORMED_JSON'],
      ['POST', '/api/nodes/register', '/api/nodes/register', { body: { ...register, maxServers: -1, extra: 1 } }, 400, 'INVALID_BODY'],
      ['POST', '/api/nodes/register', '/api/nodes/register', { body: { ...register, hostname: 'h'.repeat(17_000) } }, 413, 'BODY_TOO_LARGE'],
      ['POST', '/api/nodes/{nodeId}/stats', '/api/nodes/node%20one/stats', { body: stats }, 400, 'INVALID_NODE_ID'],
      ['POST', '/api/nodes/{nodeId}/stats', '/api/nodes/node-9/stats', { body: stats }, 404, 'NODE_NOT_REGISTERED'],
      ['POST', '/api/nodes/{nodeId}/shutdown', '/api/nodes/node-9/shutdown', {}, 404, 'NODE_NOT_REGISTERED'],
    ];
    for (const [method, template, path, init, status, code] of refusals) {
      const { status: got, json } = await answered(method, template, path, init);
      expect([got, (json as { error: string }).error], path).to.deep.equal([status, code]);
    }

    // The rate limit is per node: node-2's request after RATE_LIMIT in a row is refused.
    const limited = { ...register, nodeId: 'node-2' };
    for (let i = 0; i < RATE_LIMIT; i++) await answered('POST', '/api/nodes/register', '/api/nodes/register', { body: limited });
    expect((await answered('POST', '/api/nodes/register', '/api/nodes/register', { body: limited })).json).to.include({ error: 'RATE_LIMITED' });

    api.bus.block('low on memory');
    const blocked = await answered('POST', '/api/nodes/register', '/api/nodes/register', { body: { ...register, nodeId: 'node-3' } });
    expect(blocked.json).to.include({ error: 'BROKER_BLOCKED', reason: 'low on memory' });
    const notReady = await answered('GET', '/readyz', '/readyz');
    expect([notReady.status, (notReady.json as { unavailable: string[] }).unavailable]).to.deep.equal([503, ['broker']]);
    api.bus.unblock();
  });

  it('the reads, the reset, health, readiness, metrics and the dashboard answer as described', async () => {
    await api.store.write([
      insert(nodeRecord('node-1')),
      insert(nodeRecord('node-2', { status: 'OFFLINE', lastHeartbeat: null, stats: null, statusVersion: 2 })),
    ]);
    const list = await answered('GET', '/api/nodes', '/api/nodes', { headers: operatorAuth });
    expect((list.json as unknown[]).length).to.equal(2);
    expect((await answered('GET', '/api/nodes', '/api/nodes?status=OFFLINE', { headers: operatorAuth })).json).to.have.length(1);
    expect((await answered('GET', '/api/nodes/{nodeId}', '/api/nodes/node-1', { headers: operatorAuth })).json).to.include({ nodeId: 'node-1' });

    const refusals: Array<[string, string, string, Record<string, string>, number, string]> = [
      ['GET', '/api/nodes', '/api/nodes', {}, 401, 'OPERATOR_TOKEN_REQUIRED'],
      ['GET', '/api/nodes', '/api/nodes?token=wrong-token-0123456789', {}, 403, 'WRONG_OPERATOR_TOKEN'],
      ['GET', '/api/nodes', '/api/nodes?status=GONE', operatorAuth, 400, 'INVALID_STATUS'],
      ['GET', '/api/nodes/{nodeId}', '/api/nodes/node-9', operatorAuth, 404, 'NODE_NOT_FOUND'],
      ['GET', '/api/nodes/{nodeId}', '/api/nodes/$where', operatorAuth, 400, 'INVALID_NODE_ID'],
      ['DELETE', '/api/nodes/{nodeId}', '/api/nodes/node-9', operatorAuth, 404, 'NODE_NOT_FOUND'],
      ['GET', '/api/stream', '/api/stream?limit=500', operatorAuth, 400, 'INVALID_QUERY'],
    ];
    for (const [method, template, path, headers, status, code] of refusals) {
      const { status: got, json } = await answered(method, template, path, { headers });
      expect([got, (json as { error: string }).error], path).to.deep.equal([status, code]);
    }
    expect((await answered('DELETE', '/api/nodes/{nodeId}', '/api/nodes/node-2', { headers: operatorAuth })).status).to.equal(204);

    expect((await answered('GET', '/healthz', '/healthz')).text).to.equal('ok');
    expect((await answered('GET', '/readyz', '/readyz')).json).to.include({ ready: true });
    expect((await answered('GET', '/metrics', '/metrics')).text).to.include('orchestrator_nodes');
    for (const path of ['/', '/dashboard.css', '/dashboard.js']) expect((await answered('GET', path, path)).status, path).to.equal(200);

    const stream = await fetch(`${api.url}/api/stream?token=operator-token-0123456789`, { signal: AbortSignal.timeout(5000) });
    expect([stream.status, stream.headers.get('content-type')?.split(';')[0]]).to.deep.equal([200, 'text/event-stream']);
    expect(Object.keys(spec.paths['/api/stream']!.get!.responses['200']!.content!)).to.deep.equal(['text/event-stream']);
    await stream.body?.cancel();
  });

  it('the agent authentication refusals are the described ones (AUTH_MODE=on)', async () => {
    await api.stop();
    api = await startApi({ authMode: 'on' });
    const register = { nodeId: 'node-1', hostname: 'game-host-1', ipAddress: '10.0.0.5', maxServers: 20 };
    const cases: Array<[Record<string, string>, number, string]> = [
      [{}, 401, 'UNAUTHENTICATED'],
      [{ authorization: `Bearer ${'c'.repeat(43)}` }, 401, 'JOIN_TOKEN_REQUIRED'],
      [{ authorization: `Bearer ${'c'.repeat(43)}.${'p'.repeat(43)}` }, 401, 'INVALID_JOIN_TOKEN'],
    ];
    for (const [headers, status, code] of cases) {
      const { status: got, json } = await answered('POST', '/api/nodes/register', '/api/nodes/register', { body: register, headers });
      expect([got, (json as { error: string }).error]).to.deep.equal([status, code]);
    }
  });
});

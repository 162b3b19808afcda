import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { systemClock } from '../../shared/clock.js';
import { createHttpTransport } from '../../services/agent/http-transport.js';
import { createMessageFactory } from '../../services/agent/outbound-messages.js';
import { noAuth } from '../../services/agent/request-auth.js';
import { TransportError } from '../../services/agent/transport.js';

const messages = createMessageFactory({ nodeId: 'node-1', wallClock: systemClock, auth: noAuth });
const register = { nodeId: 'node-1', hostname: 'host-1', ipAddress: '10.0.0.1', maxServers: 20 };
const stats = { cpuUsage: 1.5, memoryUsage: 2, diskUsage: 3, containerCount: 4, timestamp: '2026-01-01T00:00:00.000Z' };

describe('HTTP transport', () => {
  let server: Server;
  let baseUrl: string;
  let respond: (req: IncomingMessage, res: ServerResponse, body: string) => void;
  const seen: Array<{ method?: string; url?: string; body: unknown; headers: IncomingMessage['headers'] }> = [];

  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, body: body ? JSON.parse(body) : undefined, headers: req.headers });
        respond(req, res, body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  beforeEach(() => {
    seen.length = 0;
    respond = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });

  const transport = (headers: Record<string, string> = {}) => createHttpTransport({ baseUrl, auth: { httpHeaders: () => headers, envelopeAuth: () => undefined } });
  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => null,
      (e: unknown) => e as TransportError,
    );

  it('posts the original bodies to the original endpoints, with the headers of the request auth', async () => {
    const t = transport({ authorization: 'Bearer test' });
    await t.send(messages.register(register), { timeoutMs: 2000 });
    await t.send(messages.heartbeat(stats), { timeoutMs: 2000 });
    await t.send(messages.shutdown(), { timeoutMs: 2000 });
    expect(seen.map((s) => [s.method, s.url, s.body])).to.deep.equal([
      ['POST', '/api/nodes/register', register],
      ['POST', '/api/nodes/node-1/stats', stats],
      ['POST', '/api/nodes/node-1/shutdown', {}],
    ]);
    expect(seen[0]!.headers['authorization']).to.equal('Bearer test');
    expect(seen[0]!.headers['content-type']).to.equal('application/json');
  });

  it('returns the pace the answer to a registration or a heartbeat carries, and none when it carries none', async () => {
    const pace = { heartbeatInterval: 120, timeout: 360, fleetSize: 12000 };
    respond = (_req, res) => res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ nodeId: 'node-1', accepted: true, ...pace }));
    expect(await transport().send(messages.register(register), { timeoutMs: 2000 })).to.deep.equal(pace);
    expect(await transport().send(messages.heartbeat(stats), { timeoutMs: 2000 })).to.deep.equal(pace);
    respond = (_req, res) => res.writeHead(201, { 'content-type': 'application/json' }).end('{"nodeId":"node-1","accepted":true}');
    expect(await transport().send(messages.register(register), { timeoutMs: 2000 })).to.equal(undefined);
    respond = (_req, res) => res.writeHead(200).end('OK');
    expect(await transport().send(messages.heartbeat(stats), { timeoutMs: 2000 })).to.equal(undefined);
  });

  it('reports a 404 on stats as a node the orchestrator does not know', async () => {
    respond = (_req, res) => res.writeHead(404).end('{"error":"node not found"}');
    const error = await failure(transport().send(messages.heartbeat(stats), { timeoutMs: 2000 }));
    expect(error).to.be.instanceOf(TransportError);
    expect(error!.code).to.equal('NODE_NOT_REGISTERED');
  });

  it('passes on the Retry-After of a 503', async () => {
    respond = (_req, res) => res.writeHead(503, { 'retry-after': '7' }).end();
    const error = await failure(transport().send(messages.register(register), { timeoutMs: 2000 }));
    expect(error).to.include({ code: 'UNAVAILABLE', message: 'HTTP 503', retryAfterMs: 7000 });
  });

  it('names the broker alarm of a 503 BROKER_BLOCKED', async () => {
    respond = (_req, res) =>
      res
        .writeHead(503, { 'retry-after': '5', 'content-type': 'application/json' })
        .end(JSON.stringify({ error: 'BROKER_BLOCKED', message: 'cannot accept now', reason: 'low on memory' }));
    const error = await failure(transport().send(messages.heartbeat(stats), { timeoutMs: 2000 }));
    expect(error).to.include({ code: 'UNAVAILABLE', message: 'HTTP 503: BROKER_BLOCKED (low on memory)', retryAfterMs: 5000 });
  });

  it('names the invalid fields of a 400', async () => {
    respond = (_req, res) => res.writeHead(400).end('{"error":"maxServers must be an integer"}');
    const error = await failure(transport().send(messages.register(register), { timeoutMs: 2000 }));
    expect(error).to.include({ code: 'REFUSED', message: 'HTTP 400: maxServers must be an integer' });
  });

  it('gives up after the timeout', async () => {
    respond = () => undefined; // never answers
    const error = await failure(transport().send(messages.heartbeat(stats), { timeoutMs: 100 }));
    expect(error).to.include({ code: 'TIMEOUT', message: 'HTTP request timed out after 100 ms' });
  });

  it('reports an unreachable orchestrator with the network reason', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const unreachable = createHttpTransport({ baseUrl: `http://127.0.0.1:${port}`, auth: noAuth });
    const error = await failure(unreachable.send(messages.heartbeat(stats), { timeoutMs: 2000 }));
    expect(error!.code).to.equal('UNAVAILABLE');
    expect(error!.message).to.match(/ECONNREFUSED/);
  });
});

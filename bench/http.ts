import { execFile } from 'node:child_process';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import express from 'express';
import { MongoClient } from 'mongodb';
import type { Bus } from '../shared/bus/bus.js';
import { systemClock } from '../shared/clock.js';
import { heartbeatBodySchema } from '../shared/messages/index.js';
import { createMetrics } from '../shared/metrics.js';
import { createApp } from '../services/api/app.js';
import { nodeIds, openEnv, seedNodes } from './lib/env.js';
import type { BenchResult, Row } from './lib/report.js';

interface Load {
  rps: number;
  p99: number;
  non2xx: number;
  errors: number;
}

const AUTOCANNON = createRequire(import.meta.url).resolve('autocannon/autocannon.js');

/** autocannon in its own process, so the load generator does not share the server's event loop. */
function autocannon(url: string, connections: number, seconds: number, body: string): Promise<Load> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [AUTOCANNON, '--json', '-c', String(connections), '-d', String(seconds), '-m', 'POST', '-H', 'content-type=application/json', '-b', body, url],
      { maxBuffer: 16 * 1024 * 1024 },
      (error, stdout) => {
        if (error) return reject(error);
        const r = JSON.parse(stdout) as { requests: { average: number }; latency: { p99: number }; non2xx: number; errors: number };
        resolve({ rps: r.requests.average, p99: r.latency.p99, non2xx: r.non2xx, errors: r.errors });
      },
    );
  });
}

function listen(app: express.Express): Promise<{ server: Server; url: string }> {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }));
  });
}

export async function runHttp(options: { long: boolean }): Promise<BenchResult> {
  const scale = options.long ? { seconds: 20, connections: [1, 50] } : { seconds: 8, connections: [1, 50] };
  const env = await openEnv('http');
  const client = await MongoClient.connect(env.config.mongoUrl);
  const servers: Server[] = [];
  try {
    const [nodeId] = nodeIds(1, 'http-node');
    await seedNodes(env.store, [nodeId!], () => Date.now());
    const path = `/api/nodes/${nodeId}/stats`;
    const body = JSON.stringify({ cpuUsage: 12.5, memoryUsage: 40.25, diskUsage: 55, containerCount: 3, timestamp: new Date().toISOString() });
    const metrics = createMetrics();

    // This system: the api publishing to the broker with confirms.
    const system = await listen(createApp({ bus: env.bus, store: env.store, names: env.names, log: env.log, clock: systemClock, metrics }));
    // (a) The same app with the publish replaced by a no-op: the framework's ceiling.
    const noopBus: Bus = Object.create(env.bus) as Bus;
    noopBus.publish = async () => undefined;
    const ceiling = await listen(createApp({ bus: noopBus, store: env.store, names: env.names, log: env.log, clock: systemClock, metrics: createMetrics() }));
    // (b) The naive handler: one findOneAndUpdate per request, awaited.
    const nodes = client.db().collection<{ _id: string }>('nodes');
    const naiveApp = express();
    naiveApp.use(express.json({ limit: '16kb' }));
    naiveApp.post('/api/nodes/:nodeId/stats', async (req, res) => {
      const parsed = heartbeatBodySchema.safeParse(req.body);
      if (!parsed.success) return void res.status(400).json({ error: 'INVALID_BODY' });
      const { timestamp, ...stats } = parsed.data;
      const doc = await nodes
        .findOneAndUpdate({ _id: req.params.nodeId }, { $set: { lastHeartbeat: new Date(), stats: { reportedAt: new Date(timestamp), ...stats } } })
        .catch(() => undefined); // requests still queued when the run ends and the client closes
      if (doc === undefined) return void res.status(503).json({ error: 'STORE_UNAVAILABLE' });
      if (!doc) return void res.status(404).json({ error: 'NODE_NOT_REGISTERED' });
      res.status(200).json({ nodeId: req.params.nodeId, accepted: true });
    });
    const naive = await listen(naiveApp);
    servers.push(system.server, ceiling.server, naive.server);

    const rows: Row[] = [];
    const details: Record<string, unknown> = {};
    for (const c of scale.connections) {
      const sys = await autocannon(system.url + path, c, scale.seconds, body);
      const top = await autocannon(ceiling.url + path, c, scale.seconds, body);
      const slow = await autocannon(naive.url + path, c, scale.seconds, body);
      details[`c${c}`] = { system: sys, ceiling: top, naive: slow };
      rows.push(
        { figure: `${c} conn: req/s vs no-op publish (a)`, system: sys.rps, baseline: top.rps, unit: 'req/s', baselineName: 'no-op publish', target: '>= 0.5x' },
        { figure: `${c} conn: req/s vs naive (b)`, system: sys.rps, baseline: slow.rps, unit: 'req/s', baselineName: 'findOneAndUpdate each', target: '>= 2x' },
        { figure: `${c} conn: p99 latency`, system: sys.p99, baseline: slow.p99, unit: 'ms', baselineName: 'naive' },
      );
      if (sys.non2xx || sys.errors) details[`c${c}-problems`] = `this system answered ${sys.non2xx} non-2xx, ${sys.errors} errors`;
    }
    return {
      name: 'http',
      scale: { ...scale, endpoint: 'POST /api/nodes/{nodeId}/stats (original stats body), one registered node' },
      rows,
      notes: Object.entries(details)
        .filter(([k]) => k.endsWith('problems'))
        .map(([k, v]) => `${k}: ${String(v)}`),
      details,
    };
  } finally {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
    await client.close();
    await env.cleanup();
  }
}

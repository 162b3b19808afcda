import { createServer, type Server } from 'node:http';
import type { Metrics } from './metrics.js';

/** A bare /metrics endpoint for the processes without an api (ingest, sweeper), when METRICS_PORT is set. */
export async function serveMetrics(metrics: Metrics, port: number | null): Promise<Server | null> {
  if (port === null) return null;
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      metrics.registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        })
        .catch(() => {
          res.writeHead(500);
          res.end();
        });
    } else if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(port, resolve));
  return server;
}

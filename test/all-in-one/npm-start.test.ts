import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { envWithoutServices, runNpm, type NpmProcess } from './npm-process.js';

/** On a machine without RabbitMQ, Redis or MongoDB, `npm start` brings the local node ONLINE within 15 s (docs/all-in-one.md). */
const ONLINE_WITHIN_MS = 15_000;

interface NodeView {
  nodeId: string;
  status: string;
}

describe('npm start (all-in-one, no services; a child process) @int', function () {
  this.timeout(60_000);
  let dir: string;
  let app: NpmProcess | undefined;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'all-in-one-'));
  });

  afterEach(() => {
    app?.kill();
    app = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the dashboard, shows the local node ONLINE within 15 s, and exits 0 on SIGTERM', async () => {
    const started = Date.now();
    app = runNpm(['start'], envWithoutServices({ PORT: '0', STATE_FILE: join(dir, 'nodes.json') }));
    const localNode = hostname();

    const [, url] = await app.waitFor(/Dashboard: (http:\/\/127\.0\.0\.1:\d+)\//, ONLINE_WITHIN_MS);
    expect(app.output()).to.match(
      /Backends: bus embedded \(in-memory\), store embedded \(in-memory, saved to .*nodes\.json\), scheduler embedded \(in-process timers\), rate limit embedded/,
    );

    let nodes: NodeView[] = [];
    while (!nodes.some((n) => n.nodeId === localNode && n.status === 'ONLINE')) {
      expect(Date.now() - started, `local node ${localNode} ONLINE within ${ONLINE_WITHIN_MS} ms; GET /api/nodes: ${JSON.stringify(nodes)}\n${app.output()}`).to.be.below(
        ONLINE_WITHIN_MS,
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      nodes = (await (await fetch(`${url}/api/nodes`)).json()) as NodeView[];
    }

    const page = await fetch(`${url}/`);
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.match(/^text\/html/);
    expect(await page.text()).to.contain('data-testid="node-table"');

    app.child.kill('SIGTERM');
    const exit = await app.exited;
    expect(exit, app.output()).to.deep.equal({ code: 0, signal: null });
    expect(app.output()).to.contain(`Shutdown announced to the orchestrator`);
  });
});

import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, rm, symlink } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileServices } from '../../scripts/build.js';
import { ROOT } from '../agent-int/support.js';
import { startOrchestrator, type Harness } from '../support/orchestrator.js';
import { eventually, mongoUrlFor, RABBITMQ_URL, requireServices } from '../support/services.js';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('the compiled services (npm run build) @int', function () {
  this.timeout(180_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let app: string;
  let outDir: string;
  let h: Harness | undefined;
  let api: ChildProcess | undefined;
  const output: string[] = [];

  // Laid out as the Docker image is: package.json, node_modules and dist/ side by side, no sources.
  before(async () => {
    app = await mkdtemp(join(tmpdir(), 'compiled-'));
    await copyFile(join(ROOT, 'package.json'), join(app, 'package.json'));
    await symlink(join(ROOT, 'node_modules'), join(app, 'node_modules'), 'dir');
    outDir = join(app, 'dist');
    await compileServices(outDir);
  });
  after(async () => {
    if (api && api.exitCode === null) {
      api.kill('SIGTERM');
      await new Promise((r) => api!.once('exit', r));
    }
    await h?.stop();
    if (app) await rm(app, { recursive: true, force: true });
  });

  it('runs the api with plain node, serving the dashboard from its copied static files', async () => {
    h = await startOrchestrator({ api: false, sweepers: 0 });
    const port = await freePort();
    api = spawn(process.execPath, [join(outDir, 'services/api/main.js')], {
      cwd: app,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        PORT: String(port),
        RABBITMQ_URL,
        MONGO_URL: mongoUrlFor(h.database),
        BROKER_NAMESPACE: h.namespace,
        AUTH_MODE: 'off',
        TIMEOUT_MINUTES: '0.5',
        LOG_LEVEL: 'warn',
      },
    });
    for (const stream of [api.stdout!, api.stderr!]) stream.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const base = `http://127.0.0.1:${port}`;
    await eventually(() => fetch(`${base}/readyz`).then((r) => r.ok), 30_000, 200).catch((error: Error) => {
      throw new Error(`${error.message}\n${output.join('')}`);
    });

    const page = await fetch(`${base}/`);
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.match(/text\/html/);
    const script = await fetch(`${base}/dashboard.js`);
    expect(script.status).to.equal(200);
    expect(await script.text()).to.have.length.greaterThan(100);
    expect((await fetch(`${base}/dashboard.css`)).status).to.equal(200);
    const registered = await fetch(`${base}/api/nodes/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ nodeId: 'compiled-1', hostname: 'compiled-1.example', ipAddress: '10.0.0.9', maxServers: 4 }),
    });
    expect(registered.status).to.equal(201);
  });
});

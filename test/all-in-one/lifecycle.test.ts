import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { createMemoryLogger } from '../../shared/logger.js';
import { startAllInOne, type AllInOne } from '../../services/all-in-one/all-in-one.js';
import { eventually } from '../support/services.js';

interface NodeView {
  nodeId: string;
  status: string;
  registeredAt: string;
}

describe('all-in-one state file (embedded store)', function () {
  this.timeout(30_000);
  let dir: string;
  let app: AllInOne | undefined;

  const start = (nodeId: string) =>
    startAllInOne({ env: { PORT: '0', AUTH_MODE: 'off', STATE_FILE: join(dir, 'state', 'nodes.json'), NODE_ID: nodeId, LOG_LEVEL: 'warn' }, log: createMemoryLogger('warn') });
  const node = async (nodeId: string) => {
    const response = await fetch(`${app!.url}/api/nodes/${nodeId}`);
    return response.status === 200 ? ((await response.json()) as NodeView) : null;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'all-in-one-state-'));
  });

  afterEach(async () => {
    await app?.stop();
    app = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps registrations across a restart, with the shutdown the local agent announced at stop', async () => {
    app = await start('first-local');
    const before = await eventually(async () => (await node('first-local'))?.status === 'ONLINE' && node('first-local'), 10_000, 50);
    await app.stop();

    app = await start('second-local');
    const after = await node('first-local');
    expect(after).to.include({ nodeId: 'first-local', status: 'OFFLINE', registeredAt: before!.registeredAt });
  });
});

describe('all-in-one start', () => {
  it('fails with the reason when its port is taken, and leaves the other instance serving', async () => {
    const log = createMemoryLogger('warn');
    const env = { AUTH_MODE: 'off', STATE_FILE: 'none', NODE_ID: 'port-owner', LOG_LEVEL: 'warn' };
    const first = await startAllInOne({ env: { ...env, PORT: '0' }, log });
    try {
      const port = new URL(first.url).port;
      let failure: Error | undefined;
      await startAllInOne({ env: { ...env, PORT: port, NODE_ID: 'port-taker' }, log }).then(
        (second) => second.stop(),
        (error: Error) => (failure = error),
      );
      expect(failure?.message).to.match(/EADDRINUSE/);
      expect((await fetch(`${first.url}/healthz`)).status).to.equal(200);
    } finally {
      await first.stop();
    }
  });
});

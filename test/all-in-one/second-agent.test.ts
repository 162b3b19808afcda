import { expect } from 'chai';
import { createMemoryLogger } from '../../shared/logger.js';
import { startAllInOne, type AllInOne } from '../../services/all-in-one/all-in-one.js';
import { openSse } from '../dashboard/sse-reader.js';
import { eventually } from '../support/services.js';
import { envWithoutServices, runNpm, terminateGroup, type NpmProcess } from './npm-process.js';

interface NodeView {
  nodeId: string;
  status: string;
}

/** An agent in another process, pointed at the all-in-one over HTTP, shows up (docs/all-in-one.md, "Pointing other agents at it"). */
describe('all-in-one with a second agent process', function () {
  this.timeout(60_000);
  const log = createMemoryLogger('info');
  let app: AllInOne;
  let agent: NpmProcess | undefined;

  before(async () => {
    app = await startAllInOne({ env: { PORT: '0', STATE_FILE: 'none', AUTH_MODE: 'off', NODE_ID: 'all-in-one-local', LOG_LEVEL: 'info' }, log });
  });

  after(async () => {
    if (agent) {
      terminateGroup(agent);
      await Promise.race([agent.exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
      agent.kill();
    }
    await app?.stop();
  });

  it('shows an agent started with ORCHESTRATOR_URL pointing at it ONLINE in GET /api/nodes and in the dashboard snapshot', async () => {
    agent = runNpm(
      ['run', 'agent'],
      envWithoutServices({ NODE_ID: 'second-agent', ORCHESTRATOR_URL: app.url, HEARTBEAT_INTERVAL: '1', HEARTBEAT_TIMEOUT: '0.5', LOG_LEVEL: 'info' }),
    );

    const nodes = await eventually(
      async () => {
        const list = (await (await fetch(`${app.url}/api/nodes`)).json()) as NodeView[];
        return list.some((n) => n.nodeId === 'second-agent' && n.status === 'ONLINE') && list;
      },
      30_000,
      200,
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n--- agent:\n${agent!.output()}\n--- all-in-one:\n${log.lines.join('\n')}`);
    });
    expect(nodes.map((n) => n.nodeId)).to.include.members(['all-in-one-local', 'second-agent']);
    await agent.waitFor(/Successfully registered with orchestrator as second-agent/, 5000);

    const stream = await openSse(`${app.url}/api/stream`);
    try {
      const snapshot = JSON.parse((await stream.next('snapshot', 5000)).data) as { nodes: NodeView[] };
      expect(snapshot.nodes.find((n) => n.nodeId === 'second-agent')?.status).to.equal('ONLINE');
    } finally {
      stream.close();
    }
  });
});

import { expect } from 'chai';
import { copyFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleAgent } from '../../scripts/build.js';
import { ROUTING } from '../../shared/topology.js';
import { JOIN_TOKEN } from '../security/support.js';
import { startOrchestrator, type Harness } from '../support/orchestrator.js';
import { eventually, RABBITMQ_URL, requireServices, uniqueName } from '../support/services.js';
import { ROOT, signalGroup, spawnAgentProcess } from './support.js';

describe('the bundled agent (dist/host-agent.mjs) @int', function () {
  this.timeout(90_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness | undefined;
  let host: string;
  let bundle: string;
  let agent: ReturnType<typeof spawnAgentProcess> | undefined;

  // Built once, as `npm run build` builds it, then copied alone into an empty directory outside the checkout:
  // a host that has Node.js and this one file, no node_modules anywhere above it.
  before(async () => {
    host = await mkdtemp(join(tmpdir(), 'agent-host-'));
    const built = await bundleAgent(join(ROOT, '.cache', uniqueName('bundle'), 'host-agent.mjs'));
    bundle = join(host, 'host-agent.mjs');
    await copyFile(built, bundle);
    await rm(join(built, '..'), { recursive: true, force: true });
  });
  afterEach(async () => {
    if (agent && agent.child.exitCode === null && agent.child.signalCode === null) {
      signalGroup(agent.child, 'SIGKILL');
      await agent.exited;
    }
    agent = undefined;
    await h?.stop();
    h = undefined;
  });
  after(async () => {
    if (host) await rm(host, { recursive: true, force: true });
  });

  it('registers and heartbeats with plain node, host stats included, and shuts down cleanly', async () => {
    h = await startOrchestrator({ auth: { joinToken: JOIN_TOKEN }, env: { TIMEOUT_MINUTES: '0.5' } });
    const harness = h;
    const nodeId = uniqueName('bundled');
    agent = spawnAgentProcess(
      {
        NODE_ID: nodeId,
        ORCHESTRATOR_URL: h.url,
        RABBITMQ_URL,
        BROKER_NAMESPACE: h.namespace,
        AGENT_JOIN_TOKEN: JOIN_TOKEN,
        AGENT_CREDENTIAL_FILE: join(host, 'state', 'credential'),
        HEARTBEAT_INTERVAL: '0.5',
        HEARTBEAT_TIMEOUT: '0.4',
      },
      { file: bundle, cwd: host },
    );
    const text = () => agent!.lines.map((l) => l.text).join('\n');

    const first = await eventually(async () => (await harness.store.get(nodeId))?.lastHeartbeat, 30_000);
    await eventually(async () => ((await harness.store.get(nodeId))?.lastHeartbeat?.getTime() ?? 0) > first!.getTime(), 10_000);
    const node = (await harness.store.get(nodeId))!;
    expect(node.status).to.equal('ONLINE');
    // systeminformation (memory) and statfs (disk) work inside the bundle; Docker is absent here (FAST_AGENT_ENV), so 0.
    expect(node.stats!.memoryUsage).to.be.greaterThan(0);
    expect(node.stats!.diskUsage).to.be.greaterThan(0);
    expect(node.stats!.containerCount).to.equal(0);
    expect(text()).to.include(`Successfully registered with orchestrator as ${nodeId}`);
    expect(text()).to.include(`Heartbeat sent successfully for ${nodeId}`);
    expect(((await stat(join(host, 'state', 'credential'))).mode & 0o777).toString(8)).to.equal('600');

    signalGroup(agent.child, 'SIGTERM');
    expect(await agent.exited, text()).to.equal(0);
    await eventually(async () => (await harness.store.get(nodeId))?.status === 'OFFLINE', 5000);
  });

  // The bundle loads the message schemas (zod) only with the first control message, and carries zod's English
  // messages only: both are checked here, on the bundle itself.
  it('validates control messages and re-registers when the orchestrator asks (control.reregister)', async () => {
    h = await startOrchestrator({ env: { TIMEOUT_MINUTES: '0.5' } });
    const harness = h;
    const nodeId = uniqueName('bundled-control');
    agent = spawnAgentProcess(
      { NODE_ID: nodeId, ORCHESTRATOR_URL: h.url, RABBITMQ_URL, BROKER_NAMESPACE: h.namespace, HEARTBEAT_INTERVAL: '0.5', HEARTBEAT_TIMEOUT: '0.4' },
      { file: bundle, cwd: host },
    );
    const count = (part: string) => agent!.lines.filter((l) => l.text.includes(part)).length;
    const registered = `Successfully registered with orchestrator as ${nodeId}`;
    await eventually(() => count(`Heartbeat sent successfully for ${nodeId}`) > 0, 30_000);
    expect(count(registered)).to.equal(1);
    const request = { id: uniqueName('control'), type: 'control.reregister', version: 1, sentAt: new Date().toISOString(), nodeId, reason: 'store lost the node' };

    await harness.bus.publish(harness.names.exchanges.agentControl, ROUTING.control(nodeId), { ...request, version: 2 });
    const invalid = await eventually(() => agent!.lines.find((l) => l.text.includes('Ignoring an invalid control message')), 10_000);
    expect(invalid.text).to.match(/Ignoring an invalid control message: .*expected 1/i);
    expect(count(registered)).to.equal(1);

    await harness.bus.publish(harness.names.exchanges.agentControl, ROUTING.control(nodeId), request);
    await eventually(() => count(registered) === 2, 10_000);
    expect(count(`Orchestrator asked ${nodeId} to re-register (store lost the node)`)).to.equal(1);
    await eventually(async () => (await harness.store.get(nodeId))?.status === 'ONLINE', 10_000);
  });

  it('runs the preflight (--check) and passes against a healthy system', async () => {
    h = await startOrchestrator({ env: { TIMEOUT_MINUTES: '0.5' } });
    const nodeId = uniqueName('bundled-check');
    agent = spawnAgentProcess(
      { NODE_ID: nodeId, ORCHESTRATOR_URL: h.url, RABBITMQ_URL, BROKER_NAMESPACE: h.namespace, HEARTBEAT_INTERVAL: '5', HEARTBEAT_TIMEOUT: '3' },
      { file: bundle, cwd: host },
      ['--check'],
    );
    const code = await agent.exited;
    const lines = agent.lines.map((l) => l.text);

    expect(code, lines.join('\n')).to.equal(0);
    expect(
      lines.filter((l) => l.startsWith('[FAIL]')),
      lines.join('\n'),
    ).to.deep.equal([]);
    expect(lines.some((l) => l.startsWith('[ ok ] join token: authentication is off'))).to.equal(true);
    expect(lines.at(-1)).to.match(/^Preflight passed/);
    expect(await h.store.get(nodeId)).to.equal(null);
  });
});

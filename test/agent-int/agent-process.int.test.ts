import { expect } from 'chai';
import { sleep } from '../support/fleet.js';
import { startOrchestrator, type Harness } from '../support/orchestrator.js';
import { eventually, RABBITMQ_URL, requireServices } from '../support/services.js';
import { ApiProxy, signalGroup, spawnAgentProcess } from './support.js';

/** `<ISO time> <LEVEL> [<component>] <message>`: the text format's line, with the message verbatim at its end. */
function lineWith(lines: string[], message: string | RegExp): string | undefined {
  const body = typeof message === 'string' ? escape(message) : message.source;
  const re = new RegExp(`^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?Z? .*${body}$`);
  return lines.find((l) => re.test(l));
}
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('agent as a process @int', function () {
  this.timeout(60_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness | undefined;
  let proxy: ApiProxy | undefined;
  let agent: ReturnType<typeof spawnAgentProcess> | undefined;
  afterEach(async () => {
    if (agent && agent.child.exitCode === null && agent.child.signalCode === null) {
      signalGroup(agent.child, 'SIGKILL');
      await agent.exited;
    }
    agent = undefined;
    await proxy?.close();
    proxy = undefined;
    await h?.stop();
    h = undefined;
  });

  it('on SIGTERM is OFFLINE with reason shutdown within a second, with one node.offline event of that reason, and exits 0', async () => {
    h = await startOrchestrator({ env: { AUTH_MODE: 'off', TIMEOUT_MINUTES: String(5 / 60) } });
    const harness = h;
    const events = await h.subscribe(['node.offline']);
    agent = spawnAgentProcess(
      { NODE_ID: 'term-node', ORCHESTRATOR_URL: h.url, RABBITMQ_URL, BROKER_NAMESPACE: h.namespace, HEARTBEAT_INTERVAL: '1', HEARTBEAT_TIMEOUT: '0.8' },
      'node',
    );
    await eventually(async () => (await harness.store.get('term-node'))?.stats, 30_000);

    const signalledAt = Date.now();
    signalGroup(agent.child, 'SIGTERM');
    await eventually(async () => (await harness.store.get('term-node'))?.status === 'OFFLINE', 1000, 10);
    await eventually(() => events.ofType('node.offline', 'term-node').length === 1, 1000 - (Date.now() - signalledAt), 10);
    const within = Date.now() - signalledAt;
    expect(within, `OFFLINE and announced ${within} ms after SIGTERM`).to.be.at.most(1000);

    const code = await agent.exited;
    await sleep(1000); // room for a duplicate to show up
    const offline = events.ofType('node.offline', 'term-node');
    expect(offline, 'one node.offline').to.have.length(1);
    expect(offline[0]!.reason).to.equal('shutdown');
    expect(offline[0]!.status).to.equal('OFFLINE');
    expect(code, agent.lines.map((l) => l.text).join('\n')).to.equal(0);
    expect(agent.lines.some((l) => l.text.includes('Shutdown announced to the orchestrator over amqp'))).to.equal(true);
  });

  it('logs the documented lines verbatim, with timestamps, on both sides', async () => {
    h = await startOrchestrator({ env: { AUTH_MODE: 'off', TIMEOUT_MINUTES: String(2 / 60), LOG_HEARTBEATS: 'info' } });
    const harness = h;
    proxy = await new ApiProxy(h.url).start();
    // HTTP only, so that making the api unreachable makes beats fail; three failures as in the documented example (docs/reference.md).
    agent = spawnAgentProcess({ NODE_ID: 'node-1', ORCHESTRATOR_URL: proxy.url, HEARTBEAT_INTERVAL: '0.5', HEARTBEAT_TIMEOUT: '0.4', MAX_HEARTBEAT_FAILURES: '3' });
    const agentLines = () => agent!.lines.map((l) => l.text);
    await eventually(() => lineWith(agentLines(), 'Heartbeat sent successfully for node-1'), 30_000);
    expect(lineWith(agentLines(), 'Successfully registered with orchestrator as node-1')).to.be.a('string');
    await eventually(() => lineWith(harness.log.lines!, 'Node stats updated successfully for node-1'), 5000);

    proxy.down();
    await eventually(() => lineWith(agentLines(), 'Too many heartbeat failures (3), attempting re-registration...'), 5000);
    expect(agentLines().filter((l) => lineWith([l], /Error sending heartbeat to orchestrator: .+/))).to.have.length(3);
    await eventually(() => lineWith(harness.log.lines!, 'Node node-1 missed heartbeat, marking as OFFLINE'), 10_000);

    proxy.upAgain();
    await eventually(async () => (await harness.store.get('node-1'))?.status === 'ONLINE', 10_000);
    expect(agentLines().filter((l) => lineWith([l], 'Successfully registered with orchestrator as node-1'))).to.have.length(2);
    signalGroup(agent.child, 'SIGTERM');
    await agent.exited;
  });
});

import { expect } from 'chai';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCredential } from '../../shared/auth/credentials.js';
import { JOIN_TOKEN } from '../security/support.js';
import { sleep } from '../support/fleet.js';
import { startOrchestrator, type EventCollector, type Harness } from '../support/orchestrator.js';
import { RABBITMQ_URL, requireServices, uniqueName } from '../support/services.js';
import { spawnAgentProcess } from './support.js';

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('agent preflight (npm run agent -- --check) @int', function () {
  this.timeout(60_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness;
  let events: EventCollector;
  let dir: string;

  before(async () => {
    h = await startOrchestrator({ auth: { joinToken: JOIN_TOKEN }, env: { TIMEOUT_MINUTES: '0.5', HEALTH_CHECK_INTERVAL: '1000' } });
    events = await h.subscribe();
    dir = await mkdtemp(join(tmpdir(), 'preflight-'));
  });
  after(async () => {
    await h?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** A correct agent configuration for this orchestrator: the environment `npm run agent` would read. */
  function healthyEnv(nodeId: string): Record<string, string> {
    return {
      NODE_ID: nodeId,
      ORCHESTRATOR_URL: h.url,
      RABBITMQ_URL,
      BROKER_NAMESPACE: h.namespace,
      AGENT_JOIN_TOKEN: JOIN_TOKEN,
      AGENT_CREDENTIAL_FILE: join(dir, nodeId, 'credential'),
      HEARTBEAT_INTERVAL: '5',
      HEARTBEAT_TIMEOUT: '3',
      MAX_HEARTBEAT_FAILURES: '3',
    };
  }

  async function check(env: Record<string, string>, via: 'npm' | 'node' = 'node'): Promise<{ code: number | null; lines: string[] }> {
    const run = spawnAgentProcess(env, via, ['--check']);
    const code = await run.exited;
    await sleep(50); // the last lines of the pipes
    return { code, lines: run.lines.map((l) => l.text) };
  }

  const failing = (lines: string[]) => lines.filter((l) => l.startsWith('[FAIL]'));

  it('passes against a healthy system, and registers, stores and creates nothing', async () => {
    const nodeId = uniqueName('pf-ok');
    const env = healthyEnv(nodeId);
    const { code, lines } = await check(env, 'npm');

    expect(code, lines.join('\n')).to.equal(0);
    expect(failing(lines), lines.join('\n')).to.deep.equal([]);
    for (const name of ['configuration', 'orchestrator /healthz', 'orchestrator /readyz', 'clock', 'join token', 'node id', 'timing']) {
      expect(
        lines.some((l) => l.startsWith(`[ ok ] ${name}:`)),
        `${name} ok\n${lines.join('\n')}`,
      ).to.equal(true);
    }
    expect(
      lines.some((l) => /^\[ ok \] broker .*confirmed/.test(l)),
      lines.join('\n'),
    ).to.equal(true);
    expect(
      lines.some((l) => l.startsWith('[ ok ] credential file:') && l.includes('will create it')),
      lines.join('\n'),
    ).to.equal(true);
    expect(lines.at(-1)).to.match(/^Preflight passed/);

    await sleep(1000); // time for anything sent to reach the store
    expect(await h.store.get(nodeId), 'stored node').to.equal(null);
    expect(
      events.events.filter((e) => e.nodeId === nodeId),
      'node events',
    ).to.deep.equal([]);
    expect(await stat(env.AGENT_CREDENTIAL_FILE!).catch(() => null), 'credential file').to.equal(null);
    expect(await h.bus.queueDepth(h.names.queues.deadLetter), 'dead letters').to.equal(0);
  });

  it('fails on a wrong ORCHESTRATOR_URL, naming the fix', async () => {
    const { code, lines } = await check({ ...healthyEnv(uniqueName('pf-url')), ORCHESTRATOR_URL: `http://127.0.0.1:${await closedPort()}` });

    expect(code, lines.join('\n')).to.equal(1);
    const failed = failing(lines);
    expect(failed, lines.join('\n')).to.have.length(1);
    expect(failed[0]).to.match(/^\[FAIL\] orchestrator \/healthz: .*ECONNREFUSED.* -> check ORCHESTRATOR_URL/);
    expect(lines.at(-1)).to.match(/^Preflight failed/);
  });

  it('fails on a wrong broker password, naming the fix', async () => {
    const url = new URL(RABBITMQ_URL);
    url.password = 'not-the-password';
    const { code, lines } = await check({ ...healthyEnv(uniqueName('pf-broker')), RABBITMQ_URL: url.toString() });

    expect(code, lines.join('\n')).to.equal(1);
    const failed = failing(lines);
    expect(failed, lines.join('\n')).to.have.length(1);
    expect(failed[0]).to.match(
      /^\[FAIL\] broker amqp:\/\/[^:]+:\*\*\*@.* -> the broker refused the user name or password: put the agent's broker user and password in RABBITMQ_URL/,
    );
    expect(failed[0]).to.not.include('not-the-password');
  });

  it('fails on a wrong join token, naming the fix', async () => {
    const nodeId = uniqueName('pf-token');
    const { code, lines } = await check({ ...healthyEnv(nodeId), AGENT_JOIN_TOKEN: 'not-the-join-token-0123456789' });

    expect(code, lines.join('\n')).to.equal(1);
    const failed = failing(lines);
    expect(failed, lines.join('\n')).to.have.length(1);
    expect(failed[0]).to.match(/^\[FAIL\] join token: refused \(HTTP 401 INVALID_JOIN_TOKEN.* -> AGENT_JOIN_TOKEN is not the orchestrator's join token/);
    expect(await h.store.get(nodeId)).to.equal(null);
  });

  it('fails on a credential file with mode 0644, naming the fix', async () => {
    const env = healthyEnv(uniqueName('pf-mode'));
    const file = join(dir, 'credential-0644');
    await writeFile(file, `${generateCredential()}\n`, { mode: 0o644 });
    const { code, lines } = await check({ ...env, AGENT_CREDENTIAL_FILE: file });

    expect(code, lines.join('\n')).to.equal(1);
    const failed = failing(lines);
    expect(failed, lines.join('\n')).to.have.length(1);
    expect(failed[0]).to.equal(`[FAIL] credential file: ${file} has mode 0644: other users can read this node's credential -> chmod 600 ${file}`);
    expect((await stat(file)).mode & 0o777, 'the file is left as it was').to.equal(0o644);
  });
});

import { expect } from 'chai';
import { runPreflight, type CheckResult } from '../../services/agent/preflight.js';
import type { BrokerProbeResult } from '../../shared/bus/broker-probe.js';

const DOWN: BrokerProbeResult = { ok: false, failure: 'unreachable', message: 'connect ECONNREFUSED' };
const UP: BrokerProbeResult = { ok: true, confirmMs: 3 };

/** The preflight's broker lines for a RABBITMQ_URL, each node answering as `answers` says (no network). */
async function brokerChecks(rabbitmqUrl: string, answers: Record<string, BrokerProbeResult>): Promise<CheckResult[]> {
  const report = await runPreflight({
    env: { NODE_ID: 'pf-node', ORCHESTRATOR_URL: 'http://127.0.0.1:9', RABBITMQ_URL: rabbitmqUrl },
    fetch: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:9')),
    countContainers: () => Promise.resolve(0),
    probeBroker: ({ url }) => Promise.resolve(answers[new URL(url).hostname]!),
  });
  return report.checks.filter((c) => c.name.startsWith('broker'));
}

describe('agent preflight with a list of broker nodes', () => {
  it('checks every node of RABBITMQ_URL, one line each, without their passwords', async () => {
    const checks = await brokerChecks('amqp://agent:secret@rabbit-1:5672,amqp://agent:secret@rabbit-2:5672', { 'rabbit-1': UP, 'rabbit-2': UP });
    expect(checks.map((c) => [c.name, c.status])).to.deep.equal([
      ['broker amqp://agent:***@rabbit-1:5672', 'ok'],
      ['broker amqp://agent:***@rabbit-2:5672', 'ok'],
    ]);
  });

  it('only warns about a node that fails while another passes: the agent uses the one that answers', async () => {
    const checks = await brokerChecks('amqp://rabbit-1,amqp://rabbit-2', { 'rabbit-1': DOWN, 'rabbit-2': UP });
    expect(checks.map((c) => c.status)).to.deep.equal(['warn', 'ok']);
  });

  it('fails every node when none passes', async () => {
    const checks = await brokerChecks('amqp://rabbit-1,amqp://rabbit-2', { 'rabbit-1': DOWN, 'rabbit-2': DOWN });
    expect(checks.map((c) => c.status)).to.deep.equal(['fail', 'fail']);
  });
});

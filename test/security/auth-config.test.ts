import { readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { expect } from 'chai';
import { ConfigError, loadAgentConfig, loadOrchestratorConfig } from '../../shared/config.js';

function problems(load: () => unknown): string {
  try {
    load();
  } catch (error) {
    expect(error).to.be.instanceOf(ConfigError);
    return (error as Error).message;
  }
  return expect.fail('expected a ConfigError');
}

describe('authentication settings', () => {
  it('turn agent authentication on by default, so production refuses to start without a join token', () => {
    expect(problems(() => loadOrchestratorConfig({}))).to.include('AGENT_JOIN_TOKEN must be set when AUTH_MODE=on');
    const config = loadOrchestratorConfig({ AGENT_JOIN_TOKEN: 'a-long-enough-join-token' });
    expect(config.auth).to.include({ mode: 'on', joinToken: 'a-long-enough-join-token' });
  });

  it('stay off in .env.development', () => {
    const env = parseEnv(readFileSync(new URL('../../.env.development', import.meta.url), 'utf8'));
    expect(loadOrchestratorConfig(env).auth.mode).to.equal('off');
  });

  it('refuse tokens short enough to guess, without showing them', () => {
    const message = problems(() => loadOrchestratorConfig({ AGENT_JOIN_TOKEN: 'guessable', OPERATOR_TOKEN: 'admin' }));
    expect(message).to.include('AGENT_JOIN_TOKEN must be at least 16 characters').and.include('OPERATOR_TOKEN must be at least 16 characters');
    expect(message).to.not.include('guessable').and.not.include('admin)');
    expect(problems(() => loadAgentConfig({ NODE_ID: 'n1', AGENT_JOIN_TOKEN: 'guessable' }))).to.include('AGENT_JOIN_TOKEN');
  });

  it('read the per-node rate limit', () => {
    expect(loadOrchestratorConfig({ AUTH_MODE: 'off' }).rateLimit.perNodePerMinute).to.equal(120);
    expect(loadOrchestratorConfig({ AUTH_MODE: 'off', RATE_LIMIT_PER_NODE_PER_MINUTE: '10' }).rateLimit.perNodePerMinute).to.equal(10);
  });
});

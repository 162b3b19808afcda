import { expect } from 'chai';
import { manualClock } from '../../shared/clock.js';
import { agentMessageSchema } from '../../shared/messages/index.js';
import { createMessageFactory } from '../../services/agent/outbound-messages.js';
import { noAuth } from '../../services/agent/request-auth.js';

describe('outbound messages', () => {
  const clock = manualClock(Date.UTC(2026, 0, 1, 12));
  const register = { nodeId: 'node-1', hostname: 'host-1', ipAddress: '10.0.0.1', maxServers: 20 };
  const stats = { cpuUsage: 12.5, memoryUsage: 40, diskUsage: 70.25, containerCount: 3, timestamp: '2026-01-01T12:00:00.000Z' };

  it('wraps each body in an envelope the orchestrator accepts', () => {
    const messages = createMessageFactory({ nodeId: 'node-1', wallClock: clock, auth: noAuth });
    for (const message of [messages.register(register), messages.heartbeat(stats), messages.shutdown()]) {
      const parsed = agentMessageSchema.safeParse(message);
      expect(parsed.success, JSON.stringify(parsed.error?.issues)).to.equal(true);
      expect(message).to.include({ version: 1, nodeId: 'node-1', sentAt: '2026-01-01T12:00:00.000Z' });
      expect(message).not.to.have.property('auth');
    }
  });

  it('gives every message its own id and carries the credential of the request auth', () => {
    const messages = createMessageFactory({ nodeId: 'node-1', wallClock: clock, auth: { httpHeaders: () => ({}), envelopeAuth: () => 'credential' } });
    const [a, b] = [messages.heartbeat(stats), messages.heartbeat(stats)];
    expect(a.id).not.to.equal(b.id);
    expect(a.auth).to.equal('credential');
  });
});

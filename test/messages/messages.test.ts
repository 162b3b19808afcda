import { expect } from 'chai';
import type { z } from 'zod';
import { describeIssues, heartbeatBodySchema, invalidFields, isValidNodeId, nodeIdSchema, registerBodySchema } from '../../shared/messages/index.js';

/** Parses `body` expecting a refusal and returns it as the one line a client or dead-letter reason would carry. */
function refusal(schema: z.ZodType, body: unknown): { text: string; fields: string[] } {
  const result = schema.safeParse(body);
  expect(result.success, `expected ${JSON.stringify(body)} to be refused`).to.equal(false);
  if (result.success) throw new Error('unreachable');
  return { text: describeIssues(result.error), fields: invalidFields(result.error) };
}

const register = { nodeId: 'node-1', hostname: 'game-host-1', ipAddress: '10.0.0.1', maxServers: 20 };
const stats = { cpuUsage: 12.5, memoryUsage: 40, diskUsage: 73.2, containerCount: 3, timestamp: '2024-05-01T12:00:00.000Z' };

describe('registerBodySchema', () => {
  it('accepts the original registration body', () => {
    expect(registerBodySchema.parse(register)).to.deep.equal(register);
  });

  it('accepts a node id of 64 characters of the node id alphabet', () => {
    const nodeId = 'aZ09._-'.repeat(9).slice(0, 64);
    expect(registerBodySchema.parse({ ...register, nodeId }).nodeId).to.equal(nodeId);
  });

  it('refuses operator injection as nodeId', () => {
    const { text, fields } = refusal(registerBodySchema, { ...register, nodeId: { $gt: '' } });
    expect(fields).to.deep.equal(['nodeId']);
    expect(text).to.include('nodeId');
  });

  for (const [why, nodeId] of [
    ['65 characters', 'n'.repeat(65)],
    ['a space', 'node 1'],
    ['a slash', 'node/1'],
    ['nothing', ''],
    ['a dollar sign', '$where'],
  ] as const) {
    it(`refuses a nodeId of ${why}`, () => {
      expect(refusal(registerBodySchema, { ...register, nodeId }).fields).to.deep.equal(['nodeId']);
    });
  }

  it('refuses wrong types and names each bad field', () => {
    const { text, fields } = refusal(registerBodySchema, { nodeId: 7, hostname: null, ipAddress: ['10.0.0.1'], maxServers: '20' });
    expect(fields).to.have.members(['nodeId', 'hostname', 'ipAddress', 'maxServers']);
    for (const field of ['nodeId', 'hostname', 'ipAddress', 'maxServers']) expect(text, field).to.include(field);
  });

  it('refuses a negative or fractional maxServers', () => {
    expect(refusal(registerBodySchema, { ...register, maxServers: -1 }).fields).to.deep.equal(['maxServers']);
    expect(refusal(registerBodySchema, { ...register, maxServers: 2.5 }).fields).to.deep.equal(['maxServers']);
  });

  it('refuses a missing field', () => {
    const { nodeId: _omitted, ...rest } = register;
    expect(refusal(registerBodySchema, rest).fields).to.deep.equal(['nodeId']);
  });

  it('refuses unknown keys, naming them', () => {
    const { text } = refusal(registerBodySchema, { ...register, status: 'ONLINE' });
    expect(text).to.include('status');
  });
});

describe('heartbeatBodySchema', () => {
  it('accepts the original stats body', () => {
    expect(heartbeatBodySchema.parse(stats)).to.deep.equal(stats);
  });

  it('accepts usages at both ends of 0-100 and no containers', () => {
    const edge = { ...stats, cpuUsage: 0, memoryUsage: 100, diskUsage: 100, containerCount: 0 };
    expect(heartbeatBodySchema.parse(edge)).to.deep.equal(edge);
  });

  for (const field of ['cpuUsage', 'memoryUsage', 'diskUsage'] as const) {
    it(`refuses ${field} outside 0-100 or as text`, () => {
      for (const value of [-0.1, 100.1, '50']) {
        const { text, fields } = refusal(heartbeatBodySchema, { ...stats, [field]: value });
        expect(fields, String(value)).to.deep.equal([field]);
        expect(text).to.include(field);
      }
    });
  }

  it('refuses a non-integer or negative containerCount', () => {
    expect(refusal(heartbeatBodySchema, { ...stats, containerCount: 1.5 }).fields).to.deep.equal(['containerCount']);
    expect(refusal(heartbeatBodySchema, { ...stats, containerCount: -1 }).fields).to.deep.equal(['containerCount']);
  });

  it('refuses a timestamp that is not a time', () => {
    expect(refusal(heartbeatBodySchema, { ...stats, timestamp: 'yesterday' }).fields).to.deep.equal(['timestamp']);
    expect(refusal(heartbeatBodySchema, { ...stats, timestamp: 1714564800000 }).fields).to.deep.equal(['timestamp']);
  });

  it('refuses unknown keys, naming them', () => {
    const { text } = refusal(heartbeatBodySchema, { ...stats, lastHeartbeat: '2030-01-01T00:00:00Z' });
    expect(text).to.include('lastHeartbeat');
  });

  it('refuses operator injection in a value', () => {
    expect(refusal(heartbeatBodySchema, { ...stats, cpuUsage: { $gt: 0 } }).fields).to.deep.equal(['cpuUsage']);
  });

  it('names every bad field in one line', () => {
    const { text, fields } = refusal(heartbeatBodySchema, { cpuUsage: 101, memoryUsage: 'x', diskUsage: -1, containerCount: 0.5, timestamp: 'soon' });
    expect(fields).to.have.members(['cpuUsage', 'memoryUsage', 'diskUsage', 'containerCount', 'timestamp']);
    expect(text.split('; ')).to.have.length(5);
    for (const field of fields) expect(text, field).to.include(`${field}:`);
  });
});

describe('nodeIdSchema', () => {
  it('agrees with isValidNodeId', () => {
    for (const value of ['node-1', 'node.a_1', 'n'.repeat(64), 'n'.repeat(65), 'a b', 'a/b', '', { $gt: '' }, 7]) {
      expect(nodeIdSchema.safeParse(value).success, JSON.stringify(value)).to.equal(isValidNodeId(value));
    }
  });
});

import { Writable } from 'node:stream';
import { expect } from 'chai';
import { createLogger } from '../../shared/logger.js';

function capture(format: 'text' | 'json') {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc: string, done: () => void) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { log: createLogger({ level: 'info', format }, stream).child({ component: 'sweeper' }), lines };
}

describe('logger', () => {
  const fields = { nodeId: 'node-7', event: 'node.offline', statusVersion: 4, reason: 'timeout' };

  it('writes JSON lines with the fields, searchable (LOG_FORMAT=json)', () => {
    const { log, lines } = capture('json');
    log.info('Node node-7 missed heartbeat, marking as OFFLINE', fields);

    expect(JSON.parse(lines[0]!)).to.include({ message: 'Node node-7 missed heartbeat, marking as OFFLINE', component: 'sweeper', level: 'info', ...fields });
  });

  it('writes text lines in their documented wording alone', () => {
    const { log, lines } = capture('text');
    log.info('Node node-7 missed heartbeat, marking as OFFLINE', fields);

    expect(lines[0]).to.match(/^\S+Z INFO  \[sweeper\] Node node-7 missed heartbeat, marking as OFFLINE$/);
  });
});

import { expect } from 'chai';
import { manualClock } from '../../shared/clock.js';
import { createLogThrottle } from '../../shared/log-throttle.js';
import { createMemoryLogger } from '../../shared/logger.js';

describe('log throttle', () => {
  it('writes a burst of lines per window and one summary of the rest', () => {
    const clock = manualClock();
    const log = createMemoryLogger('debug');
    const throttle = createLogThrottle({ log, level: 'warn', burst: 3, windowMs: 10_000, now: clock.now, summary: (n) => `${n} more refused` });
    for (let i = 0; i < 1000; i++) throttle.log(`refused ${i}`);
    clock.advance(10_000);
    throttle.log('refused later');
    expect(log.lines.filter((l) => l.includes('refused'))).to.have.length(5);
    expect(log.lines.some((l) => l.includes('997 more refused'))).to.equal(true);
    expect(log.lines.at(-1)).to.include('refused later');
  });
});

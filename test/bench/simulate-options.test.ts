import { expect } from 'chai';
import { expectedPace, OptionsError, parseOptions } from '../../bench/simulate/options.js';

describe('simulate options: the heartbeat pace', () => {
  it('expects the pace the orchestrator sets for the whole fleet: max(declared, ceil(nodes / rate)) and 3 × that as the timeout', () => {
    expect(expectedPace({ nodes: 20_000, intervalS: 60, timeoutS: 180, legacy: false, maxRate: 100 })).to.deep.equal({ intervalS: 200, timeoutS: 600 });
    expect(expectedPace({ nodes: 200, intervalS: 2, timeoutS: 6, legacy: false, maxRate: 100 })).to.deep.equal({ intervalS: 2, timeoutS: 6 });
    expect(expectedPace({ nodes: 20_000, intervalS: 60, timeoutS: 180, legacy: true, maxRate: 100 })).to.deep.equal({ intervalS: 60, timeoutS: 180 });
    expect(expectedPace({ nodes: 20_000, intervalS: 60, timeoutS: 180, legacy: false, maxRate: 0 })).to.deep.equal({ intervalS: 60, timeoutS: 180 });
  });

  it('takes HEARTBEAT_MAX_RATE from --env, else from the environment, else 0 (no pace: every agent beats every --interval)', () => {
    const argv = ['--nodes', '20000', '--interval', '60'];
    expect(parseOptions(argv, {}).maxRate).to.equal(0);
    expect(parseOptions(argv, { HEARTBEAT_MAX_RATE: '50' }).maxRate).to.equal(50);
    expect(parseOptions([...argv, '--env', 'HEARTBEAT_MAX_RATE=25'], { HEARTBEAT_MAX_RATE: '50' }).maxRate).to.equal(25);
    expect(() => parseOptions(argv, { HEARTBEAT_MAX_RATE: 'fast' })).to.throw(OptionsError, 'HEARTBEAT_MAX_RATE must be a number >= 0 (got "fast")');
  });

  it('sizes the default timeline by the expected timeout, so that silenced nodes can be detected against their own deadline', () => {
    const o = parseOptions(['--nodes', '20000', '--interval', '60'], { HEARTBEAT_MAX_RATE: '100' });
    expect(o.expected).to.deep.equal({ intervalS: 200, timeoutS: 600 });
    expect(o.timeoutS).to.equal(180); // the services' TIMEOUT_MINUTES stays 3 × --interval
    expect(o.durationS).to.equal(3 * (600 + 2 * 60));
    expect(o.detectWaitS).to.equal(600 + 2 * 60);
  });

  it('refuses a duration too short for the expected timeout, naming it', () => {
    expect(() => parseOptions(['--nodes', '20000', '--interval', '60', '--duration', '900'], { HEARTBEAT_MAX_RATE: '100' })).to.throw(
      OptionsError,
      /timeout the orchestrator is expected to set .* 600 s/,
    );
  });

  it('runs legacy agents with --legacy: their own interval and timeout', () => {
    const o = parseOptions(['--nodes', '20000', '--interval', '60', '--legacy'], { HEARTBEAT_MAX_RATE: '100' });
    expect(o.legacy).to.equal(true);
    expect(o.expected).to.deep.equal({ intervalS: 60, timeoutS: 180 });
    expect(o.durationS).to.equal(3 * (180 + 2 * 60));
  });
});

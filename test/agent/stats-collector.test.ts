import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { manualClock, systemClock } from '../../shared/clock.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { heartbeatBodySchema, STATS_FIELDS } from '../../shared/messages/index.js';
import { createStatsCollector, MIN_CPU_WINDOW_MS, percent, type StatsSources } from '../../services/agent/stats-collector.js';
import { systemStatsSources } from '../../services/agent/system-stats-sources.js';
import { realTimers } from '../../services/agent/timers.js';
import { linesMatching } from './fakes.js';

const NO_DOCKER = '/nonexistent/docker.sock';

describe('stats collector on this machine @int', () => {
  it('reports usages within 0-100, an integer container count, and warns once without Docker', async () => {
    const log = createMemoryLogger('debug');
    const collector = createStatsCollector({
      sources: systemStatsSources({ dockerSocket: NO_DOCKER, timeoutMs: 2000 }),
      wallClock: systemClock,
      timers: realTimers,
      log,
      sourceTimeoutMs: 3000,
    });
    const samples = [await collector.collect(), await collector.collect(), await collector.collect()];
    for (const s of samples) {
      expect(heartbeatBodySchema.safeParse(s).success, JSON.stringify(s)).to.equal(true);
      for (const usage of [s.cpuUsage, s.memoryUsage, s.diskUsage]) {
        expect(usage).to.be.within(0, 100);
        expect(Math.round(usage * 100) / 100).to.equal(usage);
      }
      expect(Number.isInteger(s.containerCount)).to.equal(true);
      expect(s.containerCount).to.equal(0);
    }
    expect(samples[0]!.memoryUsage).to.be.above(0);
    expect(linesMatching(log, 'Cannot read running containers')).to.have.length(1);
    expect(log.lines.filter((l) => l.includes('WARN'))).to.have.length(1);
  });

  it('counts running containers once the Docker socket appears, when it was absent at first', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'docker-socket-'));
    const socket = join(dir, 'docker.sock');
    const docker = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(req.url?.startsWith('/containers/json') ? JSON.stringify([{ Id: 'a' }, { Id: 'b' }, { Id: 'c' }]) : '{}');
    });
    try {
      const sources = systemStatsSources({ dockerSocket: socket, timeoutMs: 2000 });
      const absent = await sources.runningContainers().then(
        () => null,
        (error: Error) => error,
      );
      expect(absent?.message).to.include(socket);
      await new Promise<void>((resolve) => docker.listen(socket, resolve));
      expect(await sources.runningContainers()).to.equal(3);
    } finally {
      docker.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reports the root filesystem usage that df reports', async () => {
    const df = execFileSync('df', ['-kP', '/'], { encoding: 'utf8' }).trim().split('\n').at(-1)!.split(/\s+/);
    const [used, available] = [Number(df[2]), Number(df[3])];
    const expected = (100 * used) / (used + available);
    const actual = await systemStatsSources({ dockerSocket: NO_DOCKER, timeoutMs: 1000 }).rootDiskUsage();
    expect(actual).to.be.closeTo(expected, 0.5);
  });
});

describe('stats collector', () => {
  function sources(overrides: Partial<StatsSources> = {}): StatsSources & { cpu: { idle: number; total: number } } {
    const cpu = { idle: 0, total: 0 };
    return {
      cpu,
      cpuTimes: () => ({ ...cpu }),
      memory: async () => ({ total: 8_000, available: 2_000 }),
      rootDiskUsage: async () => 12.3456,
      runningContainers: async () => 4,
      ...overrides,
    };
  }

  it('reports every stats field a heartbeat carries (STATS_FIELDS), and valid for the schema', async () => {
    const collector = createStatsCollector({ sources: sources(), wallClock: manualClock(), timers: realTimers, log: createMemoryLogger(), sourceTimeoutMs: 1000 });

    const sample = await collector.collect();

    expect(
      Object.keys(sample)
        .filter((k) => k !== 'timestamp')
        .sort(),
    ).to.deep.equal([...STATS_FIELDS].sort());
    expect(heartbeatBodySchema.safeParse(sample).success).to.equal(true);
  });

  it('measures CPU as the busy share of the time since the previous sample', async () => {
    const s = sources();
    const wall = manualClock();
    const collector = createStatsCollector({ sources: s, wallClock: wall, timers: realTimers, log: createMemoryLogger(), sourceTimeoutMs: 1000 });
    wall.advance(10_000);
    s.cpu.total += 1000;
    s.cpu.idle += 750;
    expect((await collector.collect()).cpuUsage).to.equal(25);
    wall.advance(10_000);
    s.cpu.total += 3000;
    s.cpu.idle += 1000;
    expect((await collector.collect()).cpuUsage).to.equal(66.67);
  });

  it('keeps the last CPU value for a sample taken too soon after the previous one', async () => {
    const s = sources();
    const wall = manualClock();
    const collector = createStatsCollector({ sources: s, wallClock: wall, timers: realTimers, log: createMemoryLogger(), sourceTimeoutMs: 1000 });
    wall.advance(10_000);
    s.cpu.total += 1000;
    s.cpu.idle += 500;
    expect((await collector.collect()).cpuUsage).to.equal(50);
    wall.advance(MIN_CPU_WINDOW_MS - 1);
    s.cpu.total += 10;
    expect((await collector.collect()).cpuUsage).to.equal(50);
    wall.advance(10_000);
    s.cpu.total += 1000;
    s.cpu.idle += 1000;
    // measured from the last sample that counted: (1010 - 1000 idle) / 1010 busy
    expect((await collector.collect()).cpuUsage).to.equal(0.99);
  });

  it('computes memory as (total - available) / total and rounds to two decimals', async () => {
    const collector = createStatsCollector({ sources: sources(), wallClock: systemClock, timers: realTimers, log: createMemoryLogger(), sourceTimeoutMs: 1000 });
    const stats = await collector.collect();
    expect(stats).to.include({ memoryUsage: 75, diskUsage: 12.35, containerCount: 4 });
  });

  it('clamps into 0-100', () => {
    expect([percent(-3), percent(100.004), percent(250), percent(Number.NaN), percent(33.333)]).to.deep.equal([0, 100, 100, 0, 33.33]);
  });

  it('warns again only after a failing source has recovered in between', async () => {
    let dockerUp = false;
    const log = createMemoryLogger();
    const collector = createStatsCollector({
      sources: sources({
        runningContainers: async () => {
          if (!dockerUp) throw new Error('connect ENOENT /var/run/docker.sock');
          return 2;
        },
      }),
      wallClock: systemClock,
      timers: realTimers,
      log,
      sourceTimeoutMs: 1000,
    });
    for (let i = 0; i < 3; i++) expect((await collector.collect()).containerCount).to.equal(0);
    dockerUp = true;
    expect((await collector.collect()).containerCount).to.equal(2);
    dockerUp = false;
    await collector.collect();
    expect(linesMatching(log, 'Cannot read running containers')).to.have.length(2);
    expect(linesMatching(log, 'running containers is readable again')).to.have.length(1);
  });
});

import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { HeartbeatBody } from '../../shared/messages/index.js';
import { createOutageLog, type OutageLog } from '../../shared/outage-log.js';
import { withTimeout, type Timers } from './timers.js';

/** Cumulative CPU time of all cores (ms), as os.cpus() reports it. */
export interface CpuTimes {
  idle: number;
  total: number;
}

/** Where the numbers come from: the host (system-stats-sources.ts) or a test double. */
export interface StatsSources {
  cpuTimes(): CpuTimes;
  memory(): Promise<{ total: number; available: number }>;
  /** Used share of the root filesystem in %, as `df` computes it. */
  rootDiskUsage(): Promise<number>;
  runningContainers(): Promise<number>;
}

export interface StatsCollector {
  /** Never rejects: a source that fails reports its fallback (and is warned about once). */
  collect(): Promise<HeartbeatBody>;
}

export interface StatsCollectorDeps {
  sources: StatsSources;
  wallClock: Clock;
  timers: Timers;
  log: Logger;
  /** A source slower than this reports its fallback for this beat. */
  sourceTimeoutMs: number;
}

/** 0-100 with two decimals; anything not a number counts as 0. */
export function percent(value: number): number {
  if (!Number.isFinite(value)) return 0;
  return Math.round(Math.min(100, Math.max(0, value)) * 100) / 100;
}

/** A CPU window shorter than this (a beat right after a re-registration) is too noisy: the last value stands. */
export const MIN_CPU_WINDOW_MS = 1000;

export function createStatsCollector(deps: StatsCollectorDeps): StatsCollector {
  const { sources, log, wallClock } = deps;
  // CPU % is the busy share of the time since the previous sample: no blocking one-second measurement per beat.
  let previousCpu = sources.cpuTimes();
  let previousCpuAt = wallClock.now();
  let lastCpu: number | undefined;
  const last = { memory: 0, disk: 0 };
  /** One outage log per source: a source that fails is warned about once, not once per beat. */
  const outages = new Map<string, OutageLog>();
  function outageOf(what: string, fallbackNote: string): OutageLog {
    let outage = outages.get(what);
    if (!outage) {
      outage = createOutageLog({
        log,
        what,
        failedLine: (reason) => `Cannot read ${what} (${reason}); reporting ${fallbackNote} until it is readable`,
        recoveredLine: () => `${what} is readable again`,
      });
      outages.set(what, outage);
    }
    return outage;
  }

  async function read<T>(what: string, fallbackNote: string, fallback: T, source: () => Promise<T>): Promise<T> {
    try {
      const value = await withTimeout(deps.timers, source(), deps.sourceTimeoutMs, () => new Error(`no answer within ${deps.sourceTimeoutMs} ms`));
      outages.get(what)?.recovered();
      return value;
    } catch (error) {
      outageOf(what, fallbackNote).failed(error);
      return fallback;
    }
  }

  function cpuUsage(): number {
    const at = wallClock.now();
    const window = at - previousCpuAt;
    if (lastCpu !== undefined && window >= 0 && window < MIN_CPU_WINDOW_MS) return lastCpu;
    const now = sources.cpuTimes();
    const total = now.total - previousCpu.total;
    const idle = now.idle - previousCpu.idle;
    if (total > 0) {
      lastCpu = percent(100 * (1 - idle / total));
      previousCpu = now;
      previousCpuAt = at;
    }
    return lastCpu ?? 0;
  }

  return {
    async collect() {
      const [memory, disk, containers] = await Promise.all([
        read('memory usage', 'the last value', last.memory, async () => {
          const m = await sources.memory();
          return m.total > 0 ? percent((100 * (m.total - m.available)) / m.total) : last.memory;
        }),
        read('root filesystem usage', 'the last value', last.disk, async () => percent(await sources.rootDiskUsage())),
        read('running containers', '0', 0, sources.runningContainers),
      ]);
      last.memory = memory;
      last.disk = disk;
      return {
        cpuUsage: cpuUsage(),
        memoryUsage: memory,
        diskUsage: disk,
        containerCount: Number.isInteger(containers) && containers >= 0 ? containers : 0,
        timestamp: new Date(wallClock.now()).toISOString(),
      };
    },
  };
}

import { stat, statfs } from 'node:fs/promises';
import { cpus } from 'node:os';
import type Docker from 'dockerode';
// Only the memory part: the package's index loads all of its dozens of modules, megabytes of memory the agent never uses.
import { mem } from 'systeminformation/lib/memory.js';
import type { CpuTimes, StatsSources } from './stats-collector.js';

export function hostCpuTimes(): CpuTimes {
  let idle = 0;
  let total = 0;
  for (const cpu of cpus()) {
    const t = cpu.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { idle, total };
}

/**
 * This host's numbers. Disk: statfs on "/" with df's formula used / (used + available to non-root), the value
 * systeminformation's fsSize() reports as `use` for mount "/", without running `df` (and a synchronous
 * `cat /proc/mounts`) on every beat. Containers: running ones only, through the Docker socket.
 */
export function systemStatsSources(options: { dockerSocket: string; timeoutMs: number }): StatsSources {
  let docker: Promise<Docker> | null = null;
  return {
    cpuTimes: hostCpuTimes,
    async memory() {
      const m = await mem();
      return { total: m.total, available: m.available };
    },
    async rootDiskUsage() {
      const s = await statfs('/');
      const used = s.blocks - s.bfree;
      const usable = used + s.bavail;
      return usable > 0 ? (100 * used) / usable : 0;
    },
    async runningContainers() {
      // dockerode is loaded once the socket exists, not at start: loaded at start it cost the bundled agent about
      // 4 MiB of memory (docs/benchmarks.md, agent), for nothing on a host without Docker. A Docker started later is
      // found with the next beat.
      if (!docker) {
        await stat(options.dockerSocket);
        docker = import('dockerode').then(
          ({ default: Dockerode }) => new Dockerode({ socketPath: options.dockerSocket, timeout: options.timeoutMs }),
          (error: unknown) => {
            docker = null;
            throw error;
          },
        );
      }
      const list = await (await docker).listContainers({ all: false });
      return list.length;
    },
  };
}

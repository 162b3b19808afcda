import { statfs } from 'node:fs/promises';
import { cpus } from 'node:os';
import Docker from 'dockerode';
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
  const docker = new Docker({ socketPath: options.dockerSocket, timeout: options.timeoutMs });
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
      const list = await docker.listContainers({ all: false });
      return list.length;
    },
  };
}

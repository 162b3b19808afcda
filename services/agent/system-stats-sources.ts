import { open, stat, statfs } from 'node:fs/promises';
import { cpus, freemem, totalmem } from 'node:os';
import type Docker from 'dockerode';
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

/** /proc/meminfo is about 1.5 KiB; its lines are ASCII. */
const MEMINFO_MAX_BYTES = 16 * 1024;

/**
 * The figures systeminformation's mem() reports on Linux (`total` from MemTotal, `available` from MemAvailable, or
 * MemFree + Buffers + Cached + Slab on kernels without it), read into one small buffer. mem() reads the file with
 * fs.readFile, which allocates 64 KiB or more for a /proc file, and with a beat every second the agent's memory grew
 * between garbage collections; the package's modules also cost 0.5 MiB loaded (docs/benchmarks.md, agent).
 */
export async function linuxMemory(): Promise<{ total: number; available: number }> {
  const buffer = Buffer.allocUnsafe(MEMINFO_MAX_BYTES);
  const file = await open('/proc/meminfo', 'r');
  let length = 0;
  try {
    for (;;) {
      const { bytesRead } = await file.read(buffer, length, buffer.length - length, length);
      length += bytesRead;
      if (bytesRead === 0 || length === buffer.length) break;
    }
  } finally {
    await file.close();
  }
  const kib = new Map<string, number>();
  for (const line of buffer.toString('latin1', 0, length).split('\n')) {
    const match = /^(\w+):\s+(\d+)/.exec(line);
    if (match) kib.set(match[1]!, Number(match[2]) * 1024);
  }
  const total = kib.get('MemTotal') || totalmem();
  const available = kib.get('MemAvailable') || (kib.get('MemFree') ?? freemem()) + (kib.get('Buffers') ?? 0) + (kib.get('Cached') ?? 0) + (kib.get('Slab') ?? 0);
  return { total, available };
}

/** Elsewhere systeminformation's memory module, loaded with the first beat (the package's index loads all of its dozens of modules). */
async function otherMemory(): Promise<{ total: number; available: number }> {
  const { mem } = await import('systeminformation/lib/memory.js');
  const m = await mem();
  return { total: m.total, available: m.available };
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
    memory: process.platform === 'linux' ? linuxMemory : otherMemory,
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

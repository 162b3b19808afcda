import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleAgent } from '../scripts/build.js';
import { startOrchestrator } from '../test/support/orchestrator.js';
import { RABBITMQ_URL } from '../test/support/services.js';
import { sleep, waitFor } from './lib/env.js';
import type { BenchResult } from './lib/report.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

interface Sample {
  cpuS: number;
  rssKiB: number;
}

function stat(pid: number): { ppid: number; cpuS: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // after "pid (comm) ": state=0 ppid=1 ... utime=11 stime=12
    return { ppid: Number(fields[1]), cpuS: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND };
  } catch {
    return null;
  }
}

function rssKiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const s = stat(pid);
    if (s) children.set(s.ppid, [...(children.get(s.ppid) ?? []), pid]);
  }
  const out: number[] = [];
  const walk = (pid: number) => {
    for (const c of children.get(pid) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(root);
  return out;
}

/** The process that runs the agent's code: the deepest descendant of `npm run agent` (npm → sh → tsx → node). */
function leaf(root: number): number {
  const all = [root, ...descendants(root)];
  return all.filter((pid) => !all.some((other) => stat(other)?.ppid === pid)).at(-1) ?? root;
}

function sample(pid: number): Sample {
  return { cpuS: stat(pid)?.cpuS ?? 0, rssKiB: rssKiB(pid) };
}

function treeCpu(root: number): number {
  return [root, ...descendants(root)].reduce((sum, pid) => sum + (stat(pid)?.cpuS ?? 0), 0);
}

function stopTree(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    // npm run forwards SIGTERM to the agent, which announces shutdown and exits.
    child.kill('SIGTERM');
    setTimeout(() => {
      if (child.exitCode === null && child.pid) {
        for (const pid of descendants(child.pid)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        child.kill('SIGKILL');
      }
    }, 10_000).unref();
  });
}

/** The environment of a measured agent: a 1 s heartbeat over RabbitMQ (HTTP fallback) to the bench's orchestrator. */
function agentEnv(h: { url: string; namespace: string }, nodeId: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    NODE_ID: nodeId,
    ORCHESTRATOR_URL: h.url,
    RABBITMQ_URL,
    BROKER_NAMESPACE: h.namespace,
    HEARTBEAT_INTERVAL: '1',
    HEARTBEAT_TIMEOUT: '0.5',
    LOG_LEVEL: 'info',
  };
}

/**
 * The bundled agent (`node dist/host-agent.mjs`, built here as `npm run build` builds it) against bare Node
 * sleeping on a timer, measured over the same window; `npm run agent` (npm → sh → tsx → node) runs beside them
 * for comparison with the development way of running it.
 */
export async function runAgent(options: { long: boolean }): Promise<BenchResult> {
  const scale = { intervalS: 1, runS: 120, warmupS: 10 };
  void options; // the full size already fits in 3 minutes
  const bundle = await bundleAgent();
  const bundleMiB = statSync(bundle).size / 1024 / 1024;
  const h = await startOrchestrator({ env: { TIMEOUT_MINUTES: '0.5', HEALTH_CHECK_INTERVAL: '5000', AUTH_MODE: 'off', LOG_LEVEL: 'warn' } });
  let agent: ChildProcess | null = null;
  let dev: ChildProcess | null = null;
  let idle: ChildProcess | null = null;
  try {
    const nodeId = `bench-agent-${h.namespace.slice(-6)}`;
    const devNodeId = `${nodeId}-tsx`;
    // Run from an empty directory: the bundle needs nothing beside it.
    agent = spawn(process.execPath, [bundle], { cwd: tmpdir(), stdio: ['ignore', 'ignore', 'inherit'], env: agentEnv(h, nodeId) });
    dev = spawn('npm', ['run', '--silent', 'agent'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], env: agentEnv(h, devNodeId) });
    idle = spawn(process.execPath, ['-e', 'setInterval(()=>{},1000)'], { stdio: 'ignore' });
    for (const id of [nodeId, devNodeId]) {
      const registered = await waitFor(async () => (await h.store.get(id)) !== null, 60_000, 250);
      if (!registered) throw new Error(`agent ${id} did not register within 60 s`);
    }
    await sleep(scale.warmupS * 1000);
    const devPid = leaf(dev.pid!);
    const a0 = sample(agent.pid!);
    const d0 = sample(devPid);
    const b0 = sample(idle.pid!);
    const tree0 = treeCpu(agent.pid!);
    const before = (await h.store.get(nodeId))!;
    const t0 = performance.now();
    await sleep(scale.runS * 1000);
    const wall = (performance.now() - t0) / 1000;
    const a1 = sample(agent.pid!);
    const d1 = sample(devPid);
    const b1 = sample(idle.pid!);
    const tree1 = treeCpu(agent.pid!);
    const after = (await h.store.get(nodeId))!;
    const cpu = (x0: Sample, x1: Sample) => ((x1.cpuS - x0.cpuS) / wall) * 100;
    const agentCpu = cpu(a0, a1);
    const idleCpu = cpu(b0, b1);
    const devCpu = cpu(d0, d1);
    const treePct = ((tree1 - tree0) / wall) * 100;
    const growthMiB = (a1.rssKiB - a0.rssKiB) / 1024;
    const idleGrowthMiB = (b1.rssKiB - b0.rssKiB) / 1024;
    const heartbeatGap = after.lastHeartbeat && before.lastHeartbeat ? (after.lastHeartbeat.getTime() - before.lastHeartbeat.getTime()) / 1000 : null;
    const mib = (s: Sample) => s.rssKiB / 1024;
    return {
      name: 'agent',
      scale: { ...scale, transport: 'RabbitMQ with HTTP fallback', process: 'node dist/host-agent.mjs' },
      rows: [
        { figure: 'agent CPU (% of one core)', system: agentCpu, baseline: idleCpu, baselineName: 'node sleeping on a timer', unit: '%', target: '<= 1 %', met: agentCpu <= 1 },
        { figure: 'RSS at start', system: mib(a0), baseline: mib(b0), unit: 'MiB', target: '<= 50 MiB', met: mib(a0) <= 50 },
        { figure: 'RSS at end', system: mib(a1), baseline: mib(b1), unit: 'MiB', target: '<= 50 MiB', met: mib(a1) <= 50 },
        { figure: 'RSS growth over the run', system: growthMiB, baseline: idleGrowthMiB, unit: 'MiB', target: '< 5 MB', met: growthMiB < 5 },
        { figure: 'agent process tree CPU (node alone)', system: treePct, baseline: idleCpu, unit: '%' },
        { figure: '`npm run agent` (tsx) CPU, for comparison', system: devCpu, baseline: idleCpu, unit: '%' },
        { figure: '`npm run agent` (tsx) RSS at end, for comparison', system: mib(d1), baseline: mib(b1), unit: 'MiB' },
      ],
      notes: [
        `measured pid ${agent.pid} (node ${bundle.slice(ROOT.length + 1)}, ${bundleMiB.toFixed(2)} MiB, run from an empty directory) for ${wall.toFixed(0)} s after registration + ${scale.warmupS} s warm-up; CPU from /proc/<pid>/stat utime+stime, RSS from /proc/<pid>/status VmRSS`,
        `\`npm run agent\` measured at the same time in pid ${devPid} (the node process under npm → sh → tsx), as a second node of the same orchestrator`,
        `the stored lastHeartbeat advanced ${heartbeatGap?.toFixed(0) ?? '?'} s over the ${wall.toFixed(0)} s run (heartbeats kept arriving)`,
      ],
      details: { agent: { a0, a1 }, dev: { d0, d1, pid: devPid }, idle: { b0, b1 }, wall, treePct, bundleBytes: statSync(bundle).size },
    };
  } finally {
    if (agent) await stopTree(agent);
    if (dev) await stopTree(dev);
    if (idle) await stopTree(idle);
    await h.stop();
  }
}

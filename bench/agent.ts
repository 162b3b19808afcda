import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

export async function runAgent(options: { long: boolean }): Promise<BenchResult> {
  const scale = { intervalS: 1, runS: 120, warmupS: 10 };
  void options; // the full size already fits in 3 minutes
  const h = await startOrchestrator({ env: { TIMEOUT_MINUTES: '0.5', HEALTH_CHECK_INTERVAL: '5000', AUTH_MODE: 'off', LOG_LEVEL: 'warn' } });
  let agent: ChildProcess | null = null;
  let idle: ChildProcess | null = null;
  try {
    const nodeId = `bench-agent-${h.namespace.slice(-6)}`;
    agent = spawn('npm', ['run', '--silent', 'agent'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        ...process.env,
        NODE_ID: nodeId,
        ORCHESTRATOR_URL: h.url,
        RABBITMQ_URL,
        BROKER_NAMESPACE: h.namespace,
        HEARTBEAT_INTERVAL: '1',
        HEARTBEAT_TIMEOUT: '0.5',
        LOG_LEVEL: 'info',
      },
    });
    idle = spawn(process.execPath, ['-e', 'setInterval(()=>{},1000)'], { stdio: 'ignore' });
    const registered = await waitFor(async () => (await h.store.get(nodeId)) !== null, 60_000, 250);
    if (!registered) throw new Error(`agent ${nodeId} did not register within 60 s`);
    await sleep(scale.warmupS * 1000);
    const agentPid = leaf(agent.pid!);
    const a0 = sample(agentPid);
    const b0 = sample(idle.pid!);
    const tree0 = treeCpu(agent.pid!);
    const before = (await h.store.get(nodeId))!;
    const t0 = performance.now();
    await sleep(scale.runS * 1000);
    const wall = (performance.now() - t0) / 1000;
    const a1 = sample(agentPid);
    const b1 = sample(idle.pid!);
    const tree1 = treeCpu(agent.pid!);
    const after = (await h.store.get(nodeId))!;
    const agentCpu = ((a1.cpuS - a0.cpuS) / wall) * 100;
    const idleCpu = ((b1.cpuS - b0.cpuS) / wall) * 100;
    const treePct = ((tree1 - tree0) / wall) * 100;
    const growthMiB = (a1.rssKiB - a0.rssKiB) / 1024;
    const idleGrowthMiB = (b1.rssKiB - b0.rssKiB) / 1024;
    const heartbeatGap = after.lastHeartbeat && before.lastHeartbeat ? (after.lastHeartbeat.getTime() - before.lastHeartbeat.getTime()) / 1000 : null;
    return {
      name: 'agent',
      scale: { ...scale, transport: 'RabbitMQ with HTTP fallback', process: 'npm run agent' },
      rows: [
        { figure: 'agent CPU (% of one core)', system: agentCpu, baseline: idleCpu, baselineName: 'node sleeping on a timer', unit: '%', target: '< 2 %', met: agentCpu < 2 },
        { figure: 'RSS at start', system: a0.rssKiB / 1024, baseline: b0.rssKiB / 1024, unit: 'MiB' },
        { figure: 'RSS at end', system: a1.rssKiB / 1024, baseline: b1.rssKiB / 1024, unit: 'MiB' },
        { figure: 'RSS growth over the run', system: growthMiB, baseline: idleGrowthMiB, unit: 'MiB', target: '< 5 MB', met: growthMiB < 5 },
        { figure: 'npm + tsx + agent process tree CPU', system: treePct, baseline: idleCpu, unit: '%' },
      ],
      notes: [
        `measured pid ${agentPid} (the node process under npm → sh → tsx) for ${wall.toFixed(0)} s after registration + ${scale.warmupS} s warm-up; CPU from /proc/<pid>/stat utime+stime, RSS from /proc/<pid>/status VmRSS`,
        `the stored lastHeartbeat advanced ${heartbeatGap?.toFixed(0) ?? '?'} s over the ${wall.toFixed(0)} s run (heartbeats kept arriving)`,
      ],
      details: { agent: { a0, a1 }, idle: { b0, b1 }, wall, treePct },
    };
  } finally {
    if (agent) await stopTree(agent);
    if (idle) await stopTree(idle);
    await h.stop();
  }
}

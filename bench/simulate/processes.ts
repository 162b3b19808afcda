import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
const TSX_CLI = join(ROOT, 'node_modules/tsx/dist/cli.mjs');
/** Clock ticks per second of /proc/<pid>/stat utime/stime (USER_HZ; 100 on every Linux this runs on). */
const CLK_TCK = 100;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Every live child process group started by this process: killed synchronously on exit, whatever the cause. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pgid of liveGroups) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
}

/** Kills every child group now (SIGKILL): for a second Ctrl-C or a crash. */
export function killAllChildrenNow(): void {
  for (const pgid of liveGroups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime, clock ticks. */
  ticks: number;
}

export function readStat(pid: number): ProcStat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = text.lastIndexOf(')');
    const comm = text.slice(text.indexOf('(') + 1, close);
    const fields = text.slice(close + 2).split(' ');
    // fields[0] = state (field 3); ppid is field 4, utime 14, stime 15.
    return { pid, ppid: Number(fields[1]), comm, ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null;
  }
}

/** VmRSS of a process in bytes, or null when it is gone. */
export function readRss(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

/** The process and all its descendants (one scan of /proc). */
export function processTree(root: number): ProcStat[] {
  const all: ProcStat[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = readStat(Number(entry));
    if (s) all.push(s);
  }
  const byParent = new Map<number, ProcStat[]>();
  for (const s of all) {
    const list = byParent.get(s.ppid);
    if (list) list.push(s);
    else byParent.set(s.ppid, [s]);
  }
  const rootStat = all.find((s) => s.pid === root);
  if (!rootStat) return [];
  const out: ProcStat[] = [rootStat];
  for (let i = 0; i < out.length; i++) out.push(...(byParent.get(out[i]!.pid) ?? []));
  return out;
}

export interface Usage {
  name: string;
  /** The node process that runs the service's main.ts (under the tsx launcher). */
  pid: number | null;
  /** utime+stime of the whole tree (tsx launcher, node, esbuild) over the window, % of one core. */
  cpuPercent: number | null;
  rssPeakBytes: number | null;
  rssEndBytes: number | null;
}

/**
 * One service process started as `tsx services/<name>/main.ts` (no npm in between), in a process group of its
 * own, stdout and stderr to a log file. CPU is read for the whole tree; RSS for the node process that runs
 * main.ts (tsx starts it as its child).
 */
export class ServiceChild {
  child: ChildProcess | null = null;
  exitCode: number | null = null;
  exitSignal: string | null = null;
  private workerPid: number | null = null;
  private treePids: number[] = [];
  private windowStart = new Map<number, number>();
  private windowStartedAt = 0;
  private windowTicks = new Map<number, number>();
  private windowEndedAt = 0;
  private rssPeak = 0;
  private rssLast = 0;
  private stopped = false;

  constructor(
    readonly name: string,
    readonly entry: string,
    readonly env: Record<string, string>,
    readonly logFile: string,
  ) {}

  start(): this {
    installExitHook();
    mkdirSync(resolve(this.logFile, '..'), { recursive: true });
    const fd = openSync(this.logFile, 'a');
    const child = spawn(process.execPath, [TSX_CLI, this.entry], { cwd: ROOT, env: { ...process.env, ...this.env }, stdio: ['ignore', fd, fd], detached: true });
    closeSync(fd);
    this.child = child;
    liveGroups.add(child.pid!);
    child.once('exit', (code, signal) => {
      this.exitCode = code;
      this.exitSignal = signal;
      liveGroups.delete(child.pid!);
    });
    return this;
  }

  running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Finds the node process running main.ts (the deepest `node` in the tree whose command line names the entry). */
  refreshTree(): void {
    if (!this.child?.pid || !this.running()) return;
    const tree = processTree(this.child.pid);
    this.treePids = tree.map((s) => s.pid);
    if (this.workerPid === null || !tree.some((s) => s.pid === this.workerPid)) {
      const candidates = tree.filter((s) => s.pid !== this.child!.pid && s.comm.startsWith('node') && readCmdline(s.pid).includes(this.entry));
      this.workerPid = candidates.at(-1)?.pid ?? null;
    }
  }

  /** Samples RSS of the worker (call every second or so). */
  sampleRss(): void {
    if (this.workerPid === null) this.refreshTree();
    if (this.workerPid === null) return;
    const rss = readRss(this.workerPid);
    if (rss === null) return;
    this.rssLast = rss;
    if (rss > this.rssPeak) this.rssPeak = rss;
  }

  private ticksNow(): Map<number, number> {
    this.refreshTree();
    const out = new Map<number, number>();
    for (const pid of this.treePids) {
      const s = readStat(pid);
      if (s) out.set(pid, s.ticks);
    }
    return out;
  }

  /** Starts the CPU window (and resets the RSS peak). */
  beginWindow(): void {
    this.windowStart = this.ticksNow();
    this.windowStartedAt = performance.now();
    this.windowTicks.clear();
    this.rssPeak = 0;
    this.sampleRss();
  }

  /** Ends the CPU window (idempotent: the first call counts). */
  endWindow(): void {
    if (this.windowEndedAt) return;
    this.sampleRss();
    this.windowTicks = this.ticksNow();
    this.windowEndedAt = performance.now();
  }

  usage(): Usage {
    let cpu: number | null = null;
    if (this.windowStartedAt && this.windowEndedAt > this.windowStartedAt) {
      let ticks = 0;
      for (const [pid, end] of this.windowTicks) ticks += end - (this.windowStart.get(pid) ?? 0);
      cpu = ((ticks / CLK_TCK) * 1000 * 100) / (this.windowEndedAt - this.windowStartedAt);
    }
    return { name: this.name, pid: this.workerPid, cpuPercent: cpu, rssPeakBytes: this.rssPeak || null, rssEndBytes: this.rssLast || null };
  }

  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the launcher exited. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const child = this.child;
    if (!child?.pid) return;
    const pgid = child.pid;
    if (this.running()) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      try {
        process.kill(-pgid, 'SIGTERM');
      } catch {
        /* gone */
      }
      await Promise.race([exited, sleep(graceMs)]);
    }
    // Whatever is left of the group (the launcher exits with its child, esbuild may linger).
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      /* gone */
    }
    liveGroups.delete(pgid);
  }

  /** Last lines of the log (for a failure message). */
  tail(lines = 15): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}

/** A TCP port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** This process's CPU (user + system) in ms. */
export function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Sums of the ingest counters in a Prometheus text page. */
export interface IngestCounters {
  /** Messages stored (outcome applied or late). */
  stored: number;
  /** Every message taken off the broker (all outcomes). */
  consumed: number;
  /** Refused or unknown-node (dead-lettered). */
  refused: number;
  byOutcome: Record<string, number>;
}

export function parseIngestCounters(text: string): IngestCounters {
  const out: IngestCounters = { stored: 0, consumed: 0, refused: 0, byOutcome: {} };
  for (const line of text.split('\n')) {
    if (!line.startsWith('orchestrator_ingest_messages_total{')) continue;
    const outcome = /outcome="([^"]*)"/.exec(line)?.[1] ?? '?';
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (!Number.isFinite(value)) continue;
    out.consumed += value;
    out.byOutcome[outcome] = (out.byOutcome[outcome] ?? 0) + value;
    if (outcome === 'applied' || outcome === 'late') out.stored += value;
    else out.refused += value;
  }
  return out;
}

/** One metric's value (summed over its label sets) from a Prometheus text page, or null when absent. */
export function metricSum(text: string, name: string, labelFilter?: string): number | null {
  let sum: number | null = null;
  for (const line of text.split('\n')) {
    if (!(line.startsWith(`${name}{`) || line.startsWith(`${name} `))) continue;
    if (labelFilter && !line.includes(labelFilter)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum = (sum ?? 0) + value;
  }
  return sum;
}

export async function fetchText(url: string, timeoutMs = 2000): Promise<string | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return null;
    return await res.text();
  } catch {
    return null;
  }
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
export function machineTicks(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

/**
 * CPU of processes this run did not start but depends on (RabbitMQ, Redis, FerretDB), found by name. They
 * serve every user of the machine, so their figures include other people's load.
 */
export class BackendCpu {
  private start = new Map<string, { pid: number; ticks: number }>();
  private startedAt = 0;
  private result: Array<{ name: string; pid: number | null; cpuPercent: number | null; rssBytes: number | null }> = [];
  private machineStart = { busy: 0, total: 0 };
  machineBusyPercent: number | null = null;

  static readonly NAMES: Record<string, string> = { 'beam.smp': 'RabbitMQ (beam.smp)', 'redis-server': 'Redis', 'ferretdb-embedd': 'FerretDB' };

  private find(): Map<string, { pid: number; ticks: number }> {
    const out = new Map<string, { pid: number; ticks: number }>();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const s = readStat(Number(entry));
      if (!s || !(s.comm in BackendCpu.NAMES)) continue;
      const previous = out.get(s.comm);
      // Several processes of one name (another user's private broker): keep the busiest.
      if (!previous || s.ticks > previous.ticks) out.set(s.comm, { pid: s.pid, ticks: s.ticks });
    }
    return out;
  }

  begin(): void {
    this.start = this.find();
    this.startedAt = performance.now();
    this.machineStart = machineTicks();
  }

  end(): void {
    const wallS = (performance.now() - this.startedAt) / 1000;
    const m = machineTicks();
    this.machineBusyPercent = m.total > this.machineStart.total ? ((m.busy - this.machineStart.busy) / (m.total - this.machineStart.total)) * 100 : null;
    this.result = Object.entries(BackendCpu.NAMES).map(([comm, name]) => {
      const a = this.start.get(comm);
      const b = a ? readStat(a.pid) : null;
      // A process restarted during the window (e.g. FerretDB) has no comparable start value.
      const cpu = a && b && wallS > 0 ? ((b.ticks - a.ticks) / CLK_TCK / wallS) * 100 : null;
      return { name, pid: a?.pid ?? null, cpuPercent: cpu, rssBytes: a ? readRss(a.pid) : null };
    });
  }

  usage() {
    return this.result;
  }
}

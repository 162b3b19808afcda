import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { loadAgentConfig } from '../../shared/config.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { buildAgent } from '../../services/agent/build-agent.js';
import type { Agent } from '../../services/agent/agent.js';

export const ROOT = resolve(import.meta.dirname, '../..');

/** `.env.development`-style settings, scaled down so that a test takes seconds. */
export const FAST_AGENT_ENV = {
  HEARTBEAT_INTERVAL: '0.5',
  HEARTBEAT_TIMEOUT: '0.25',
  MAX_HEARTBEAT_FAILURES: '2',
  REGISTER_FIRST_DELAY_MS: '100',
  REGISTER_JITTER: '0.1',
  DOCKER_SOCKET: '/nonexistent/docker.sock',
  LOG_LEVEL: 'info',
};

export interface InProcessAgent {
  agent: Agent;
  lines: string[];
  stop(): Promise<void>;
}

/** The real agent (buildAgent, real transports and host stats) in this process, logging into memory. */
export async function startAgent(env: Record<string, string>): Promise<InProcessAgent> {
  const config = loadAgentConfig({ ...FAST_AGENT_ENV, ...env });
  const log = createMemoryLogger('info');
  const agent = await buildAgent(config, { log });
  await agent.start();
  return { agent, lines: log.lines, stop: () => agent.stop() };
}

/**
 * A TCP proxy in front of the api, to make "the api is unreachable" without stopping the harness. Down, it
 * accepts and resets every connection at once (so attempts can be counted and timed); up, it forwards.
 */
export class ApiProxy {
  private server: Server | null = null;
  private sockets = new Set<Socket>();
  private up = true;
  /** Time and request line of each connection refused while down. */
  readonly refused: Array<{ at: number; request: string }> = [];
  port = 0;

  constructor(private readonly target: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    const target = new URL(this.target);
    this.server = createServer((client) => {
      this.sockets.add(client);
      client.on('close', () => this.sockets.delete(client));
      client.on('error', () => undefined);
      if (!this.up) {
        client.once('data', (chunk) => {
          this.refused.push({ at: Date.now(), request: chunk.toString('latin1').split('\r\n')[0] ?? '' });
          client.resetAndDestroy();
        });
        return;
      }
      const upstream = connect({ host: target.hostname, port: Number(target.port) });
      this.sockets.add(upstream);
      upstream.on('close', () => this.sockets.delete(upstream));
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** The api is unreachable from now on, open connections included. */
  down(): void {
    this.up = false;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  upAgain(): void {
    this.up = true;
  }

  async close(): Promise<void> {
    this.down();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}

/**
 * The agent as a child process in its own process group, stdout+stderr lines collected with their arrival
 * time. `npm run agent` by default; `node` runs what that script runs (node with tsx) without npm in between,
 * so that the exit code seen is the agent's own (npm reports a signal instead); `{ file }` runs that file with
 * plain node (the bundled agent), from `cwd`.
 */
export function spawnAgentProcess(
  env: Record<string, string>,
  via: 'npm' | 'node' | { file: string; cwd?: string } = 'npm',
  args: string[] = [],
): { child: ChildProcess; lines: Array<{ at: number; text: string }>; exited: Promise<number | null> } {
  const [command, commandArgs] =
    via === 'npm'
      ? ['npm', ['run', '--silent', 'agent', ...(args.length ? ['--', ...args] : [])]]
      : via === 'node'
        ? [process.execPath, ['--import', 'tsx', 'services/agent/main.ts', ...args]]
        : [process.execPath, [via.file, ...args]];
  const child = spawn(command as string, commandArgs as string[], {
    cwd: typeof via === 'object' && via.cwd ? via.cwd : ROOT,
    env: { ...process.env, ...FAST_AGENT_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const lines: Array<{ at: number; text: string }> = [];
  const collect = (stream: NodeJS.ReadableStream) => {
    let rest = '';
    stream.on('data', (chunk: Buffer) => {
      const parts = (rest + chunk.toString()).split('\n');
      rest = parts.pop() ?? '';
      for (const text of parts) if (text) lines.push({ at: Date.now(), text });
    });
  };
  collect(child.stdout!);
  collect(child.stderr!);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, lines, exited };
}

/** Sends a signal to the whole process group (npm, tsx and node alike, as a service manager would). */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    /* already gone */
  }
}

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

/**
 * Private RabbitMQ / Redis / FerretDB instances on ports of their own, for tests that stop, restart or kill
 * them. The shared services on the default ports are used by everyone and must never be touched this way.
 */

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const RABBIT_BIN = '/usr/lib/rabbitmq/bin';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves once something accepts TCP connections on the port (or rejects after `timeoutMs`). */
export async function waitForPort(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await portOpen(port))) {
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

export function portOpen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host: '127.0.0.1', port, timeout: 500 });
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
    socket.once('timeout', () => finish(false));
  });
}

async function waitForPortClosed(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (await portOpen(port)) {
    if (Date.now() > deadline) throw new Error(`127.0.0.1:${port} still open after ${timeoutMs} ms`);
    await sleep(100);
  }
}

export interface PrivateRabbit {
  port: number;
  url: string;
  node: string;
  /** `rabbitmqctl stop_app`: the node stays up, AMQP is refused. */
  stopApp(): Promise<void>;
  /** `rabbitmqctl start_app`, resolves once AMQP answers again. */
  startApp(): Promise<void>;
  /** `rabbitmqctl close_all_connections`. */
  closeAllConnections(): Promise<void>;
  /** Runs `rabbitmqctl <args>` against this node (its own Erlang cookie); resolves with its stdout. */
  ctl(...args: string[]): Promise<string>;
  /** Runs `rabbitmq-diagnostics <args>` against this node; rejects when the check fails (non-zero exit). */
  diagnostics(...args: string[]): Promise<string>;
  /** The node's data directory (for `df`: the disk alarm compares the free space there with the limit). */
  dataDir: string;
  /** Halts the node and removes its data. */
  stop(): Promise<void>;
}

/** A second RabbitMQ node (own node name, ports, data and cookie in a temp dir), no plugins. */
export async function startPrivateRabbit(options: { port: number }): Promise<PrivateRabbit> {
  const { port } = options;
  if (await portOpen(port)) throw new Error(`port ${port} is already in use`);
  const dir = mkdtempSync(join(tmpdir(), `private-rabbit-${port}-`));
  const node = `faults-${port}@localhost`;
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  const env = {
    ...process.env,
    // The CLI and the node share the Erlang cookie through this HOME.
    HOME: dir,
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(port + 20000),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: join(dir, 'rabbit.pid'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
  };
  const cli = async (tool: string, args: string[]) => (await run(`${RABBIT_BIN}/${tool}`, ['-n', node, ...args], { env, timeout: 60_000 })).stdout;
  const ctl = (...args: string[]) => cli('rabbitmqctl', args);
  await run(`${RABBIT_BIN}/rabbitmq-server`, ['-detached'], { env });
  // -detached returns at once; the node answers the CLI a few seconds later.
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await ctl('await_startup', '--timeout', '60');
      break;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`private RabbitMQ ${node} did not start: ${(error as Error).message}`);
      await sleep(500);
    }
  }
  await waitForPort(port);
  return {
    port,
    node,
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    async stopApp() {
      await ctl('stop_app');
      await waitForPortClosed(port);
    },
    async startApp() {
      await ctl('start_app');
      await waitForPort(port);
    },
    async closeAllConnections() {
      await ctl('close_all_connections', 'fault injection');
    },
    ctl,
    diagnostics: (...args: string[]) => cli('rabbitmq-diagnostics', args),
    dataDir: join(dir, 'mnesia'),
    async stop() {
      await ctl('stop').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PrivateRedis {
  port: number;
  url: string;
  /** SIGTERM and start again on the same port (no persistence: the data is gone, as after a crash without AOF). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startPrivateRedis(options: { port: number }): Promise<PrivateRedis> {
  const { port } = options;
  if (await portOpen(port)) throw new Error(`port ${port} is already in use`);
  const dir = mkdtempSync(join(tmpdir(), `private-redis-${port}-`));
  const pidfile = join(dir, 'redis.pid');
  const start = async () => {
    await run('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'yes', '--pidfile', pidfile, '--dir', dir]);
    await waitForPort(port);
  };
  const stop = async () => {
    let pid: number | undefined;
    try {
      pid = Number(readFileSync(pidfile, 'utf8').trim());
    } catch {
      return;
    }
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
    await waitForPortClosed(port);
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async restart() {
      await stop();
      await start();
    },
    async stop() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface PrivateFerret {
  port: number;
  /** mongodb://127.0.0.1:<port>/<database> */
  urlFor(database: string): string;
  /** SIGTERM (clean shutdown), resolves once the process exited. */
  stop(): Promise<void>;
  /** Starts it again over the same data. */
  start(): Promise<void>;
  /** SIGKILL (a crash). */
  kill(): Promise<void>;
  /** Stops it for good and removes its data. */
  close(): Promise<void>;
}

/** The FerretDB binary of scripts/ferretdb.sh with its own state dir and port. */
export async function startPrivateFerret(options: { port: number }): Promise<PrivateFerret> {
  const { port } = options;
  if (await portOpen(port)) throw new Error(`port ${port} is already in use`);
  await run('bash', [join(ROOT, 'scripts/ferretdb.sh'), 'build'], { cwd: ROOT, timeout: 300_000 });
  const bin = (await run('bash', [join(ROOT, 'scripts/ferretdb.sh'), 'path'], { cwd: ROOT })).stdout.trim();
  const dir = mkdtempSync(join(tmpdir(), `private-ferret-${port}-`));
  let child: ChildProcess | null = null;

  const start = async () => {
    child = spawn(bin, ['-listen-addr', `127.0.0.1:${port}`, '-state-dir', dir, '-log-level', 'error'], { stdio: 'ignore' });
    await waitForPort(port);
  };
  const halt = async (signal: NodeJS.Signals) => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill(signal);
    await exited;
  };
  await start();
  return {
    port,
    urlFor: (database) => `mongodb://127.0.0.1:${port}/${database}`,
    stop: () => halt('SIGTERM'),
    start,
    kill: () => halt('SIGKILL'),
    async close() {
      await halt('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A random port in 21000-39999 with nothing listening on it nor on port + 20000 (RabbitMQ's distribution port). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = 21000 + Math.floor(Math.random() * 19000);
    if (!(await portOpen(port)) && !(await portOpen(port + 20000))) return port;
  }
}

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

/**
 * What a test started and must not leave behind when it is interrupted or crashes before its own teardown:
 * process groups (killed with SIGKILL) and temp dirs (removed), on process exit and on SIGINT/SIGTERM/SIGHUP.
 * An orderly teardown unregisters what it stopped itself.
 */
export const leftBehind = (() => {
  const groups = new Set<number>();
  const dirs = new Set<string>();
  let hooked = false;
  const cleanUp = () => {
    for (const pid of groups) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    groups.clear();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    dirs.clear();
  };
  const hook = () => {
    if (hooked) return;
    hooked = true;
    process.once('exit', cleanUp);
    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
      ['SIGHUP', 129],
    ] as const) {
      process.once(signal, () => {
        cleanUp();
        process.exit(code);
      });
    }
  };
  return {
    /** A process group (the leader's pid: spawn it with `detached: true`). */
    group(pid: number | undefined): void {
      if (pid === undefined) return;
      hook();
      groups.add(pid);
    },
    groupStopped(pid: number | undefined): void {
      if (pid !== undefined) groups.delete(pid);
    },
    dir(path: string): void {
      hook();
      dirs.add(path);
    },
    dirRemoved(path: string): void {
      dirs.delete(path);
    },
  };
})();

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

/** `replicaOf`: the port of a private Redis on 127.0.0.1 this one replicates. */
export async function startPrivateRedis(options: { port: number; replicaOf?: number }): Promise<PrivateRedis> {
  const { port } = options;
  if (await portOpen(port)) throw new Error(`port ${port} is already in use`);
  const dir = mkdtempSync(join(tmpdir(), `private-redis-${port}-`));
  const pidfile = join(dir, 'redis.pid');
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'yes', '--pidfile', pidfile, '--dir', dir];
  if (options.replicaOf !== undefined) args.push('--replicaof', '127.0.0.1', String(options.replicaOf));
  const start = async () => {
    await run('redis-server', args);
    await waitForPort(port);
    // A daemonized redis-server leads a process group of its own: killed if this process ends without stop().
    leftBehind.group(readPid(pidfile));
  };
  const stop = async () => {
    const pid = readPid(pidfile);
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
    await waitForPortClosed(port);
    leftBehind.groupStopped(pid);
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
  leftBehind.dir(dir);
  let child: ChildProcess | null = null;

  const start = async () => {
    child = spawn(bin, ['-listen-addr', `127.0.0.1:${port}`, '-state-dir', dir, '-log-level', 'error'], { stdio: 'ignore', detached: true });
    leftBehind.group(child.pid);
    await waitForPort(port);
  };
  const halt = async (signal: NodeJS.Signals) => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill(signal);
    await exited;
    leftBehind.groupStopped(c.pid);
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
      leftBehind.dirRemoved(dir);
    },
  };
}

/** Ports of the shared services (and their neighbours): never handed out, even while one of them is stopped. */
const RESERVED_PORTS = new Set([4369, 5672, 6379, 8080, 9090, 9093, 15672, 15692, 25672, 26379, 27017, 27018]);

/** The first port the kernel gives to outgoing connections (Linux: ip_local_port_range), 32768 when unknown. */
function ephemeralPortsFrom(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

/**
 * A port nobody listens on, nor on port + 20000 (a private RabbitMQ node's distribution port). Both lie below the
 * kernel's range for outgoing connections: a port from that range can be taken by any client socket on the
 * machine (the simulated fleets open hundreds) between this check and the listen, which fails with EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  const below = Math.max(3000, ephemeralPortsFrom() - 20000);
  for (;;) {
    const port = 2000 + Math.floor(Math.random() * (below - 2000));
    if (RESERVED_PORTS.has(port) || RESERVED_PORTS.has(port + 20000)) continue;
    if (!(await portOpen(port)) && !(await portOpen(port + 20000))) return port;
  }
}

function readPid(pidfile: string): number | undefined {
  try {
    return Number(readFileSync(pidfile, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/** One command to a Redis server or Sentinel on 127.0.0.1, on a connection of its own that gives up at once. */
export async function redisCall(port: number, ...args: string[]): Promise<unknown> {
  const { Redis } = await import('ioredis');
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2000, enableOfflineQueue: false, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await client.call(args[0]!, ...args.slice(1));
  } finally {
    client.disconnect();
  }
}

export interface PrivateRedisSentinel {
  /** The primary's name, as the Sentinel monitors it. */
  masterName: string;
  /** The two servers: the first starts as the primary, the second as its replica. */
  servers: [PrivateRedis, PrivateRedis];
  sentinelPort: number;
  /** REDIS_URL in the Sentinel form: `redis+sentinel://127.0.0.1:<sentinel port>/<masterName>`. */
  url: string;
  /** The port of the server the Sentinel names as the primary now. */
  primaryPort(): Promise<number>;
  /** `SENTINEL FAILOVER`: resolves once the Sentinel names the other server and that one accepts writes. */
  failover(): Promise<void>;
  /** Stops the Sentinel and both servers and removes their data (also what a failed start left). */
  stop(): Promise<void>;
}

/**
 * A Redis primary, one replica and one Sentinel watching them (quorum 1), each on a port of its own. A test can
 * connect through `url` and fail the primary over to the replica. `redis-sentinel` (Debian package) when it is
 * installed, else `redis-server --sentinel`, the same program.
 */
export async function startPrivateRedisSentinel(options: { masterName?: string } = {}): Promise<PrivateRedisSentinel> {
  const masterName = options.masterName ?? 'private-primary';
  const started: Array<{ stop(): Promise<void> }> = [];
  try {
    const primary = await startPrivateRedis({ port: await freePort() });
    started.push(primary);
    const replica = await startPrivateRedis({ port: await freePort(), replicaOf: primary.port });
    started.push(replica);
    const sentinelPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), `private-sentinel-${sentinelPort}-`));
    const pidfile = join(dir, 'sentinel.pid');
    const stopSentinel = async () => {
      const pid = readPid(pidfile);
      try {
        if (pid !== undefined) process.kill(pid, 'SIGTERM');
        await waitForPortClosed(sentinelPort);
      } catch {
        /* already gone */
      }
      leftBehind.groupStopped(pid);
      rmSync(dir, { recursive: true, force: true });
    };
    started.push({ stop: stopSentinel });
    // Sentinel rewrites its configuration file as it learns the servers: a file of its own.
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        'daemonize yes',
        `pidfile ${pidfile}`,
        `dir ${dir}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${primary.port} 1`,
        `sentinel down-after-milliseconds ${masterName} 1000`,
        `sentinel failover-timeout ${masterName} 5000`,
        `sentinel parallel-syncs ${masterName} 1`,
        '',
      ].join('\n'),
    );
    const sentinelBinary = await run('sh', ['-c', 'command -v redis-sentinel']).then(
      () => ['redis-sentinel', [conf]] as const,
      () => ['redis-server', [conf, '--sentinel']] as const,
    );
    await run(sentinelBinary[0], [...sentinelBinary[1]]);
    await waitForPort(sentinelPort);
    leftBehind.group(readPid(pidfile));

    const primaryPort = async () => Number(((await redisCall(sentinelPort, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as [string, string])[1]);
    /** The Sentinel sees the replica, in sync: only then can it fail over. */
    const replicaReady = async (port: number) => {
      const replicas = (await redisCall(sentinelPort, 'SENTINEL', 'REPLICAS', masterName)) as string[][];
      return replicas.some((fields) => {
        const get = (key: string) => fields[fields.indexOf(key) + 1];
        return get('port') === String(port) && get('flags') === 'slave' && get('master-link-status') === 'ok';
      });
    };
    const until = async (what: string, check: () => Promise<boolean>, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (await check().catch(() => false)) return;
        if (Date.now() > deadline) throw new Error(`private Sentinel on ${sentinelPort}: ${what} not within ${timeoutMs} ms`);
        await sleep(100);
      }
    };
    await until('the replica in sync', () => replicaReady(replica.port));
    const servers: [PrivateRedis, PrivateRedis] = [primary, replica];
    return {
      masterName,
      servers,
      sentinelPort,
      url: `redis+sentinel://127.0.0.1:${sentinelPort}/${masterName}`,
      primaryPort,
      async failover() {
        const from = await primaryPort();
        const to = servers.find((s) => s.port !== from)!.port;
        await until('a replica ready to take over', () => replicaReady(to));
        await redisCall(sentinelPort, 'SENTINEL', 'FAILOVER', masterName);
        await until('the failover', async () => (await primaryPort()) === to && /role:master/.test(String(await redisCall(to, 'INFO', 'replication'))));
      },
      async stop() {
        for (const s of started.splice(0).reverse()) await s.stop().catch(() => undefined);
      },
    };
  } catch (error) {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
    throw error;
  }
}
